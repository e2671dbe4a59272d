"""A browser stand-in for tests and the benchmark: an aiortc peer on loopback.

It sends a tone (or silence) from its "microphone" at real time, opens the
``events`` data channel, and reports its playback position like the page does
(every ``PAGE_REPORT_INTERVAL_S``, static/callcenter/js/web_call.js): each
received frame counts as played when it arrives, and its RTP timestamp is the
timestamp aiortc's decoder gives it.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import json
import math
import operator
import time
from array import array
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RATE = 48_000
SAMPLES = 960  # 20 ms
PAGE_REPORT_INTERVAL_S = 0.1


@functools.lru_cache(maxsize=8)
def _tone_cycle(amplitude: int, freq_hz: int) -> bytes:
    """Whole periods of the tone filling one second (sliced per frame)."""
    samples = array(
        "h",
        (
            int(amplitude * math.sin(2 * math.pi * freq_hz * n / RATE))
            for n in range(RATE)
        ),
    )
    return samples.tobytes()


def tone_frame(pts: int, *, amplitude: int, freq_hz: int = 400) -> Any:
    """20 ms of a tone at ``pts`` (silence when ``amplitude`` is 0)."""
    if amplitude:
        at = (pts % RATE) * 2  # frames start on whole 20 ms, a second holds 50
        data = _tone_cycle(amplitude, freq_hz)[at : at + SAMPLES * 2]
    else:
        data = bytes(SAMPLES * 2)
    frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES)
    frame.planes[0].update(data)
    frame.sample_rate = RATE
    frame.time_base = fractions.Fraction(1, RATE)
    frame.pts = pts
    return frame


async def eventually(
    predicate: Callable[[], object], *, within_s: float = 10.0, what: str = ""
) -> None:
    """Poll ``predicate`` every 20 ms until it holds; fail after ``within_s``."""
    for _ in range(int(within_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {within_s} s: {what or predicate}")


def rms(pcm: bytes, *, every: int = 1) -> float:
    """Root mean square of PCM16 samples (of every ``every``-th one: cheaper)."""
    samples = array("h", pcm[: len(pcm) - len(pcm) % 2])[::every]
    if not samples:
        return 0.0
    return math.sqrt(sum(map(operator.mul, samples, samples)) / len(samples))


class MicrophoneTrack(MediaStreamTrack):
    """A tone at real time (``amplitude`` 0 is silence); counts the frames sent."""

    kind = "audio"

    def __init__(self, amplitude: int = 8000) -> None:
        super().__init__()
        self.amplitude = amplitude
        self._pts = 0
        self._start: float | None = None
        self.frames_sent = 0
        self.sent_at: dict[int, float] = {}

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._pts / RATE
        if due > now:
            await asyncio.sleep(due - now)
        frame = tone_frame(self._pts, amplitude=self.amplitude)
        self._pts += SAMPLES
        self.frames_sent += 1
        return frame


class WebRtcTestClient:
    """Offer, answer through ``signal``, then audio and events both ways."""

    def __init__(self, *, amplitude: int = 8000, report_playback: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = MicrophoneTrack(amplitude)
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("events")
        self.events: list[dict[str, Any]] = []
        self.received_pcm = bytearray()  # 48 kHz mono s16 of what we "played"
        self.frames_received = 0
        self.loud_frames = 0
        self.first_loud_at: float | None = None
        self.frame_log: list[tuple[float, bool]] = []  # (received at, loud)
        self.event_times: list[tuple[float, str]] = []
        self.report_playback = report_playback
        self._reported_at = 0.0
        self.reports = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.channel_open = asyncio.Event()
        self.channel.on("open", self.channel_open.set)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)

    def _on_message(self, message: Any) -> None:
        if isinstance(message, str):
            event = json.loads(message)
            self.events.append(event)
            self.event_times.append((time.monotonic(), str(event.get("type"))))

    def _on_track(self, track: Any) -> None:
        task = asyncio.ensure_future(self._play(track))
        self._tasks.add(task)

    async def _play(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            rtp = self._rtp_timestamp(frame.pts)
            pcm = b"".join(
                bytes(f.planes[0])[: f.samples * 2]
                for f in self._resampler.resample(frame)
            )
            self.received_pcm += pcm
            self.frames_received += 1
            loud = rms(pcm, every=8) > 300
            self.frame_log.append((time.monotonic(), loud))
            if loud:
                self.loud_frames += 1
                if self.first_loud_at is None:
                    self.first_loud_at = time.monotonic()
            now = time.monotonic()
            if (
                self.report_playback
                and self.channel.readyState == "open"
                and now - self._reported_at >= PAGE_REPORT_INTERVAL_S
            ):
                self._reported_at = now
                self.reports += 1
                self.channel.send(
                    json.dumps({"type": "played", "rtp": rtp, "age_ms": 0})
                )

    def _rtp_timestamp(self, pts: int) -> int:
        """The RTP timestamp of a decoded frame, as a browser's page reports it.

        aiortc's receiver rebases timestamps to start at 0 (its TimestampMapper);
        a browser's getSynchronizationSources() gives the RTP timestamp itself.
        """
        mapper = self.pc.getReceivers()[0]._RTCRtpReceiver__timestamp_mapper
        return (pts + (mapper._origin or 0)) % (1 << 32)

    async def connect(self, signal: Callable[[str], Awaitable[str]]) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await signal(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    def played_ms_before(self, moment: float) -> int:
        """Milliseconds of AI audio played from its first loud frame to ``moment``."""
        start = next((at for at, loud in self.frame_log if loud), None)
        if start is None:
            return 0
        frames = sum(1 for at, _ in self.frame_log if start <= at < moment)
        return frames * 20

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def wait_event(self, kind: str, timeout_s: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                for event in self.events:
                    if event.get("type") == kind:
                        return event
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
