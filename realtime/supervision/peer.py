"""One supervisor's WebRTC connection to a call (aiortc).

The page's offer holds, in this order: transceiver 0 recvonly (we send the
caller's audio), 1 recvonly (we send the AI's audio as the caller hears it), 2
sendonly (the supervisor's microphone, silent until barge or take-over) and a
data channel ``events`` on which the page pings every second. Opus only.

Each microphone packet is decoded as it arrives (``ArrivalOrderJitterBuffer``,
no playout delay) to 960-byte PCM16 24 kHz frames, handed to ``on_mic``. The
peer is lost when its connection fails or closes, or when the page says nothing
on the data channel for ``SILENT_S``.

Nothing here imports Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from realtime.supervision.audio import MicDecoder
from realtime.supervision.tracks import FanoutTrack
from realtime.transport.aiortc_tuning import audio_level_install
from realtime.transport.webrtc import EVENTS_CHANNEL, ice_servers_from
from realtime.transport.webrtc_audio import ArrivalOrderJitterBuffer

__all__ = ["OfferRefused", "SupervisorPeer"]

log = logging.getLogger(__name__)

SILENT_S: Final = 3.0  # no data-channel message for this long: the listener is gone
FIRST_MESSAGE_S: Final = 10.0  # time to connect before the first message
WATCH_EVERY_S: Final = 0.5
MAX_MIC_QUEUED: Final = 50  # 1 s of microphone audio waiting for the bridge
MAX_EVENT_CHARS: Final = 4096


class OfferRefused(ValueError):
    """The page's offer cannot be answered (not the layout we need)."""


class SupervisorPeer:
    """A listener: two tracks out, the microphone in, the ``events`` channel."""

    def __init__(
        self,
        *,
        listener_id: str,
        silence: bytes,
        ice_servers: Sequence[Mapping[str, Any]] = (),
        on_mic: Callable[[str, bytes, float], Awaitable[None]],
        on_lost: Callable[[SupervisorPeer], None],
        on_listen_sent: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.listener_id = listener_id
        self._clock = clock
        self._on_mic = on_mic
        self._on_lost = on_lost
        audio_level_install()
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=ice_servers_from(ice_servers))
        )
        self.caller_track = FanoutTrack(
            silence=silence, on_sent=on_listen_sent, clock=clock
        )
        self.ai_track = FanoutTrack(silence=silence, clock=clock)
        self._mic = MicDecoder()
        self._mic_packets: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue(
            MAX_MIC_QUEUED
        )
        self._jitter = ArrivalOrderJitterBuffer(self._mic_arrived, clock)
        self.mic_overflow = 0
        self.mic_frames = 0
        self.started_at = clock()
        self._last_message: float | None = None
        self._channel: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    async def answer(self, offer_sdp: str) -> str:
        """Our answer to the page's offer; OfferRefused for an unusable one."""
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=offer_sdp, type="offer")
            )
        except Exception as exc:
            raise OfferRefused(f"the offer cannot be read: {exc}") from None
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if len(audio) < 3:
            raise OfferRefused(
                f"the offer has {len(audio)} audio transceivers; 3 are needed"
            )
        opus = [
            codec
            for codec in RTCRtpSender.getCapabilities("audio").codecs
            if codec.mimeType.lower() == "audio/opus"
        ]
        for transceiver in audio:
            transceiver.setCodecPreferences(opus)
        self._jitter.install(audio[2].receiver)
        # addTrack takes the first audio transceiver without a track: 0, then 1.
        self.pc.addTrack(self.caller_track)
        self.pc.addTrack(self.ai_track)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            raise OfferRefused(f"the offer cannot be answered: {exc}") from None
        self._spawn(self._read_mic(), "supervisor-mic")
        self._spawn(self._watch(), "supervisor-watch")
        return str(self.pc.localDescription.sdp)

    def send_event(self, event: Mapping[str, Any]) -> None:
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            with contextlib.suppress(Exception):
                channel.send(json.dumps(event, ensure_ascii=False))

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        self.caller_track.stop()
        self.ai_track.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()

    # ------------------------------------------------------------- internals

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _mic_arrived(self, payload: bytes, arrived: float) -> None:
        try:
            self._mic_packets.put_nowait((payload, arrived))
        except asyncio.QueueFull:
            self.mic_overflow += 1

    async def _read_mic(self) -> None:
        while True:
            payload, arrived = await self._mic_packets.get()
            for frame in self._mic.decode(payload):
                self.mic_frames += 1
                try:
                    await self._on_mic(self.listener_id, frame, arrived)
                except Exception:
                    log.exception("the supervisor's audio was not taken")

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label != EVENTS_CHANNEL:
            return
        self._channel = channel
        self._last_message = self._clock()
        channel.on("message", self._on_message)
        self.send_event({"type": "listening", "listener": self.listener_id})

    def _on_message(self, message: Any) -> None:
        if isinstance(message, str) and len(message) <= MAX_EVENT_CHARS:
            self._last_message = self._clock()

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed") and not self.closed:
            self._on_lost(self)

    async def _watch(self) -> None:
        while not self.closed:
            await asyncio.sleep(WATCH_EVERY_S)
            now = self._clock()
            if self._last_message is None:
                silent = now - self.started_at > FIRST_MESSAGE_S
            else:
                silent = now - self._last_message > SILENT_S
            if silent and not self.closed:
                self._on_lost(self)
                return
