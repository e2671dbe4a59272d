"""A supervisor holding a call the AI held (F-75): the pause and its note, pure.

A barge or a take-over pauses the AI: ``BridgeState.pause`` cancels its response,
clears the caller, cuts what was playing at the heard position, and sends the
session again with turn detection that neither answers nor interrupts
(``paused_session``). The caller's audio still goes to the model, so the caller's
lines are transcribed as usual. While paused, ``Hold`` collects what both sides
said; at the hand-back (``BridgeState.resume``) its ``note()`` becomes a system
message, turn detection is set back, and a response continues the conversation.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final, Literal

from realtime.protocol.openai_events import ServerVad, SessionConfig

__all__ = [
    "CALLER_LABEL",
    "MAX_NOTE_CHARS",
    "MAX_NOTE_LINES",
    "SUPERVISOR_LABEL",
    "Hold",
    "PauseMode",
    "paused_session",
]

PauseMode = Literal["barge", "take-over"]

# The note goes into a conversation of gpt-realtime's 32k-token window: keep it
# to the latest lines, as the F-25 re-seed does.
MAX_NOTE_LINES: Final = 40
MAX_NOTE_CHARS: Final = 6_000
CALLER_LABEL: Final = "お客様"
SUPERVISOR_LABEL: Final = "オペレーター"

_MODE_WORDS: Final[dict[str, str]] = {
    "barge": "通話に割り込み、お客様と直接話していました",
    "take-over": "通話を代わり、お客様と直接話していました",
}


def paused_session(config: SessionConfig) -> SessionConfig:
    """Return ``config`` with turn detection that neither answers nor interrupts.

    The detection itself stays on (caller turns are still committed and
    transcribed); the idle timeout is off, since its answer is a response too.
    """
    td = config.turn_detection
    if td is None:
        return config
    if isinstance(td, ServerVad):
        td = replace(
            td, create_response=False, interrupt_response=False, idle_timeout_ms=None
        )
    else:
        td = replace(td, create_response=False, interrupt_response=False)
    return replace(config, turn_detection=td)


@dataclass(slots=True)
class Hold:
    """A supervisor holds the call: who, how, and what was said meanwhile."""

    mode: PauseMode
    by_name: str = ""
    lines: list[str] = field(default_factory=list)
    dropped: int = 0  # lines that did not fit

    @property
    def supervisor_label(self) -> str:
        """How the supervisor's lines are labelled: オペレーター（name）."""
        name = self.by_name.strip()
        return f"{SUPERVISOR_LABEL}（{name}）" if name else SUPERVISOR_LABEL

    def caller_said(self, text: str) -> None:
        """The caller's transcribed line while paused."""
        self._add(f"{CALLER_LABEL}: {text.strip()}")

    def supervisor_said(self, text: str) -> None:
        """The supervisor's transcribed line."""
        self._add(f"{self.supervisor_label}: {text.strip()}")

    def _add(self, line: str) -> None:
        self.lines.append(line)
        while len(self.lines) > MAX_NOTE_LINES or (
            len(self.lines) > 1 and sum(len(x) for x in self.lines) > MAX_NOTE_CHARS
        ):
            del self.lines[0]
            self.dropped += 1

    def note(self) -> str:
        """The system message the AI gets when it holds the call again."""
        who = self.supervisor_label
        head = f"ここまで{who}が{_MODE_WORDS[self.mode]}。その間AIは話していません。"
        if self.lines:
            said = "その間の会話:"
            if self.dropped:
                said = f"その間の会話（最初の{self.dropped}行は省略）:"
            body = "\n".join([said, *self.lines])
        else:
            body = "その間の会話は文字起こしされていません。"
        tail = (
            "ここからAIが応対を再開します。この会話を踏まえ、同じことを繰り返さずに"
            "お客様との会話を自然に続けてください。"
        )
        return f"{head}\n{body}\n{tail}"
