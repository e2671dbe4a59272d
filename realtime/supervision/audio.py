"""Conversions of the listen path: the call's audio → 20 ms Opus packets at 48 kHz.

A call's audio comes in the session's format (``realtime/protocol/caller_audio``):
μ-law 8 kHz for the phone, PCM16 24 kHz for the browser. ``SideEncoder`` turns
each 20 ms of it into one Opus packet (libopus through PyAV, fed at the call's
rate: Opus's RTP clock is 48 kHz whatever the input) as it arrives, once per call
side, whatever the number of listeners; ``MicDecoder`` turns a
supervisor's Opus packets back into exact 960-byte PCM16 24 kHz frames.

Nothing here imports Django.
"""

from __future__ import annotations

import base64
import binascii
import fractions
from typing import Any, Final

import av

from realtime.protocol.caller_audio import FRAME_MS, CallerAudioFormat
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
MIC_FRAME_BYTES: Final = 960  # 20 ms of PCM16 at 24 kHz: what the bridge takes
_TIME_BASE: Final = fractions.Fraction(1, OPUS_RATE)


def opus_packet(payload: bytes, pts: int) -> Any:
    """An ``av.Packet`` aiortc's Opus sender packs as is, at RTP position ``pts``."""
    packet = av.Packet(payload)
    packet.pts = pts
    packet.time_base = _TIME_BASE
    return packet


def _opus_encoder(rate: int) -> Any:
    """libopus for speech, fed at the call's own rate (it takes 8, 12, 16, 24 or
    48 kHz as is: no resampling on our side), 20 ms packets, RTP clock 48 kHz."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = rate
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = 32_000
    encoder.time_base = fractions.Fraction(1, rate)
    encoder.options = {"application": "voip", "frame_duration": "20"}
    encoder.open()
    return encoder


class SideEncoder:
    """One call side's audio (the session's format) → one Opus payload per 20 ms.

    Input may come in any size; output is one packet per whole 20 ms. μ-law is
    expanded to PCM16 (a table look-up in libavcodec) and both formats are
    encoded at their own rate: libopus needs no resampled input.
    """

    def __init__(self, audio: CallerAudioFormat) -> None:
        self.audio = audio
        self.rate = audio.sample_rate
        self._frame_samples = self.rate * FRAME_MS // 1000
        self._decoder: Any = None
        if audio.realtime_type == "audio/pcmu":
            self._decoder = av.CodecContext.create("pcm_mulaw", "r")
            self._decoder.sample_rate = audio.sample_rate
            self._decoder.layout = "mono"
        self._encoder = _opus_encoder(self.rate)
        self._pending = bytearray()  # PCM16 at ``rate``, not yet a whole frame
        self._pts = 0
        self.errors = 0
        self.silence = self._silence_payload()

    def _silence_payload(self) -> bytes:
        """An Opus packet of silence, encoded once on an encoder of its own."""
        encoder = _opus_encoder(self.rate)
        payloads: list[bytes] = []
        for index in range(3):
            frame = _frame_from_pcm(
                bytes(2 * self._frame_samples),
                rate=self.rate,
                pts=index * self._frame_samples,
            )
            payloads += [bytes(p) for p in encoder.encode(frame)]
        return payloads[-1]

    def pcm16(self, data: bytes) -> bytes:
        """``data`` (the session's format) as PCM16 at its own rate."""
        if self._decoder is None:
            return data
        return b"".join(_pcm_of([f]) for f in self._decoder.decode(av.Packet(data)))

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
        self._pending += self.pcm16(data)
        out: list[bytes] = []
        frame_bytes = 2 * self._frame_samples
        while len(self._pending) >= frame_bytes:
            chunk = bytes(self._pending[:frame_bytes])
            del self._pending[:frame_bytes]
            frame = _frame_from_pcm(chunk, rate=self.rate, pts=self._pts)
            self._pts += self._frame_samples
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
