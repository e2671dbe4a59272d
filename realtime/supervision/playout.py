"""The AI's audio as the caller hears it: a pure model of the caller's playback.

The bridge sends the caller audio faster than real time (the model streams it);
Twilio (or the browser's track) plays it at real time, in order, from when it
arrives, and says where it is through marks. ``Playout`` follows that without
any I/O, for a clock the caller of ``next_frame`` supplies:

- ``queue`` (SendAudio): the audio joins the end of what is waiting; if nothing
  was playing, it starts playing now;
- ``mark`` (SendMark): a name for the position after the audio queued so far;
- ``mark_played`` (a mark echoed back): the caller was at that position at that
  time, so the rest is re-timed from there (later if Twilio fell behind, earlier
  if it ran ahead: audio already overdue is skipped);
- ``clear`` (ClearCaller): what has not been played is gone;
- ``next_frame``: asked every 20 ms, the next frame due by then, or None (silence).

Positions count 20 ms frames; frame ``n`` is due at ``anchor_at + (n -
anchor_frame) × 20 ms``.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["FRAME_S", "Playout"]

FRAME_S: Final = 0.020
# Audio overdue by more than this (the caller's playback ran ahead of our model)
# is skipped rather than played late.
CATCH_UP_S: Final = 0.100
MAX_MARKS: Final = 1000


class Playout:
    """The frames the caller hears, when they hear them."""

    def __init__(self, frame_bytes: int) -> None:
        if frame_bytes <= 0:
            raise ValueError("a frame must hold some bytes")
        self.frame_bytes = frame_bytes
        self._frames: deque[bytes] = deque()
        self._partial = b""  # a trailing part of a frame, completed by later audio
        self.played = 0  # frames handed out (or skipped) so far
        self._anchor_frame = 0
        self._anchor_at = 0.0
        self._marks: dict[str, int] = {}
        self.skipped = 0

    @property
    def queued(self) -> int:
        """Frames queued so far (played or not)."""
        return self.played + len(self._frames)

    @property
    def waiting(self) -> int:
        return len(self._frames)

    def due_at(self, frame: int) -> float:
        return self._anchor_at + (frame - self._anchor_frame) * FRAME_S

    def queue(self, audio: bytes, now: float) -> None:
        """Audio sent to the caller at ``now``; plays after what waits, or now."""
        if not self._frames:
            # Nothing waiting: the caller's player is idle and starts on arrival
            # (or when the frame playing now ends, if that is later).
            self._anchor_frame = self.played
            self._anchor_at = max(now, self.due_at(self.played))
        data = self._partial + audio
        whole = len(data) - len(data) % self.frame_bytes
        for start in range(0, whole, self.frame_bytes):
            self._frames.append(data[start : start + self.frame_bytes])
        self._partial = data[whole:]

    def mark(self, name: str) -> None:
        """``name`` stands for the position after everything queued so far."""
        if len(self._marks) >= MAX_MARKS:
            self._marks.pop(next(iter(self._marks)))
        self._marks[name] = self.queued

    def mark_played(self, name: str, played_at: float) -> bool:
        """The caller reached ``name`` at ``played_at``; re-time what follows.

        False for a mark not known (never sent here, or dropped by a clear).
        """
        position = self._marks.pop(name, None)
        if position is None:
            return False
        for older in [n for n, p in self._marks.items() if p < position]:
            del self._marks[older]  # a mark before this one has been passed too
        while self.played < position and self._frames:
            self._frames.popleft()  # the caller has heard it: we were behind
            self.played += 1
            self.skipped += 1
        self._anchor_frame = position
        self._anchor_at = played_at
        return True

    def clear(self) -> int:
        """Drop what has not been played; the number of frames dropped."""
        dropped = len(self._frames)
        self._frames.clear()
        self._partial = b""
        self._marks.clear()
        return dropped

    def next_frame(self, now: float) -> bytes | None:
        """The frame the caller starts hearing by ``now`` (None: silence)."""
        if not self._frames:
            return None
        while (
            len(self._frames) > 1
            and now - self.due_at(self.played) > CATCH_UP_S + FRAME_S
        ):
            self._frames.popleft()  # played while we were behind: skip it
            self.played += 1
            self.skipped += 1
        if self.due_at(self.played) > now + FRAME_S / 2:
            return None  # the caller has not reached it yet
        self.played += 1
        return self._frames.popleft()
