"""A call's supervision hub: the call's two sides to every listener, mics back in.

``CallBridge`` creates one at the first supervisor's offer (``bridge.supervision``
stays None until then, so a call nobody listens to pays nothing) and taps it:

- ``caller_audio``: each frame of the caller's audio as it arrives (Twilio's
  μ-law payload, or the browser's PCM16 24 kHz), encoded to Opus at once and
  pushed to every listener's caller track;
- ``caller_command`` / ``mark_played``: what the bridge sends the caller
  (SendAudio, SendMark, ClearCaller) and the marks the caller's playback echoes;
  a ``Playout`` model turns them into the AI's audio as the caller hears it,
  encoded once every 20 ms (a ticker runs while someone listens);
- each listener's microphone frames go to ``host.on_supervisor_audio``.

Figures: ``listen_latency`` (a caller frame in → its RTP packet out to a
listener) and ``barge_latency`` (a microphone packet in → the bridge took the
frame), saved as the ``supervise-media`` event when the call ends.

Nothing here imports Django.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from realtime.protocol.bridge_state import (
    CallerCommand,
    ClearCaller,
    SendAudio,
    SendMark,
)
from realtime.protocol.caller_audio import CallerAudioFormat
from realtime.supervision.audio import SideEncoder
from realtime.supervision.peer import OfferRefused, SupervisorPeer
from realtime.supervision.playout import FRAME_S, Playout
from realtime.transport.webrtc_audio import LatencyHistogram

__all__ = ["OfferRefused", "Supervision", "SupervisionHost"]

log = logging.getLogger(__name__)

MAX_LISTENERS: Final = 20


class SupervisionHost(Protocol):
    """What the hub needs of the bridge (``realtime.bridge.CallBridge``)."""

    async def on_supervisor_audio(self, listener_id: str, pcm24: bytes) -> None: ...

    async def on_supervisor_lost(self, listener_id: str) -> None: ...


class _Listener:
    def __init__(self, peer: SupervisorPeer, by_id: Any, by_name: str) -> None:
        self.peer = peer
        self.by_id = by_id
        self.by_name = by_name


class Supervision:
    """Supervisors of one call: listen, and their microphones."""

    def __init__(
        self,
        *,
        audio: CallerAudioFormat,
        host: SupervisionHost,
        record: Callable[[str, dict[str, Any]], None],
        ice_servers: Sequence[Mapping[str, Any]] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audio = audio
        self._host = host
        self._record = record
        self._ice_servers = list(ice_servers)
        self._clock = clock
        self._caller = SideEncoder(audio)
        self._ai = SideEncoder(audio)
        self.playout = Playout(audio.frame_bytes)
        self._listeners: dict[str, _Listener] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self.listen_latency = LatencyHistogram()
        self.barge_latency = LatencyHistogram()
        self.listeners_total = 0
        self.caller_packets = 0
        self.ai_packets = 0

    @property
    def listener_ids(self) -> list[str]:
        return list(self._listeners)

    # ------------------------------------------------------------- taps

    def caller_audio(self, payload_b64: str, arrived: float) -> None:
        """A frame of the caller's audio (base64, the session's format) came in."""
        if not self._listeners:
            return
        for payload in self._caller.encode_b64(payload_b64):
            self.caller_packets += 1
            for listener in self._listeners.values():
                listener.peer.caller_track.push(payload, arrived)

    def caller_command(self, command: CallerCommand, now: float) -> None:
        """What the bridge sent the caller: the AI's audio, a mark, a clear."""
        if isinstance(command, SendAudio):
            data = self._decode(command.payload_b64)
            if data is not None and self._listeners:
                self.playout.queue(data, now)
        elif isinstance(command, SendMark):
            self.playout.mark(command.name)
        elif isinstance(command, ClearCaller):
            self.playout.clear()

    def mark_played(self, name: str, played_at: float) -> None:
        """The caller's playback passed mark ``name`` at ``played_at``."""
        self.playout.mark_played(name, played_at)

    def _decode(self, payload_b64: str) -> bytes | None:
        try:
            return base64.b64decode(payload_b64, validate=True)
        except (binascii.Error, ValueError):
            return None

    # ------------------------------------------------------------- listeners

    async def add_listener(
        self, offer_sdp: str, *, by_id: Any, by_name: str
    ) -> tuple[str, str]:
        """Answer a supervisor's offer: (answer SDP, listener id).

        OfferRefused for an unusable offer, or when the call has its fill.
        """
        if self._closed:
            raise OfferRefused("the call has ended")
        if len(self._listeners) >= MAX_LISTENERS:
            raise OfferRefused(f"{MAX_LISTENERS} supervisors already listen")
        listener_id = f"l-{secrets.token_hex(4)}"
        peer = SupervisorPeer(
            listener_id=listener_id,
            silence=self._caller.silence,
            ice_servers=self._ice_servers,
            on_mic=self._mic_frame,
            on_lost=self._peer_lost,
            on_listen_sent=self.listen_latency.add,
            clock=self._clock,
        )
        try:
            answer = await peer.answer(offer_sdp)
        except BaseException:
            await peer.close()
            raise
        self._listeners[listener_id] = _Listener(peer, by_id, by_name)
        self.listeners_total += 1
        self._record(
            "supervise-listen-start",
            {"listener": listener_id, "by_id": by_id, "by_name": by_name},
        )
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick(), name="supervision-ai")
        return answer, listener_id

    async def remove_listener(self, listener_id: str) -> bool:
        """Stop a listener (it left, or the call ended); False if not listening."""
        listener = self._listeners.pop(listener_id, None)
        if listener is None:
            return False
        await listener.peer.close()
        seconds = round(self._clock() - listener.peer.started_at, 1)
        self._record(
            "supervise-listen-stop",
            {
                "listener": listener_id,
                "by_id": listener.by_id,
                "by_name": listener.by_name,
                "seconds": seconds,
            },
        )
        if not self._listeners and self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        return True

    def _peer_lost(self, peer: SupervisorPeer) -> None:
        if peer.listener_id not in self._listeners:
            return
        task = asyncio.ensure_future(self._lost(peer.listener_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _lost(self, listener_id: str) -> None:
        if await self.remove_listener(listener_id):
            try:
                await self._host.on_supervisor_lost(listener_id)
            except Exception:
                log.exception("the bridge failed to take a lost supervisor")

    async def _mic_frame(self, listener_id: str, pcm24: bytes, arrived: float) -> None:
        await self._host.on_supervisor_audio(listener_id, pcm24)
        self.barge_latency.add(self._clock() - arrived)

    async def close(self) -> None:
        """The call ended: every listener stops; the media figures are recorded."""
        if self._closed:
            return
        self._closed = True
        for listener_id in list(self._listeners):
            await self.remove_listener(listener_id)
        for task in list(self._background):
            task.cancel()
        self._record("supervise-media", self.figures())

    # ------------------------------------------------------------- the AI side

    async def _tick(self) -> None:
        """Every 20 ms: the AI's frame the caller starts hearing now, to everyone."""
        started = self._clock()
        ticks = 0
        while self._listeners:
            ticks += 1
            delay = started + ticks * FRAME_S - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -3 * FRAME_S:
                started, ticks = self._clock(), 0  # the loop stalled: no burst after
            frame = self.playout.next_frame(self._clock())
            if frame is None:
                continue  # silence: the tracks send a packet now and then
            for payload in self._ai.encode(frame):
                self.ai_packets += 1
                for listener in self._listeners.values():
                    listener.peer.ai_track.push(payload, None)

    # ------------------------------------------------------------- figures

    def figures(self) -> dict[str, Any]:
        """The listen and barge paths' figures (the ``supervise-media`` event)."""
        return {
            "listeners": self.listeners_total,
            "caller_packets": self.caller_packets,
            "ai_packets": self.ai_packets,
            "ai_frames_skipped": self.playout.skipped,
            "listen_p50_ms": self.listen_latency.percentile(0.5),
            "listen_p99_ms": self.listen_latency.percentile(0.99),
            "barge_p50_ms": self.barge_latency.percentile(0.5),
            "barge_p99_ms": self.barge_latency.percentile(0.99),
            "latency_bin_ms": LatencyHistogram.BIN_MS,
            "listen_histogram": self.listen_latency.sparse(),
            "barge_histogram": self.barge_latency.sparse(),
        }
