"""Conference TwiML for a handoff, built with twilio's VoiceResponse (F-29)."""

from __future__ import annotations

from twilio.twiml.voice_response import Dial, VoiceResponse

from calls.twiml import SAY_OPTIONS

AGENT_ANNOUNCEMENT = "AI受付からの転送です。お客様におつなぎします。"
# Twilio's own hold music, the default `waitUrl` of a conference (PROTOCOL B2).
HOLD_MUSIC_URL = "http://twimlets.com/holdmusic?Bucket=com.twilio.music.classical"
CONFERENCE_EVENTS = "start end join leave"


def conference_name(call_id: int) -> str:
    """The room of one call's handoff; no personal data in it (PROTOCOL B2)."""
    return f"handoff-{call_id}"


def agent_leg(
    *, call_id: int, conference_status_url: str, recording_status_url: str
) -> str:
    """The human's leg: an announcement, then the room it starts and ends."""
    response = VoiceResponse()
    response.say(AGENT_ANNOUNCEMENT, **SAY_OPTIONS)
    dial = Dial()
    dial.conference(
        conference_name(call_id),
        start_conference_on_enter=True,
        end_conference_on_exit=True,
        record="record-from-start",
        recording_status_callback=recording_status_url,
        recording_status_callback_event="completed",
        status_callback=conference_status_url,
        status_callback_event=CONFERENCE_EVENTS,
    )
    response.append(dial)
    return str(response)


def caller_leg(
    *,
    call_id: int,
    conference_status_url: str,
    action_url: str,
    say: str = "",
    voice: str = "",
) -> str:
    """The caller's leg: wait in the room with hold music until the human comes.

    When the room ends (the human hung up: their leg ends it), Twilio requests
    `action_url` for what the caller hears next, at once and before any conference
    callback reaches us: back to the AI, or a hang-up (F-34). `say` is spoken first
    (the legacy path's farewell, F-72) in `voice`.
    """
    response = VoiceResponse()
    if say:
        response.say(say, **{**SAY_OPTIONS, **({"voice": voice} if voice else {})})
    dial = Dial(action=action_url)
    dial.conference(
        conference_name(call_id),
        start_conference_on_enter=False,
        end_conference_on_exit=False,
        wait_url=HOLD_MUSIC_URL,
        status_callback=conference_status_url,
        status_callback_event=CONFERENCE_EVENTS,
    )
    response.append(dial)
    return str(response)
