"""Conversions of the listen path: μ-law / PCM16 → Opus 48 kHz, Opus → 960-byte frames."""

from __future__ import annotations

import base64
import math
from array import array

import av

from realtime.protocol.caller_audio import MULAW_8K, PCM16_24K
from realtime.supervision.audio import MIC_FRAME_BYTES, MicDecoder, SideEncoder


def tone(rate: int, ms: int, hz: float = 440.0, amplitude: int = 8000) -> bytes:
    count = rate * ms // 1000
    return array(
        "h",
        (int(amplitude * math.sin(2 * math.pi * hz * i / rate)) for i in range(count)),
    ).tobytes()


def mulaw(pcm8k: bytes) -> bytes:
    encoder = av.CodecContext.create("pcm_mulaw", "w")
    encoder.sample_rate = 8000
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.open()
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm8k) // 2)
    frame.planes[0].update(pcm8k)
    frame.sample_rate = 8000
    return b"".join(bytes(p) for p in encoder.encode(frame))


def rms(pcm: bytes) -> float:
    samples = array("h", pcm)
    return math.sqrt(sum(s * s for s in samples) / max(len(samples), 1))


def test_mulaw_frames_become_one_opus_packet_each_that_decodes_to_the_tone() -> None:
    encoder = SideEncoder(MULAW_8K)
    decoder = MicDecoder()
    payloads: list[bytes] = []
    audio = mulaw(tone(8000, 400))
    for start in range(0, len(audio), 160):
        payloads += encoder.encode_b64(
            base64.b64encode(audio[start : start + 160]).decode()
        )
    assert len(payloads) == 20  # one packet per 20 ms frame, none held back
    decoded = b"".join(b"".join(decoder.decode(p)) for p in payloads)
    assert rms(decoded[len(decoded) // 2 :]) > 3000  # the tone, not silence


def test_pcm24_frames_are_encoded_too() -> None:
    encoder = SideEncoder(PCM16_24K)
    audio = tone(24000, 200)
    payloads = [
        p for s in range(0, len(audio), 960) for p in encoder.encode(audio[s : s + 960])
    ]
    assert len(payloads) == 10
    decoder = MicDecoder()
    decoded = b"".join(b"".join(decoder.decode(p)) for p in payloads)
    assert rms(decoded[len(decoded) // 2 :]) > 3000


def test_the_silence_packet_decodes_to_silence() -> None:
    encoder = SideEncoder(MULAW_8K)
    decoder = MicDecoder()
    out = b"".join(b"".join(decoder.decode(encoder.silence)) for _ in range(5))
    assert out and rms(out) < 5


def test_bad_input_is_counted_not_raised() -> None:
    encoder = SideEncoder(PCM16_24K)
    assert encoder.encode_b64("not base64!") == []
    assert encoder.encode(b"\x01\x02\x03") == []  # half a sample
    assert encoder.errors == 2


def test_mic_packets_become_exact_960_byte_frames() -> None:
    encoder = SideEncoder(PCM16_24K)
    audio = tone(24000, 400)
    payloads = [
        p for s in range(0, len(audio), 960) for p in encoder.encode(audio[s : s + 960])
    ]
    decoder = MicDecoder()
    frames = [f for p in payloads for f in decoder.decode(p)]
    assert len(frames) >= len(payloads) - 1
    assert {len(f) for f in frames} == {MIC_FRAME_BYTES}
    assert decoder.decode(b"\xff\xff\xff") == []  # garbage: counted, nothing out
    assert decoder.errors == 1
