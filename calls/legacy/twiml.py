"""The legacy path's TwiML (F-72), built with twilio's VoiceResponse.

Each reply says the AI's line inside a `<Gather input="speech" language="ja-JP">`
(the caller may talk over it) with the profile's speech model, timeouts, hints and
`actionOnEmptyResult`; a `<Redirect>` after the `<Gather>` brings Twilio back to the
turn when it heard nothing and the profile does not ask for an empty result, so a
turn never ends in silence.
"""

from __future__ import annotations

import logging

from twilio.twiml.voice_response import Gather, VoiceResponse

from agents.models import SAY_LANGUAGE, SAY_VOICES, AgentProfile

log = logging.getLogger(__name__)

DEFAULT_VOICE = "Polly.Mizuki"
# What the caller hears when the path itself has trouble.
NOT_HEARD_LINE = (
    "恐れ入ります、お声が聞き取れませんでした。もう一度おっしゃっていただけますか。"
)
SLOW_MODEL_LINE = (
    "申し訳ございません。確認に時間がかかっております。"
    "恐れ入りますが、もう一度おっしゃっていただけますか。"
)
MODEL_ERROR_LINE = (
    "申し訳ございません。うまくお答えできませんでした。"
    "恐れ入りますが、もう一度おっしゃっていただけますか。"
)
NO_ONE_THERE_LINE = (
    "お声が確認できませんでしたので、お電話を終了いたします。失礼いたします。"
)
# The model ran tools but said nothing (its rounds ran out): never a silent turn.
NOTHING_SAID_LINE = "承知いたしました。ほかにご用件はございますか。"
HANDOFF_REFUSED_LINE = (
    "申し訳ございません。ただいま担当者にお繋ぎできません。引き続きご用件を伺います。"
)


def say_voice(agent: AgentProfile | None) -> str:
    """The profile's `<Say>` voice if it speaks ja-JP, else the default one.

    The settings page refuses other voices; a value put in the database some other
    way must still never make Twilio fail the call.
    """
    voice = agent.legacy_say_voice if agent is not None else DEFAULT_VOICE
    if voice not in SAY_VOICES:
        log.warning("legacy <Say> voice %r is not a ja-JP voice; using default", voice)
        return DEFAULT_VOICE
    return voice


def _gather(agent: AgentProfile | None, action_url: str) -> Gather:
    options: dict[str, object] = {
        "input": "speech",
        "language": SAY_LANGUAGE,
        "action": action_url,
        "method": "POST",
    }
    if agent is not None:
        options["timeout"] = agent.legacy_timeout_s
        options["speech_timeout"] = agent.legacy_speech_timeout or "auto"
        options["action_on_empty_result"] = agent.legacy_action_on_empty_result
        if agent.legacy_speech_model:
            options["speech_model"] = agent.legacy_speech_model
        hints = ",".join(h.strip() for h in agent.legacy_hints.split(",") if h.strip())
        if hints:
            options["hints"] = hints
    else:
        options.update(timeout=5, speech_timeout="auto", action_on_empty_result=True)
    return Gather(**options)


def say_and_gather(
    *, agent: AgentProfile | None, text: str, action_url: str, silence_url: str
) -> str:
    """Say `text` (may be empty), then listen; back to us whatever happens."""
    response = VoiceResponse()
    gather = _gather(agent, action_url)
    if text.strip():
        gather.say(text.strip(), language=SAY_LANGUAGE, voice=say_voice(agent))
    response.append(gather)
    response.redirect(silence_url, method="POST")
    return str(response)


def say_and_hang_up(*, agent: AgentProfile | None, text: str) -> str:
    response = VoiceResponse()
    if text.strip():
        response.say(text.strip(), language=SAY_LANGUAGE, voice=say_voice(agent))
    response.hangup()
    return str(response)


def redirect(url: str) -> str:
    response = VoiceResponse()
    response.redirect(url, method="POST")
    return str(response)
