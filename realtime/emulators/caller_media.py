"""The pure core of the simulated caller: what Twilio accepts, and its playback.

No I/O here. ``check_bridge_frame`` judges one frame from the bridge the way
Twilio does (PROTOCOL B1); ``Playback`` is Twilio's outbound queue: audio
played at 8 bytes/ms in 20 ms ticks, marks returned once the audio queued
before them has played, everything pending returned at once on ``clear``.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from realtime.emulators.audio import FRAME_BYTES

__all__ = ["CallerViolation", "PendingMark", "Playback", "check_bridge_frame"]

MALFORMED = 31950
"""Twilio warning for a binary (malformed) message."""
INVALID = 31951
"""Twilio warning for an invalid message (JSON, event, fields, streamSid)."""

_EXPECTED_KEYS = {
    "media": frozenset({"event", "streamSid", "media"}),
    "mark": frozenset({"event", "streamSid", "mark"}),
    "clear": frozenset({"event", "streamSid"}),
}


@dataclass(frozen=True, slots=True)
class CallerViolation:
    """A frame the real Twilio would refuse; ``code`` is its Twilio warning."""

    code: int
    reason: str
    frame: str | bytes


def check_bridge_frame(
    frame: str | bytes, *, stream_sid: str, started: bool
) -> dict[str, Any] | CallerViolation:
    """Return the parsed message if Twilio accepts ``frame``, else why not."""
    if isinstance(frame, bytes):
        return CallerViolation(MALFORMED, "binary frame", frame)
    if not started:
        return CallerViolation(INVALID, "message before start", frame)
    try:
        message = orjson.loads(frame)
    except ValueError:
        return CallerViolation(INVALID, "invalid JSON", frame)
    if not isinstance(message, dict):
        return CallerViolation(INVALID, "not a JSON object", frame)
    event = message.get("event")
    expected = _EXPECTED_KEYS.get(event) if isinstance(event, str) else None
    if expected is None:
        return CallerViolation(INVALID, f"unsupported event {event!r}", frame)
    if message.keys() != expected:
        missing = sorted(expected - message.keys())
        extra = sorted(message.keys() - expected)
        return CallerViolation(
            INVALID, f"{event}: missing {missing}, unexpected {extra}", frame
        )
    if message["streamSid"] != stream_sid:
        return CallerViolation(
            INVALID, f"wrong streamSid {message['streamSid']!r}", frame
        )
    if event == "media":
        media = message["media"]
        if not isinstance(media, dict) or media.keys() != {"payload"}:
            return CallerViolation(INVALID, "media must be {payload}", frame)
        try:
            base64.b64decode(media["payload"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            return CallerViolation(INVALID, "media.payload is not base64", frame)
    elif event == "mark":
        mark = message["mark"]
        if (
            not isinstance(mark, dict)
            or mark.keys() != {"name"}
            or not isinstance(mark["name"], str)
        ):
            return CallerViolation(INVALID, "mark must be {name: string}", frame)
    return message


@dataclass(slots=True)
class PendingMark:
    """A mark waiting for the audio queued before it."""

    name: str
    received_at: float


class Playback:
    """Twilio's playback of what the bridge sends (times in ``time.monotonic()`` s).

    ``time_scale`` stretches the audio clock like the caller's frame clock.
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale
        self.heard = bytearray()
        """μ-law played so far."""
        self.queued_bytes = 0
        self.playing_until = 0.0
        """When the audio handed to the line so far stops sounding."""
        self.clears = 0
        self._queue: deque[bytearray | PendingMark] = deque()

    def add_media(self, data: bytes) -> None:
        """Queue audio behind what is already queued."""
        if data:
            self._queue.append(bytearray(data))
            self.queued_bytes += len(data)

    def add_mark(self, name: str, now: float) -> list[PendingMark]:
        """Queue a mark; return it at once when nothing is left to play."""
        mark = PendingMark(name, now)
        if self.queued_bytes or now < self.playing_until or self._queue:
            self._queue.append(mark)
            return []
        return [mark]

    def clear(self, now: float) -> list[PendingMark]:
        """Drop queued audio; return every pending mark, in order."""
        self.clears += 1
        pending = [m for m in self._queue if isinstance(m, PendingMark)]
        self._queue.clear()
        self.queued_bytes = 0
        self.playing_until = now
        return pending

    def tick(self, now: float) -> list[PendingMark]:
        """Play the next 20 ms; return the marks whose audio has now played.

        Marks at the head of the queue are due: the audio before them went out
        on earlier ticks. The audio played now sounds until ``playing_until``.
        """
        due: list[PendingMark] = []
        while self._queue and isinstance(self._queue[0], PendingMark):
            mark = self._queue.popleft()
            assert isinstance(mark, PendingMark)
            due.append(mark)
        budget = FRAME_BYTES
        while budget and self._queue and isinstance(self._queue[0], bytearray):
            head = self._queue[0]
            take = min(budget, len(head))
            self.heard += head[:take]
            del head[:take]
            if not head:
                self._queue.popleft()
            budget -= take
            self.queued_bytes -= take
        played = FRAME_BYTES - budget
        if played:
            self.playing_until = now + played / 8 * self.time_scale / 1000
        return due
