"""The web-call benchmark's browser: an aiortc peer that costs as little as a peer can.

It does what the page does on the wire and nothing a browser does off it:
- its "microphone" replays a second of a tone as Opus packets encoded once;
- it opens the ``events`` data channel and, every ``REPORT_INTERVAL_S`` like the
  page, reports the RTP timestamp it has "played" (the newest packet received,
  which a real page plays about a jitter buffer later) with that packet's age;
- it does not decode what it receives: each packet is counted (sequence gaps are
  lost frames) and one in ``LEVEL_EVERY`` is decoded to check the AI's audio
  carries the tone's energy.

Decoding 50 packets a second, resampling them and reporting each one (what the
tests' ``WebRtcTestClient`` does for its assertions) made 20 clients cost more CPU
than the service they load; the benchmark measures the service.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from realtime.transport.webrtc_audio import ArrivalOrderJitterBuffer
from tests.realtime.transport.webrtc_client import rms, tone_frame

REPORT_INTERVAL_S: Final = 0.1  # the page's playback report (web_call.js)
LEVEL_EVERY: Final = 50  # decode one packet a second for the level check
LOUD_RMS: Final = 300


class PreEncodedMicrophone(MediaStreamTrack):
    """A tone as Opus packets encoded once (a second of them, replayed in turn)."""

    kind = "audio"
    _cycle: list[bytes] = []

    def __init__(self) -> None:
        super().__init__()
        if not PreEncodedMicrophone._cycle:
            encoder = av.CodecContext.create("libopus", "w")
            encoder.sample_rate, encoder.layout, encoder.format = 48000, "mono", "s16"
            encoder.time_base = fractions.Fraction(1, 48000)
            encoder.open()
            PreEncodedMicrophone._cycle = [
                bytes(packet)
                for index in range(50)
                for packet in encoder.encode(tone_frame(index * 960, amplitude=8000))
            ]
        self._pts = 0
        self._start: float | None = None
        self.frames_sent = 0

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._pts / 48000
        if due > now:
            await asyncio.sleep(due - now)
        packet = av.Packet(self._cycle[self.frames_sent % len(self._cycle)])
        packet.pts = self._pts
        packet.time_base = fractions.Fraction(1, 48000)
        self._pts += 960
        self.frames_sent += 1
        return packet


class CountingPlayhead(ArrivalOrderJitterBuffer):
    """The receiver's buffer: packets counted, never decoded by aiortc; the newest
    RTP timestamp and its arrival kept for the playback report."""

    def __init__(self) -> None:
        super().__init__(self._arrived)
        self.packets = 0
        self.loud = 0
        self.checked = 0
        self.newest_rtp: int | None = None
        self.newest_at = 0.0
        self._decoder = av.CodecContext.create("libopus", "r")
        self._decoder.layout = "mono"
        self._timestamp = 0

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        self._timestamp = packet.timestamp
        return super().add(packet)

    def _arrived(self, payload: bytes, arrived: float) -> None:
        self.packets += 1
        self.newest_rtp, self.newest_at = self._timestamp, arrived
        if self.packets % LEVEL_EVERY == 0:
            self._check_level(payload)

    def _check_level(self, payload: bytes) -> None:
        # Opus carries state from packet to packet: a lone packet decodes roughly,
        # enough to tell the tone from silence.
        try:
            frames = self._decoder.decode(av.Packet(payload))
        except av.FFmpegError:
            return
        pcm = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
        self.checked += 1
        if rms(pcm, every=8) > LOUD_RMS:
            self.loud += 1


class BenchWebClient:
    """Offer, answer through ``signal``, the tone out, packets counted, reports back."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = PreEncodedMicrophone()
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("events")
        self.channel.on("message", self._on_message)
        self.playhead = CountingPlayhead()
        self.events: list[dict[str, Any]] = []
        self.reports = 0
        self._reporter: asyncio.Task[None] | None = None

    def _on_message(self, message: Any) -> None:
        if isinstance(message, str):
            self.events.append(json.loads(message))

    async def connect(self, signal: Callable[[str], Awaitable[str]]) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await signal(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "audio":
                self.playhead.install(transceiver.receiver)
        self._reporter = asyncio.ensure_future(self._report_playback())

    async def _report_playback(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            rtp = self.playhead.newest_rtp
            if rtp is None or self.channel.readyState != "open":
                continue
            age_ms = round((time.monotonic() - self.playhead.newest_at) * 1000)
            self.send({"type": "played", "rtp": rtp, "age_ms": age_ms})
            self.reports += 1

    async def wait_event(self, kind: str, timeout_s: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                for event in self.events:
                    if event.get("type") == kind:
                        return event
                await asyncio.sleep(0.02)

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
        await self.pc.close()
