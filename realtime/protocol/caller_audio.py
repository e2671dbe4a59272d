"""The caller transport's audio format, as the model sees it.

Both transports speak a Realtime audio format the model takes as is, so the
bridge never converts audio on its own hot path:

- the phone (Twilio Media Streams): G.711 μ-law at 8 kHz, ``audio/pcmu``,
  passed through untouched;
- the browser (WebRTC): 16-bit little-endian PCM at 24 kHz, ``audio/pcm``; the
  WebRTC transport resamples Opus's 48 kHz to and from it.

The bridge state counts audio in bytes of this format: a frame is 20 ms, marks
and the heard position are byte offsets, ``audio_end_ms`` is bytes divided by
``bytes_per_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "FRAME_MS",
    "MULAW_8K",
    "PCM16_24K",
    "CallerAudioFormat",
    "RealtimeAudioType",
    "caller_audio_format",
]

RealtimeAudioType = Literal["audio/pcmu", "audio/pcm"]

FRAME_MS: Final = 20  # the unit both transports send: Twilio's frame, an RTP packet


@dataclass(frozen=True, slots=True)
class CallerAudioFormat:
    """One Realtime audio format: its ``type``, rate and sample width."""

    realtime_type: RealtimeAudioType
    sample_rate: int
    bytes_per_sample: int

    @property
    def bytes_per_ms(self) -> int:
        """Bytes of audio in one millisecond (8 for μ-law, 48 for PCM16 24 kHz)."""
        return self.sample_rate * self.bytes_per_sample // 1000

    @property
    def frame_bytes(self) -> int:
        """Bytes in one 20 ms frame (160 for μ-law, 960 for PCM16 24 kHz)."""
        return FRAME_MS * self.bytes_per_ms

    def session_format(self) -> dict[str, object]:
        """The ``audio.input.format`` / ``audio.output.format`` object of a session."""
        if self.realtime_type == "audio/pcm":
            return {"type": self.realtime_type, "rate": self.sample_rate}
        return {"type": self.realtime_type}


MULAW_8K: Final = CallerAudioFormat("audio/pcmu", 8000, 1)
"""Twilio's μ-law, 8 kHz mono."""

PCM16_24K: Final = CallerAudioFormat("audio/pcm", 24000, 2)
"""The browser's audio as the model takes it: PCM16 little-endian, 24 kHz mono."""

_BY_TYPE: Final = {f.realtime_type: f for f in (MULAW_8K, PCM16_24K)}


def caller_audio_format(realtime_type: str) -> CallerAudioFormat:
    """Return the format named by a Realtime ``type``; ValueError for any other."""
    try:
        return _BY_TYPE[realtime_type]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unsupported caller audio format {realtime_type!r}") from None
