"""μ-law helpers and test signals."""

import struct
import warnings

import pytest

from realtime.emulators import audio


def _audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:  # Python 3.13+
            pytest.skip("audioop is gone; nothing to compare with")
    return audioop


def test_ulaw_and_alaw_match_audioop_for_every_sample():
    """The table-based G.711 codecs agree with the reference implementation."""
    audioop = _audioop()
    samples = range(-32768, 32768)
    pcm = struct.pack(f"<{len(samples)}h", *samples)
    assert audioop.lin2ulaw(pcm, 2) == audio.encode_pcm16(samples)
    assert audioop.lin2alaw(pcm, 2) == bytes(audio.linear_to_alaw(s) for s in samples)
    every_code = bytes(range(256))
    decoded = struct.unpack("<256h", audioop.ulaw2lin(every_code, 2))
    assert decoded == audio.ULAW_TO_PCM
    assert struct.unpack("<256h", audioop.alaw2lin(every_code, 2)) == audio.ALAW_TO_PCM


def test_zero_codes_decode_to_zero():
    """0xFF and 0x7F are μ-law's two zeros."""
    assert audio.ULAW_TO_PCM[0xFF] == 0
    assert audio.ULAW_TO_PCM[0x7F] == 0
    assert audio.linear_to_ulaw(0) == audio.ULAW_SILENCE


def test_silence_is_0xff_at_8_bytes_per_ms():
    """silence(ms) is digital silence, 8 bytes per millisecond."""
    assert audio.silence(20) == b"\xff" * 160


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", True),
        (b"\xff" * 160, True),
        (b"\x7f" * 160, True),
        (bytes([0xFF, 0x7F, 0xFE, 0x7E]) * 40, True),  # within ±8 of zero
        (audio.tone(20), False),
        (b"\xff" * 159 + b"\x00", False),  # one loud sample is enough
    ],
)
def test_is_silence(payload, expected):
    """Silence is every sample near zero; one loud sample breaks it."""
    assert audio.is_silence(payload) is expected


def test_tone_has_the_requested_length_and_level():
    """tone() gives ms*8 bytes whose peak is near the amplitude."""
    data = audio.tone(100, 440.0, 8000)
    assert len(data) == 800
    peak = max(abs(s) for s in audio.decode_ulaw(data))
    assert 7500 < peak < 8500


def test_speech_is_never_silent_in_any_frame():
    """Every 20 ms window of speech() reads as speech to a VAD."""
    data = audio.speech(2000)
    assert len(data) == 16000
    frames = [data[i : i + 160] for i in range(0, len(data), 160)]
    assert not any(audio.is_silence(f) for f in frames)


def test_tone_for_text_grows_with_the_text_and_pauses_at_punctuation():
    """The tone pattern is as long as the text; punctuation is silent."""
    short = audio.tone_for_text("はい")
    long = audio.tone_for_text("はい、お電話ありがとうございます。")
    assert len(short) == 2 * 130 * 8
    assert len(long) > 4 * len(short)
    comma = audio.tone_for_text("、")
    assert audio.is_silence(comma)


@pytest.mark.parametrize("fmt", ["audio/pcmu", "audio/pcma", "audio/pcm"])
def test_format_round_trip_keeps_duration(fmt):
    """from_ulaw/to_ulaw keep the duration in every OpenAI format."""
    ulaw = audio.tone(40)
    converted = audio.from_ulaw(ulaw, fmt)
    assert audio.audio_ms(len(converted), fmt) == 40
    back = audio.to_ulaw(converted, fmt)
    assert len(back) == len(ulaw)
    # A-law and the 24 kHz round trip are lossy only by a code or two.
    assert all(abs(a - b) <= 2 for a, b in zip(back, ulaw, strict=True))


def test_pcm_is_little_endian_24khz():
    """audio/pcm is 16-bit little-endian at 24 kHz (3 samples per μ-law sample)."""
    pcm = audio.from_ulaw(bytes([audio.linear_to_ulaw(1000)]), "audio/pcm")
    values = struct.unpack("<3h", pcm)
    assert (
        values[0]
        == values[1]
        == values[2]
        == audio.ULAW_TO_PCM[audio.linear_to_ulaw(1000)]
    )


def test_unknown_format_is_refused():
    """Beta format names are not formats."""
    with pytest.raises(ValueError, match="g711_ulaw"):
        audio.from_ulaw(b"\xff", "g711_ulaw")
