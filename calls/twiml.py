"""TwiML replies, built with twilio's VoiceResponse (never by hand)."""

from __future__ import annotations

from twilio.twiml.voice_response import Connect, Dial, VoiceResponse

SAY_OPTIONS = {"language": "ja-JP", "voice": "Polly.Mizuki"}

UNKNOWN_NUMBER_MESSAGE = "お電話ありがとうございます。申し訳ございませんが、この番号は現在ご利用いただけません。"
SORRY_MESSAGE = (
    "申し訳ございません。ただいま電話に出ることができません。後ほどおかけ直しください。"
)
OVERFLOW_MESSAGE = "お電話ありがとうございます。ただいま大変混み合っております。"
HANDOFF_MESSAGE = "担当者にお繋ぎします。少々お待ちください。"


def say_and_hang_up(message: str) -> str:
    """A polite message, then hang up."""
    response = VoiceResponse()
    response.say(message, **SAY_OPTIONS)
    response.hangup()
    return str(response)


def stream(
    *,
    url: str,
    parameters: dict[str, str],
    action: str = "",
    status_callback: str = "",
    pause_s: int = 0,
) -> str:
    """`<Connect><Stream>` to the bridge; values travel as `<Parameter>`s (PROTOCOL B1).

    Twilio requests `action` when our side closes the stream, so the bridge ending a
    call (goodbye, model failure, handoff) decides what the caller hears next.
    `pause_s` waits that long first (a `<Pause>`).
    """
    response = VoiceResponse()
    if pause_s > 0:
        response.pause(length=pause_s)
    connect = Connect(action=action) if action else Connect()
    options = {"status_callback": status_callback} if status_callback else {}
    stream_verb = connect.stream(url=url, **options)
    for name, value in parameters.items():
        stream_verb.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


def hang_up() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def dial_number(
    *, message: str, number: str, caller_id: str = "", action: str = ""
) -> str:
    """Say a line, then ring a person directly (no AI on this call)."""
    response = VoiceResponse()
    if message:
        response.say(message, **SAY_OPTIONS)
    options: dict[str, str] = {}
    if caller_id:
        options["caller_id"] = caller_id
    if action:
        options["action"] = action
    dial = Dial(**options)
    dial.number(number)
    response.append(dial)
    return str(response)
