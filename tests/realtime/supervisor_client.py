"""A supervisor's page stand-in for tests and the benchmark: an aiortc peer on loopback.

Its offer has the console's layout: transceiver 0 recvonly (the caller), 1
recvonly (the AI), 2 sendonly (the microphone: a tone track when ``mic_amplitude``
is given, else none), and the ``events`` data channel with a ping every second.
Each received frame's loudness is kept per side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from tests.realtime.transport.webrtc_client import RATE, MicrophoneTrack, rms

PING_EVERY_S = 1.0
LOUD_RMS = 300


class SupervisorTestClient:
    """Listen to both sides of a call; optionally speak into the microphone."""

    def __init__(self, *, mic_amplitude: int | None = None, ping: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.mic = MicrophoneTrack(mic_amplitude) if mic_amplitude is not None else None
        self.pc.addTransceiver(self.mic or "audio", direction="sendonly")
        self.channel = self.pc.createDataChannel("events")
        self.ping = ping
        self.frames = {0: 0, 1: 0}
        self.loud = {0: 0, 1: 0}
        self.events: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.channel_open = asyncio.Event()
        self.channel.on("open", self._opened)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    def _opened(self) -> None:
        self.channel_open.set()
        if self.ping:
            self._spawn(self._pinger())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pinger(self) -> None:
        while self.ping and self.channel.readyState == "open":
            self.channel.send(json.dumps({"type": "ping"}))
            await asyncio.sleep(PING_EVERY_S)

    def _on_message(self, message: Any) -> None:
        if isinstance(message, str):
            self.events.append(json.loads(message))

    def _on_track(self, track: Any) -> None:
        index = next(
            i
            for i, t in enumerate(self.pc.getTransceivers())
            if t.receiver.track is track
        )
        self._spawn(self._play(index, track))

    async def _play(self, index: int, track: Any) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            pcm = b"".join(
                bytes(f.planes[0])[: f.samples * 2] for f in resampler.resample(frame)
            )
            self.frames[index] += 1
            if rms(pcm, every=8) > LOUD_RMS:
                self.loud[index] += 1

    async def connect(self, signal: Callable[[str], Awaitable[dict[str, Any]]]) -> str:
        """Offer, answer through ``signal`` ({"sdp", "listener"}); the listener id."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        reply = await signal(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(
            RTCSessionDescription(reply["sdp"], "answer")
        )
        return str(reply["listener"])

    def stop_pinging(self) -> None:
        """Go quiet on the data channel (a page that froze or lost its network)."""
        self.ping = False

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()
