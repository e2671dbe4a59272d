"""The WebRTC transport on loopback, with an aiortc client standing in for the page."""

from __future__ import annotations

import asyncio
import base64
import math
import wave
from array import array
from pathlib import Path

import pytest

from realtime.protocol.bridge_state import ClearCaller, SendAudio, SendMark
from realtime.transport.aiortc_tuning import (
    AIORTC_AUDIO_LEVEL,
    audio_level_dbov,
    host_addresses_choose,
)
from realtime.transport.webrtc import WebRtcCall, ice_servers_from
from realtime.transport.webrtc_audio import (
    ArrivalOrderJitterBuffer,
    LatencyHistogram,
    StereoRecorder,
)
from tests.realtime.transport.webrtc_client import (
    WebRtcTestClient,
    eventually,
    rms,
    tone_frame,
)


class FakeBridge:
    """Records what the transport hands the bridge."""

    def __init__(self, *, accept: bool = True) -> None:
        self.accept = accept
        self.started: list[tuple[str, str, str]] = []
        self.audio: list[bytes] = []
        self.marks: list[tuple[str, float]] = []
        self.stopped = 0

    async def on_caller_started(self, *, stream_id: str, call_ref: str, token: str):
        self.started.append((stream_id, call_ref, token))
        return self.accept

    async def on_caller_audio(self, payload_b64: str) -> None:
        self.audio.append(base64.b64decode(payload_b64))

    async def on_playback_mark(self, name: str, *, played_at: float) -> None:
        self.marks.append((name, played_at))

    async def on_caller_stopped(self) -> None:
        self.stopped += 1


def tone24(ms: int, amplitude: int = 9000) -> bytes:
    count = 24 * ms
    return array(
        "h",
        (
            int(amplitude * math.sin(2 * math.pi * 300 * n / 24000))
            for n in range(count)
        ),
    ).tobytes()


@pytest.fixture(autouse=True)
def loopback_candidates():
    host_addresses_choose(["127.0.0.1"])
    yield
    host_addresses_choose([])


async def connected(
    tmp_path: Path, *, amplitude: int = 8000, accept: bool = True
) -> tuple[WebRtcCall, FakeBridge, WebRtcTestClient]:
    recorder = StereoRecorder(tmp_path / "call.wav")
    call = WebRtcCall(call_ref="7", stream_token="tok", recorder=recorder)
    bridge = FakeBridge(accept=accept)
    call.bind(bridge)
    client = WebRtcTestClient(amplitude=amplitude)
    await client.connect(call.answer)
    await asyncio.wait_for(client.channel_open.wait(), 10)
    return call, bridge, client


async def test_answer_offers_only_the_chosen_host_address(tmp_path):
    """With WEBRTC_HOST_ADDRESSES=127.0.0.1 the answer's only candidate is loopback."""
    call = WebRtcCall(call_ref="1", stream_token="t")
    client = WebRtcTestClient()
    answers: list[str] = []

    async def signal(offer: str) -> str:
        answers.append(await call.answer(offer))
        return answers[0]

    await client.connect(signal)
    candidates = [
        line for line in answers[0].splitlines() if line.startswith("a=candidate")
    ]
    assert candidates and all(" 127.0.0.1 " in c for c in candidates)
    await client.close()
    await call.close()


async def test_caller_audio_reaches_the_bridge_as_pcm16_24k_frames(tmp_path):
    """The tone from the page arrives packet by packet as PCM16 24 kHz (≈ 960
    bytes, 20 ms), with energy, after the stream started with the call's token;
    each packet's added latency is measured."""
    call, bridge, client = await connected(tmp_path)
    await eventually(lambda: len(bridge.audio) >= 25, within_s=10)
    assert bridge.started == [("web-7", "7", "tok")]
    # Each packet's audio goes on at once: about 20 ms (960 bytes) of PCM16.
    sizes = [len(frame) for frame in bridge.audio[2:]]
    assert all(size % 2 == 0 and 900 <= size <= 1020 for size in sizes)
    assert sum(sizes) / len(sizes) == pytest.approx(960, abs=8)
    assert max(rms(frame) for frame in bridge.audio[5:]) > 2000
    assert call.inbound_latency.total >= 20
    # Packets are not held back (aiortc's own buffer keeps four: 80 ms); the first
    # ones, during the start-up of both ends in this one loop, may wait a little.
    assert call.inbound_latency.percentile(0.5) < 5
    await client.close()
    await call.close()


async def test_silence_from_the_page_has_no_energy(tmp_path):
    """A silent microphone gives frames, but quiet ones (the energy check means it)."""
    call, bridge, client = await connected(tmp_path, amplitude=0)
    await eventually(lambda: len(bridge.audio) >= 15, within_s=10)
    assert max(rms(frame) for frame in bridge.audio) < 50
    await client.close()
    await call.close()


async def test_ai_audio_plays_in_the_page_and_its_mark_echoes(tmp_path):
    """Audio queued by the bridge plays in the page; the mark after it comes back
    once the page reports having played past it, with a time of play."""
    call, bridge, client = await connected(tmp_path, amplitude=0)
    await client.wait_event("state")
    loop = asyncio.get_running_loop()
    queued_at = loop.time()
    await call.send_to_caller(
        SendAudio("web-7", base64.b64encode(tone24(400)).decode())
    )
    await call.send_to_caller(SendMark("web-7", "a1"))
    await eventually(lambda: bool(bridge.marks), within_s=10)
    assert client.loud_frames >= 15  # ~400 ms of tone, 20 ms frames
    name, played_at = bridge.marks[0]
    assert name == "a1"
    # The mark sits after 400 ms of audio: it cannot have played sooner.
    assert played_at - queued_at >= 0.38
    speaking = [e for e in client.events if e["type"] == "ai-speaking"]
    assert speaking and speaking[0]["speaking"] is True
    await client.close()
    await call.close()


