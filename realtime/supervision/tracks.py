"""The tracks a supervisor's peer connection sends: Opus packets encoded elsewhere.

Each call side is encoded once by the hub; every listener's ``FanoutTrack`` gets
the same payloads and hands them to aiortc as ``av.Packet`` objects on its own
RTP clock (aiortc sends a packet as is). Like Opus's DTX, nothing is sent while
a side is silent but a silence packet every ``IDLE_S`` (a packet is a ``sendto``
per listener: the listen path's largest cost); after such a gap the RTP
timestamp jumps by the time that passed, so the listener's player stays on time.

Nothing here imports Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from realtime.supervision.audio import OPUS_FRAME_SAMPLES, opus_packet
from realtime.supervision.playout import FRAME_S

__all__ = ["FanoutTrack"]

IDLE_S: Final = 0.200  # no packet for this long: a silence packet instead
GAP_FRAMES: Final = 3  # a pause this long (or longer) moves the RTP clock with it
MAX_QUEUED: Final = 25  # 0.5 s: a listener further behind loses its oldest packets


class FanoutTrack(MediaStreamTrack):
    """One listener's copy of one call side, paced by the packets pushed to it."""

    kind = "audio"

    def __init__(
        self,
        *,
        silence: bytes,
        on_sent: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._silence = silence
        self._on_sent = on_sent
        self._clock = clock
        self._queue: deque[tuple[bytes, float | None]] = deque()
        self._ready = asyncio.Event()
        self._pts = 0
        self._last_out: float | None = None  # when the last packet was handed out
        self._handed_at: float | None = None  # when the last packet's audio came in
        self.dropped = 0
        self.packets_out = 0

    def push(self, payload: bytes, available_at: float | None) -> None:
        """A packet for this listener; ``available_at``: when its audio came in."""
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((payload, available_at))
        self._ready.set()

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if self._handed_at is not None and self._on_sent is not None:
            # aiortc asks for a packet after sending the previous one: it is out.
            self._on_sent(self._clock() - self._handed_at)
            self._handed_at = None
        if not self._queue:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_S):  # no task per packet
                    await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        if self._queue:
            payload, self._handed_at = self._queue.popleft()
        else:
            payload = self._silence
        now = self._clock()
        if self._last_out is not None:
            frames = round((now - self._last_out) / FRAME_S)
            if frames >= GAP_FRAMES:
                self._pts += (frames - 1) * OPUS_FRAME_SAMPLES  # the pause's length
        self._last_out = now
        packet = opus_packet(payload, self._pts)
        self._pts += OPUS_FRAME_SAMPLES
        self.packets_out += 1
        return packet
