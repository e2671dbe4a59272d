"""Conversions of the listen path: the call's audio → 20 ms Opus packets at 48 kHz.

A call's audio comes in the session's format (``realtime/protocol/caller_audio``):
μ-law 8 kHz for the phone, PCM16 24 kHz for the browser. ``SideEncoder`` turns
each 20 ms of it into one Opus packet (libopus through PyAV) as it arrives, once
per call side, whatever the number of listeners; ``MicDecoder`` turns a
supervisor's Opus packets back into exact 960-byte PCM16 24 kHz frames.

Nothing here imports Django.
"""

from __future__ import annotations

import base64
import binascii
import fractions
from typing import Any, Final

import av

from realtime.protocol.caller_audio import CallerAudioFormat
from realtime.transport.webrtc_audio import CallerAudioIn, _frame_from_pcm, _pcm_of

__all__ = [
    "MIC_FRAME_BYTES",
    "OPUS_FRAME_SAMPLES",
    "OPUS_RATE",
    "MicDecoder",
    "SideEncoder",
    "opus_packet",
]

OPUS_RATE: Final = 48_000
OPUS_FRAME_SAMPLES: Final = 960  # 20 ms at 48 kHz
OPUS_FRAME_BYTES: Final = 2 * OPUS_FRAME_SAMPLES
MIC_FRAME_BYTES: Final = 960  # 20 ms of PCM16 at 24 kHz: what the bridge takes
_TIME_BASE: Final = fractions.Fraction(1, OPUS_RATE)


def opus_packet(payload: bytes, pts: int) -> Any:
    """An ``av.Packet`` aiortc's Opus sender packs as is, at RTP position ``pts``."""
    packet = av.Packet(payload)
    packet.pts = pts
    packet.time_base = _TIME_BASE
    return packet


def _opus_encoder() -> Any:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = OPUS_RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = 32_000
    encoder.time_base = _TIME_BASE
    encoder.options = {"application": "voip", "frame_duration": "20"}
    encoder.open()
    return encoder


class SideEncoder:
    """One call side's audio (the session's format) → one Opus payload per 20 ms.

    Input may come in any size; output is one packet per whole 20 ms at 48 kHz
    (the resampler keeps a few samples back, so the first frame is a little late).
    """

    def __init__(self, audio: CallerAudioFormat) -> None:
        self.audio = audio
        self._decoder: Any = None
        if audio.realtime_type == "audio/pcmu":
            self._decoder = av.CodecContext.create("pcm_mulaw", "r")
            self._decoder.sample_rate = audio.sample_rate
            self._decoder.layout = "mono"
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=OPUS_RATE)
        self._encoder = _opus_encoder()
        self._pending = bytearray()  # 48 kHz PCM16 not yet a whole frame
        self._pts = 0
        self.errors = 0
        self.silence = self._silence_payload()

    def _silence_payload(self) -> bytes:
        """An Opus packet of silence, encoded once on an encoder of its own."""
        encoder = _opus_encoder()
        payloads: list[bytes] = []
        for pts in range(0, 3 * OPUS_FRAME_SAMPLES, OPUS_FRAME_SAMPLES):
            frame = _frame_from_pcm(bytes(OPUS_FRAME_BYTES), rate=OPUS_RATE, pts=pts)
            payloads += [bytes(p) for p in encoder.encode(frame)]
        return payloads[-1]

    def pcm48(self, data: bytes) -> bytes:
        """``data`` (the session's format) as PCM16 48 kHz mono."""
        if self._decoder is not None:
            frames = self._decoder.decode(av.Packet(data))
        else:
            frames = [_frame_from_pcm(data, rate=self.audio.sample_rate)]
        out = bytearray()
        for frame in frames:
            out += _pcm_of(self._resampler.resample(frame))
        return bytes(out)

    def encode_b64(self, payload_b64: str) -> list[bytes]:
        """Opus payloads for base64 audio; none (counted) if it is not base64."""
        try:
            data = base64.b64decode(payload_b64, validate=True)
        except (binascii.Error, ValueError):
            self.errors += 1
            return []
        return self.encode(data)

    def encode(self, data: bytes) -> list[bytes]:
        """Opus payloads of every whole 20 ms now available (usually one)."""
        if len(data) % self.audio.bytes_per_sample:
            self.errors += 1
            return []
        self._pending += self.pcm48(data)
        return self.encode_pending()

    def encode_pcm48(self, pcm48: bytes) -> list[bytes]:
        """Opus payloads of PCM16 48 kHz audio (already resampled)."""
        self._pending += pcm48
        return self.encode_pending()

    def encode_pending(self) -> list[bytes]:
        out: list[bytes] = []
        while len(self._pending) >= OPUS_FRAME_BYTES:
            chunk = bytes(self._pending[:OPUS_FRAME_BYTES])
            del self._pending[:OPUS_FRAME_BYTES]
            frame = _frame_from_pcm(chunk, rate=OPUS_RATE, pts=self._pts)
            self._pts += OPUS_FRAME_SAMPLES
            out += [bytes(p) for p in self._encoder.encode(frame)]
        return out


class MicDecoder:
    """A supervisor's Opus packets → exact 960-byte PCM16 24 kHz frames."""

    def __init__(self) -> None:
        self._in = CallerAudioIn()
        self._pending = bytearray()

    @property
    def errors(self) -> int:
        return self._in.errors

    def decode(self, payload: bytes) -> list[bytes]:
        """The whole 20 ms frames now available (usually one; none at the start)."""
        self._pending += self._in.decode(payload)
        out = []
        while len(self._pending) >= MIC_FRAME_BYTES:
            out.append(bytes(self._pending[:MIC_FRAME_BYTES]))
            del self._pending[:MIC_FRAME_BYTES]
        return out