async def test_clear_drops_the_queued_audio(tmp_path):
    """A barge-in's clear stops the AI's audio at once; its marks never echo."""
    call, bridge, client = await connected(tmp_path, amplitude=0)
    await client.wait_event("state")
    await call.send_to_caller(
        SendAudio("web-7", base64.b64encode(tone24(3000)).decode())
    )
    await call.send_to_caller(SendMark("web-7", "a1"))
    await asyncio.sleep(0.3)
    await call.send_to_caller(ClearCaller("web-7"))
    sent_at_clear = call.track.audio_frames_out
    await asyncio.sleep(0.5)  # what was in flight (jitter buffers) has played
    loud = client.loud_frames
    await asyncio.sleep(0.3)
    assert call.track.audio_frames_out == sent_at_clear
    assert client.loud_frames == loud  # the rest of the 3 s never came
    assert loud < 150 * 0.8 / 3  # far less than the 3 s queued
    assert bridge.marks == []
    assert call.track.queued_ms == 0
    await client.close()
    await call.close()


async def test_hangup_from_the_page_stops_the_caller(tmp_path):
    """{"type": "hangup"} on the data channel tells the bridge the caller left."""
    call, bridge, client = await connected(tmp_path)
    client.send({"type": "hangup"})
    await eventually(lambda: bool(bridge.stopped), within_s=5)
    await client.close()
    await call.close()


async def test_a_refused_stream_tells_the_page(tmp_path):
    """A token the bridge refuses gives the page state "refused"."""
    call, _, client = await connected(tmp_path, accept=False)
    event = await client.wait_event("state")
    assert event["state"] == "refused"
    await client.close()
    await call.close()


async def test_recording_is_stereo_caller_left_ai_right(tmp_path):
    """The bridge recording: 24 kHz stereo, the caller's tone left, the AI's right."""
    call, _, client = await connected(tmp_path, amplitude=8000)
    await client.wait_event("state")
    await asyncio.sleep(0.3)
    await call.send_to_caller(
        SendAudio("web-7", base64.b64encode(tone24(300)).decode())
    )
    await asyncio.sleep(0.6)
    await client.close()
    await call.close()
    with wave.open(str(tmp_path / "call.wav")) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (
            2,
            2,
            24000,
        )
        samples = array("h", wav.readframes(wav.getnframes()))
    left, right = samples[0::2], samples[1::2]
    assert rms(left.tobytes()) > 1000
    assert rms(right.tobytes()) > 500
    assert len(left) >= 24 * 800


def test_ice_servers_from_setting_json():
    """WEBRTC_ICE_SERVERS entries become RTCIceServers; an entry needs urls."""
    servers = ice_servers_from(
        [{"urls": "turn:turn.example:3478", "username": "u", "credential": "p"}]
    )
    assert servers[0].urls == "turn:turn.example:3478"
    assert servers[0].username == "u" and servers[0].credential == "p"
    with pytest.raises(ValueError):
        ice_servers_from([{"username": "u"}])


def test_latency_histogram_percentiles():
    """0.5 ms bins; a percentile is the upper edge of its bin; overflow is kept."""
    histogram = LatencyHistogram()
    assert histogram.percentile(0.99) is None
    for ms in [1.2] * 98 + [7.1, 250.0]:
        histogram.add(ms / 1000)
    assert histogram.percentile(0.5) == 1.5
    assert histogram.percentile(0.99) == 7.5
    assert histogram.percentile(1.0) == 200.5
    assert histogram.sparse() == {"2": 98, "14": 1, "400": 1}


def test_jitter_buffer_passes_packets_through_and_drops_late_ones():
    """Each new packet is delivered at once with its arrival; a repeat or an older
    one is dropped, a skipped sequence number counted; aiortc's decoder gets none."""

    class Packet:
        def __init__(self, sequence: int) -> None:
            self.sequence_number = sequence
            self.timestamp = sequence * 960
            self._data = bytes([sequence % 256])

    delivered: list[tuple[bytes, float]] = []
    buffer = ArrivalOrderJitterBuffer(
        lambda payload, at: delivered.append((payload, at)), clock=lambda: 5.0
    )
    results = [buffer.add(Packet(n)) for n in (65534, 65535, 0, 0, 65535, 2)]
    assert results == [(False, None)] * 6
    assert delivered == [
        (bytes([254]), 5.0),
        (bytes([255]), 5.0),
        (b"\0", 5.0),
        (bytes([2]), 5.0),
    ]
    assert buffer.dropped == 2
    assert buffer.missing == 1  # sequence 1 never came


def test_audio_level_matches_aiortcs_within_a_db():
    """The cheaper RFC 6465 level agrees with aiortc's own to within 1 dB, and is
    the one aiortc's senders use once a web call exists."""
    import aiortc.rtp

    for amplitude in (0, 30, 1000, 20000):
        frame = tone_frame(960, amplitude=amplitude)
        assert abs(audio_level_dbov(frame) - AIORTC_AUDIO_LEVEL(frame)) <= 1
    assert audio_level_dbov(tone_frame(0, amplitude=0)) == -127
    WebRtcCall(call_ref="1", stream_token="t")
    assert aiortc.rtp.compute_audio_level_dbov is audio_level_dbov
