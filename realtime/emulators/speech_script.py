"""What a scripted caller says to ``<Gather input="speech">`` (no Django).

One ``Utterance`` per ``<Gather>``, in order: ``Says`` (recognised text and
Twilio's ``Confidence``; ``Says("")`` posts an empty ``SpeechResult``),
``Silent`` (nothing is heard: the ``<Gather>`` times out) or ``HangsUp``. A
call whose script has run out hangs up at its next ``<Gather>``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HangsUp", "Says", "Silent", "Utterance", "parse_speech_script"]


@dataclass(frozen=True, slots=True)
class Says:
    text: str
    confidence: float = 0.92

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError("confidence must be 0.0 … 1.0")


@dataclass(frozen=True, slots=True)
class Silent:
    pass


@dataclass(frozen=True, slots=True)
class HangsUp:
    pass


Utterance = Says | Silent | HangsUp


def parse_speech_script(lines: list[str]) -> list[Utterance]:
    """``["say:はい", "silent", "hangup"]`` → utterances (the control API's form)."""
    script: list[Utterance] = []
    for line in lines:
        if line == "silent":
            script.append(Silent())
        elif line == "hangup":
            script.append(HangsUp())
        elif line.startswith("say:"):
            script.append(Says(line[4:]))
        else:
            raise ValueError(
                f"unknown speech step {line!r}: say:<text>, silent, hangup"
            )
    return script
