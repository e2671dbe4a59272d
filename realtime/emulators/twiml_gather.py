"""``<Gather input="speech">`` in the Twilio emulator (no Django).

``parse_gather`` reads the verb as Twilio does (attributes, defaults, nested
``<Say>``/``<Play>``/``<Pause>`` only). Values Twilio only warns about become
``Gather.warnings`` (the interpreter logs them as the call's errors, as the
Twilio debugger would): an invalid ``speechTimeout`` (13327, the default is
used), ``language`` without a region (13512) or one the ``speechModel`` cannot
take (13331): such a gather hears nothing. ``say_voice_error`` checks a
``<Say>`` voice against its language (13511: the ``<Say>`` fails, silently).

``GatherRules`` (mixed into the interpreter) runs a gather against the call's
``speech_script``: nested verbs play, then the next ``Utterance``: ``Says`` →
the ``action`` gets ``SpeechResult`` and ``Confidence``; ``Silent`` → after
``timeout`` the ``action`` without them when ``actionOnEmptyResult`` is true,
else the next verb; ``HangsUp`` (or a script run out) → the caller hangs up.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final

from realtime.emulators import twiml
from realtime.emulators.speech_script import HangsUp, Says, Silent
from realtime.emulators.twilio_far_ends import Timings
from realtime.emulators.twilio_resources import Call, CallError

__all__ = ["CALLER_GONE", "GatherRules", "parse_gather", "say_voice_error"]

INPUTS: Final = frozenset({"dtmf", "speech"})
# Twilio's generic models and the provider models that take ja-JP among others.
SPEECH_MODELS: Final = frozenset(
    {"default", "numbers_and_commands", "phone_call", "experimental_conversations"}
    | {"experimental_utterances", "googlev2_telephony", "googlev2_long"}
    | {"googlev2_short", "googlev2_telephony_short", "deepgram_nova-2"}
    | {"deepgram_nova-3"}
)
# Models whose provider has no Japanese (numbers_and_commands is en-US only).
_NO_JAPANESE: Final = frozenset({"numbers_and_commands", "deepgram_nova-3"})
_LOCALE: Final = re.compile(r"[a-z]{2,3}-[A-Z]{2}")
# Amazon Polly voices Twilio offers, by locale (a subset: the ones tests meet).
POLLY_VOICES: Final = {
    "Mizuki": "ja-JP",
    "Takumi": "ja-JP",
    "Kazuha-Neural": "ja-JP",
    "Tomoko-Neural": "ja-JP",
    "Takumi-Neural": "ja-JP",
    "Joanna": "en-US",
    "Joanna-Neural": "en-US",
    "Matthew": "en-US",
    "Amy": "en-GB",
    "Brian": "en-GB",
    "Celine": "fr-FR",
    "Seoyeon": "ko-KR",
    "Zhiyu": "cmn-CN",
}
_GOOGLE_VOICE: Final = re.compile(
    r"Google\.([a-z]{2,3}-[A-Z]{2})-(Standard|Wavenet|Neural2|Chirp3-HD)-[A-Za-z]+"
)
_BASIC_VOICES: Final = frozenset({"man", "woman", "alice"})


def say_voice_error(voice: str | None, language: str | None) -> str | None:
    """Why Twilio cannot speak ``language`` with ``voice`` (13511), or None."""
    if voice is None or voice in _BASIC_VOICES:
        return None
    locale: str | None = None
    if voice.startswith("Polly."):
        locale = POLLY_VOICES.get(voice.removeprefix("Polly."))
    elif match := _GOOGLE_VOICE.fullmatch(voice):
        locale = match.group(1)
    if locale is None:
        return f"Say: Invalid voice value {voice!r}"
    if language is not None and language != locale:
        return f"Say: voice {voice!r} speaks {locale}, not language {language!r}"
    return None


def parse_gather(element: ET.Element, attrs: twiml.Attrs) -> twiml.Gather:
    warnings: list[tuple[int, str]] = []
    tokens = (attrs.text("input") or "dtmf").split()
    if not tokens or any(t not in INPUTS for t in tokens):
        raise twiml.schema_error(f"<Gather input> {attrs.text('input')!r} is invalid")
    speech_timeout = attrs.text("speechTimeout")
    if speech_timeout is not None and not (
        speech_timeout == "auto"
        or (speech_timeout.isascii() and speech_timeout.isdigit())
    ):
        warnings.append(
            (13327, f"Gather: Invalid speechTimeout value {speech_timeout!r}")
        )
        speech_timeout = None
    language = attrs.text("language") or "en-US"
    model = attrs.text("speechModel")
    if "speech" in tokens:
        if not _LOCALE.fullmatch(language):
            warnings.append((13512, f"Gather: Invalid language value {language!r}"))
        elif model is not None and (
            model not in SPEECH_MODELS
            or (language.startswith("ja") and model in _NO_JAPANESE)
        ):
            warnings.append(
                (13331, f"Gather: language {language!r} with speechModel {model!r}")
            )
    empty = attrs.text("actionOnEmptyResult")
    if empty is not None and empty not in ("true", "false"):
        warnings.append((13338, f"Gather: Invalid actionOnEmptyResult {empty!r}"))
        empty = None
    hints = attrs.text("hints")
    if hints is not None and any(len(h.strip()) > 100 for h in hints.split(",")):
        raise twiml.schema_error("<Gather hints> has a phrase over 100 characters")
    nested: list[twiml.Say | twiml.Play | twiml.Pause] = []
    for child in element:
        if child.tag not in ("Say", "Play", "Pause"):
            raise twiml.schema_error(f"<{child.tag}> is not allowed in <Gather>")
        verb = twiml.parse_verb(child)
        assert isinstance(verb, twiml.Say | twiml.Play | twiml.Pause)
        nested.append(verb)
    return twiml.Gather(
        input=frozenset(tokens),
        action=attrs.url("action"),
        method=attrs.method("method"),
        timeout=attrs.integer("timeout", 5, 1, 600),
        speech_timeout=speech_timeout,
        language=language,
        speech_model=model,
        hints=hints,
        action_on_empty_result=empty == "true",
        partial_result_callback=attrs.url("partialResultCallback"),
        nested=tuple(nested),
        warnings=tuple(warnings),
    )


class GatherRules:
    """Runs ``<Gather>``; mixed into ``TwimlInterpreter``."""

    if TYPE_CHECKING:  # provided by the interpreter and the emulator
        timings: Timings

        async def _sleep(self, seconds: float) -> None: ...

        async def _run_verb(
            self, call: Call, verb: twiml.Verb, document_url: str | None
        ) -> Any: ...

        async def _action(
            self,
            call: Call,
            url: str | None,
            method: str,
            document_url: str | None,
            extra: Mapping[str, str],
        ) -> Any: ...

        def _spawn(self, call: Call | None, coro: Coroutine[Any, Any, Any]) -> Any: ...

    async def _gather(
        self, call: Call, verb: twiml.Gather, document_url: str | None
    ) -> Any:
        for code, message in verb.warnings:
            call.errors.append(CallError(code, message))
            call._note("warning", code=code, message=message)
        call._note(
            "gather",
            input=" ".join(sorted(verb.input)),
            language=verb.language,
            speech_model=verb.speech_model,
            timeout=verb.timeout,
            speech_timeout=verb.speech_timeout,
            hints=verb.hints,
            action_on_empty_result=verb.action_on_empty_result,
        )
        script = call.speech_script
        utterance = script.pop(0) if script else None
        if utterance is None or isinstance(utterance, HangsUp):
            for nested in verb.nested:  # the caller hears the prompt, then leaves
                await self._run_verb(call, nested, document_url)
            call._note("hangup", by="caller")
            return CALLER_GONE
        for nested in verb.nested:
            await self._run_verb(call, nested, document_url)
        deaf = "speech" not in verb.input or any(
            code in (13512, 13331) for code, _ in verb.warnings
        )
        t = self.timings
        if isinstance(utterance, Silent) or deaf:
            await self._sleep(verb.timeout * t.pause_scale)
            call._note("gather-end", result="empty")
            if not verb.action_on_empty_result:
                return None  # on with the next verb
            extra: dict[str, str] = {}
        else:
            assert isinstance(utterance, Says)
            await self._sleep(len(utterance.text) * t.say_s_per_char)
            call._note("gather-end", result="speech", text=utterance.text)
            extra = {
                "SpeechResult": utterance.text,
                "Confidence": f"{utterance.confidence:.7f}".rstrip("0").rstrip("."),
            }
        return await self._action(
            call, verb.action or document_url, verb.method, document_url, extra
        )


class _Gone:
    """The caller hung up during a gather."""


CALLER_GONE: Final = _Gone()
