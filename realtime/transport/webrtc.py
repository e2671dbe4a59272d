"""The browser's caller transport: one aiortc peer connection per web call.

The page sends an SDP offer (signalling is a plain POST, see ``calls/web/``); the
answer comes from ``WebRtcCall.answer``. Then:

- the page's microphone track is decoded by aiortc, resampled to PCM16 24 kHz
  (``CallerAudioIn``) and handed to the bridge 20 ms at a time;
- the bridge's caller commands arrive through ``send_to_caller``: audio and marks
  go to ``AgentAudioTrack`` (paced at real time on the RTP clock), a clear drops
  what is queued;
- a data channel (label ``events``) carries JSON both ways: to the page the
  call's state, partial and final transcript lines, the AI's speaking state and
  errors (``send_event``); from the page its playback position
  (``{"type": "played", "rtp": <RTP timestamp>, "age_ms": <ms>}``, from
  ``getSynchronizationSources()``), which echoes the marks it passed, and
  ``{"type": "hangup"}``.

The stream starts (the bridge spends the call's one-time token) when the data
channel opens, which is after ICE and DTLS succeeded. Host candidates come from
``host_addresses`` when given (aioice leaves 127.0.0.1 out of its own list;
multi-homed servers choose which addresses to offer); ICE servers (STUN/TURN)
from ``ice_servers``, none meaning host candidates only.

Nothing here imports Django; ``realtime/web_calls.py`` wires it to a CallSession.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from realtime.protocol.bridge_state import (
    CallerCommand,
    ClearCaller,
    SendAudio,
    SendMark,
)
from realtime.transport.aiortc_tuning import audio_level_install
from realtime.transport.webrtc_audio import (
    AgentAudioTrack,
    ArrivalOrderJitterBuffer,
    CallerAudioIn,
    LatencyHistogram,
    StereoRecorder,
)

__all__ = [
    "EVENTS_CHANNEL",
    "CallerSide",
    "WebRtcCall",
    "ice_servers_from",
]

log = logging.getLogger(__name__)

EVENTS_CHANNEL: Final = "events"
MAX_QUEUED_PACKETS: Final = 250  # 5 s of caller audio waiting for the bridge
MAX_EVENT_CHARS: Final = 4096  # a message from the page larger than this is ignored
SPEAKING_QUIET_FRAMES: Final = 10  # 200 ms without AI audio: no longer speaking


def ice_servers_from(entries: Sequence[Mapping[str, Any]]) -> list[RTCIceServer]:
    """RTCIceServer objects from the browser-shaped JSON of WEBRTC_ICE_SERVERS."""
    servers = []
    for entry in entries:
        urls = entry.get("urls")
        if not isinstance(urls, str | list) or not urls:
            raise ValueError(f"an ICE server needs urls: {entry!r}")
        servers.append(
            RTCIceServer(
                urls=urls,
                username=entry.get("username"),
                credential=entry.get("credential"),
            )
        )
    return servers


class CallerSide(Protocol):
    """What the WebRTC call needs of the bridge (``realtime.bridge.CallBridge``)."""

    async def on_caller_started(
        self, *, stream_id: str, call_ref: str, token: str
    ) -> bool: ...

    async def on_caller_audio(self, payload_b64: str) -> None: ...

    async def on_playback_mark(self, name: str, *, played_at: float) -> None: ...

    async def on_caller_stopped(self) -> None: ...


class WebRtcCall:
    """One browser call's peer connection, bound to a bridge once it exists."""

    def __init__(
        self,
        *,
        call_ref: str,
        stream_token: str,
        ice_servers: Sequence[Mapping[str, Any]] = (),
        recorder: StereoRecorder | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.call_ref = call_ref
        self.stream_id = f"web-{call_ref}"
        self._token = stream_token
        self._clock = clock
        self.recorder = recorder
        audio_level_install()
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=ice_servers_from(ice_servers))
        )
        self.track = AgentAudioTrack(
            clock=clock, recorder=recorder, on_frame_sent=self._frame_sent
        )
        self._audio_in = CallerAudioIn()
        self._bridge: CallerSide | None = None
        self._channel: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False
        self._caller_left = False
        self._ai_speaking = False
        self._quiet_frames = 0
        self.on_closed: Callable[[], Awaitable[None]] | None = None
        self._packets: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue(
            MAX_QUEUED_PACKETS
        )
        self._jitter = ArrivalOrderJitterBuffer(self._packet_arrived, clock)
        self.caller_packets_overflow = 0
        # Added latency: an RTP packet's arrival → its append written to the model;
        # AI audio handed to us (or the end of the audio before it) → its RTP packet
        # sent.
        self.inbound_latency = LatencyHistogram()
        self.outbound_latency = LatencyHistogram()
        self.caller_frames_in = 0
        self.caller_bytes_forwarded = 0
        self.caller_frames_forwarded = 0
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    # ------------------------------------------------------------- signalling

    async def answer(self, offer_sdp: str) -> str:
        """Take the page's offer; return our answer (ICE gathering complete)."""
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=offer_sdp, type="offer")
        )
        opus = [
            codec
            for codec in RTCRtpSender.getCapabilities("audio").codecs
            if codec.mimeType.lower() == "audio/opus"
        ]
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "audio":
                self._jitter.install(transceiver.receiver)
                # Our track hands aiortc Opus packets: nothing else may be chosen.
                transceiver.setCodecPreferences(opus)
        sender = self.pc.addTrack(self.track)
        self.track.sender = sender
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    def bind(self, bridge: CallerSide) -> None:
        """Attach the bridge that gets this caller's audio and events."""
        self._bridge = bridge

    # ------------------------------------------------------------- bridge → page

    async def send_to_caller(self, command: CallerCommand) -> None:
        """Carry out one of the bridge's caller commands."""
        if isinstance(command, SendAudio):
            self.track.queue_audio(base64.b64decode(command.payload_b64))
        elif isinstance(command, SendMark):
            self.track.queue_mark(command.name)
        elif isinstance(command, ClearCaller):
            self.track.clear()
            self.send_event({"type": "clear"})

    def send_event(self, event: Mapping[str, Any]) -> None:
        """Send one JSON event to the page, if its channel is open."""
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            with contextlib.suppress(Exception):
                channel.send(json.dumps(event, ensure_ascii=False, default=str))

    async def close(self, code: int = 1000) -> None:
        """End the call's media: close the peer connection and the recording."""
        if self._closed:
            return
        self._closed = True
        self.send_event({"type": "ended", "code": code})
        for task in list(self._tasks):
            if task is not asyncio.current_task():  # the hang-up may be closing us
                task.cancel()
        self.track.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
        if self.recorder is not None:
            self.recorder.close()
        if self.on_closed is not None:
            await self.on_closed()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------- page → bridge

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio":
            self._spawn(self._read_caller(), "webrtc-caller-audio")

    def _packet_arrived(self, payload: bytes, arrived: float) -> None:
        try:
            self._packets.put_nowait((payload, arrived))
        except asyncio.QueueFull:
            self.caller_packets_overflow += 1

    async def _read_caller(self) -> None:
        audio_in = self._audio_in
        while True:
            payload, arrived = await self._packets.get()
            self.caller_frames_in += 1
            pcm = audio_in.decode(payload)
            if not pcm:
                continue
            if self.recorder is not None:
                self.recorder.caller(pcm)
            bridge = self._bridge
            if bridge is None or self._caller_left:
                continue  # after the hang-up, audio still in flight goes nowhere
            await bridge.on_caller_audio(CallerAudioIn.b64(pcm))
            self.caller_frames_forwarded += 1
            self.caller_bytes_forwarded += len(pcm)
            self.inbound_latency.add(self._clock() - arrived)

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label != EVENTS_CHANNEL:
            return
        self._channel = channel
        channel.on("message", self._on_page_message)
        self._spawn(self._start_stream(), "webrtc-start")

    async def _start_stream(self) -> None:
        if self._started or self._bridge is None:
            return
        self._started = True
        ok = await self._bridge.on_caller_started(
            stream_id=self.stream_id, call_ref=self.call_ref, token=self._token
        )
        self.send_event({"type": "state", "state": "live" if ok else "refused"})

    def _on_page_message(self, message: Any) -> None:
        if not isinstance(message, str) or len(message) > MAX_EVENT_CHARS:
            return
        try:
            event = json.loads(message)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "played":
            self._on_played(event)
        elif kind == "hangup":
            self._spawn(self._caller_gone(), "webrtc-hangup")

    def _on_played(self, event: Mapping[str, Any]) -> None:
        rtp, age_ms = event.get("rtp"), event.get("age_ms", 0)
        if not isinstance(rtp, int) or not isinstance(age_ms, int | float):
            return
        played = self.track.playback_reached(
            rtp, reported_at=self._clock(), age_s=float(age_ms) / 1000
        )
        bridge = self._bridge
        if bridge is None or not played:
            return

        async def echo() -> None:
            for mark in played:
                await bridge.on_playback_mark(mark.name, played_at=mark.played_at)

        self._spawn(echo(), "webrtc-marks")

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._spawn(self._caller_gone(), "webrtc-gone")

    async def _caller_gone(self) -> None:
        self._caller_left = True
        if self._bridge is not None and not self._closed:
            await self._bridge.on_caller_stopped()

    # ------------------------------------------------------------- figures

    def _frame_sent(self, available: float | None, sent_at: float) -> None:
        """A 20 ms frame went out: AI audio that could play from ``available``, or
        silence (None)."""
        if available is None:
            if self._ai_speaking:
                self._quiet_frames += 1
                if self._quiet_frames >= SPEAKING_QUIET_FRAMES:
                    self._ai_speaking = False
                    self.send_event({"type": "ai-speaking", "speaking": False})
            return
        self.outbound_latency.add(sent_at - available)
        self._quiet_frames = 0
        if not self._ai_speaking:
            self._ai_speaking = True
            self.send_event({"type": "ai-speaking", "speaking": True})

    def figures(self) -> dict[str, Any]:
        """Counters and added-latency histograms of this call's media (an event)."""
        return {
            "caller_packets_missing": self._jitter.missing,
            "caller_packets_dropped": self._jitter.dropped,
            "caller_packets_overflow": self.caller_packets_overflow,
            "caller_packets_undecodable": self._audio_in.errors,
            "caller_bytes_forwarded": self.caller_bytes_forwarded,
            "ai_bytes_queued": self.track.bytes_queued,
            "ai_queued_ms_at_end": round(self.track.queued_ms, 1),
            "caller_frames_in": self.caller_frames_in,
            "caller_frames_forwarded": self.caller_frames_forwarded,
            "ai_frames_out": self.track.audio_frames_out,
            "frames_out": self.track.frames_out,
            "inbound_p50_ms": self.inbound_latency.percentile(0.5),
            "inbound_p99_ms": self.inbound_latency.percentile(0.99),
            "outbound_p50_ms": self.outbound_latency.percentile(0.5),
            "outbound_p99_ms": self.outbound_latency.percentile(0.99),
            "latency_bin_ms": LatencyHistogram.BIN_MS,
            "inbound_histogram": self.inbound_latency.sparse(),
            "outbound_histogram": self.outbound_latency.sparse(),
        }
