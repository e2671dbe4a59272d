"""G.711 helpers and test signals for the emulators (8 kHz μ-law unless stated).

No ``audioop``: it is removed in Python 3.13. Conversions use 256-entry tables,
and whole buffers go through ``bytes.translate`` so they run at C speed.

Durations: μ-law and A-law carry 8 bytes per millisecond; PCM16 at 24 kHz (the
OpenAI default ``audio/pcm``) carries 48 bytes per millisecond.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable
from functools import lru_cache

__all__ = [
    "ALAW_TO_PCM",
    "BYTES_PER_MS",
    "FRAME_BYTES",
    "ULAW_SILENCE",
    "ULAW_TO_PCM",
    "audio_ms",
    "decode_ulaw",
    "encode_pcm16",
    "from_ulaw",
    "is_silence",
    "linear_to_alaw",
    "linear_to_ulaw",
    "silence",
    "speech",
    "to_ulaw",
    "tone",
    "tone_for_text",
]

ULAW_SILENCE = 0xFF
"""μ-law code of a zero sample (0x7F is "negative zero")."""

FRAME_BYTES = 160
"""One 20 ms Media Streams frame of μ-law at 8 kHz."""

BYTES_PER_MS = {"audio/pcmu": 8, "audio/pcma": 8, "audio/pcm": 48}
"""Bytes per millisecond of each OpenAI Realtime audio format."""

_BIAS = 0x84


def linear_to_ulaw(sample: int) -> int:
    """Encode one signed 16-bit sample as a G.711 μ-law code (as audioop does)."""
    value = sample >> 2  # μ-law works on 14 bits
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, 8159) + 0x21
    segment = (value >> 6).bit_length()
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + _BIAS) << exponent
    magnitude -= _BIAS
    return -magnitude if code & 0x80 else magnitude


_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def linear_to_alaw(sample: int) -> int:
    """Encode one signed 16-bit sample as a G.711 A-law code."""
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = next(
        (i for i, end in enumerate(_ALAW_SEGMENT_ENDS) if value <= end), None
    )
    if segment is None:
        return 0x7F ^ mask
    shift = 1 if segment < 2 else segment
    return ((segment << 4) | ((value >> shift) & 0x0F)) ^ mask


def _alaw_to_linear(code: int) -> int:
    code ^= 0x55
    value = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        value += 8
    else:
        value = (value + 0x108) << (segment - 1)
    return value if code & 0x80 else -value


ULAW_TO_PCM: tuple[int, ...] = tuple(_ulaw_to_linear(c) for c in range(256))
"""Signed 16-bit value of each μ-law code (the 256-entry decode table)."""

ALAW_TO_PCM: tuple[int, ...] = tuple(_alaw_to_linear(c) for c in range(256))
"""Signed 16-bit value of each A-law code."""

_ULAW_TO_ALAW = bytes(linear_to_alaw(v) for v in ULAW_TO_PCM)
_ALAW_TO_ULAW = bytes(linear_to_ulaw(v) for v in ALAW_TO_PCM)


def encode_pcm16(samples: Iterable[int]) -> bytes:
    """Encode signed 16-bit samples (8 kHz) as μ-law bytes."""
    return bytes(linear_to_ulaw(s) for s in samples)


def decode_ulaw(data: bytes) -> list[int]:
    """Decode μ-law bytes to signed 16-bit samples."""
    table = ULAW_TO_PCM
    return [table[b] for b in data]


def _pcm16_bytes(samples: array[int]) -> bytes:
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()


def from_ulaw(data: bytes, fmt: str) -> bytes:
    """Convert 8 kHz μ-law to an OpenAI audio format (``audio/pcm`` is 24 kHz)."""
    if fmt == "audio/pcmu":
        return data
    if fmt == "audio/pcma":
        return data.translate(_ULAW_TO_ALAW)
    if fmt == "audio/pcm":
        table = ULAW_TO_PCM
        # Sample-and-hold upsampling: a fake only needs the right length.
        return _pcm16_bytes(array("h", (table[b] for b in data for _ in range(3))))
    raise ValueError(f"unknown audio format {fmt!r}")


def to_ulaw(data: bytes, fmt: str) -> bytes:
    """Convert audio in an OpenAI format to 8 kHz μ-law."""
    if fmt == "audio/pcmu":
        return data
    if fmt == "audio/pcma":
        return data.translate(_ALAW_TO_ULAW)
    if fmt == "audio/pcm":
        samples = array("h")
        samples.frombytes(data[: len(data) - len(data) % 2])
        if sys.byteorder != "little":
            samples.byteswap()
        return encode_pcm16(samples[::3])
    raise ValueError(f"unknown audio format {fmt!r}")


def audio_ms(n_bytes: int, fmt: str = "audio/pcmu") -> float:
    """Return the duration of ``n_bytes`` of audio in ``fmt``."""
    return n_bytes / BYTES_PER_MS[fmt]


def silence(ms: int) -> bytes:
    """Return ``ms`` milliseconds of μ-law digital silence (0xFF)."""
    return bytes([ULAW_SILENCE]) * (ms * 8)


@lru_cache(maxsize=16)
def _quiet_codes(threshold: int) -> bytes:
    return bytes(c for c in range(256) if abs(ULAW_TO_PCM[c]) <= threshold)


def is_silence(payload: bytes, threshold: int = 124) -> bool:
    """Tell whether every μ-law sample is within ``threshold`` of zero.

    The default accepts 0xFF/0x7F and the 15 codes either side of zero (±124),
    i.e. digital silence and the faint noise a PSTN line carries.
    """
    return not payload.translate(None, _quiet_codes(threshold))


@lru_cache(maxsize=64)
def tone(ms: int, freq_hz: float = 440.0, amplitude: int = 8000) -> bytes:
    """Return ``ms`` milliseconds of a sine tone as μ-law bytes at 8 kHz."""
    step = 2 * math.pi * freq_hz / 8000
    return encode_pcm16(round(amplitude * math.sin(step * n)) for n in range(ms * 8))


@lru_cache(maxsize=32)
def speech(ms: int, *, pitch_hz: float = 140.0, amplitude: int = 9000) -> bytes:
    """Return ``ms`` milliseconds of a crude voiced signal (never silence).

    Syllables of 180 ms with a rising and falling pitch and three harmonics;
    the envelope never drops below 30 %, so every 20 ms window reads as speech.
    """
    samples: list[int] = []
    syllable = 180 * 8
    for n in range(ms * 8):
        index, pos = divmod(n, syllable)
        f0 = pitch_hz * (1.0 + 0.25 * ((index * 7) % 5) / 4)
        envelope = 0.3 + 0.7 * math.sin(math.pi * pos / syllable)
        phase = 2 * math.pi * f0 * n / 8000
        value = math.sin(phase) + 0.5 * math.sin(2 * phase) + 0.25 * math.sin(3 * phase)
        samples.append(round(amplitude * envelope * value / 1.75))
    return encode_pcm16(samples)


_PAUSES = set("、。，．,.!?！？…")


def _char_ms(char: str) -> int:
    if char in _PAUSES:
        return 250
    if char.isspace():
        return 40
    if ord(char) < 0x3000:
        return 65  # Latin letters: roughly 15 characters per second
    return 130  # kana and kanji: roughly 7.5 morae per second


@lru_cache(maxsize=256)
def tone_for_text(text: str) -> bytes:
    """Return a tone pattern as long as ``text`` would take to say (μ-law).

    This is a tone, not speech: one short beep per character, its pitch taken
    from the character, with silence for punctuation.
    """
    parts: list[bytes] = []
    for char in text:
        ms = _char_ms(char)
        if char in _PAUSES or char.isspace():
            parts.append(silence(ms))
        else:
            parts.append(tone(ms, 330.0 + (ord(char) % 12) * 45.0, 7000))
    return b"".join(parts)
