"""Audio of the WebRTC transport: Opus frames in and out, PCM16 24 kHz for the model.

aiortc decodes the browser's Opus into 48 kHz frames and encodes what our track
gives it. Between those and the bridge (which speaks the Realtime ``audio/pcm``
format, 24 kHz mono PCM16) sit:

- ``ArrivalOrderJitterBuffer``: replaces aiortc's audio jitter buffer, which holds
  four packets back (80 ms) and then decodes in a thread of its own (a hand-over
  and a loop wake-up per packet). The model needs no smooth playout: each Opus
  packet (one 20 ms frame) is delivered as it arrives, with its arrival time;
  late and repeated packets are dropped, missing ones counted;
- ``CallerAudioIn``: decodes each packet on the loop (libopus through PyAV,
  ≈ 0.1 ms) and resamples it to PCM16 24 kHz (libswresample), ≈ 960 bytes a
  packet;
- ``AgentAudioTrack``: the track aiortc sends. The bridge queues PCM16 24 kHz
  audio and marks; ``recv()`` hands out one 20 ms Opus packet (48 kHz mono,
  encoded here: aiortc would hop to a thread and compute an audio level for every
  frame) every 20 ms of real time (silence when nothing is queued), so the RTP
  clock is the playback clock. The call negotiates Opus only. A mark is stamped with the RTP position of the sample after the audio
  queued before it; the page reports which RTP timestamp it has played
  (``RTCRtpReceiver.getSynchronizationSources()``), and ``playback_reached``
  turns that into the marks heard and when;
- ``StereoRecorder``: the bridge recording (F-28), left the caller, right the AI,
  one 20 ms block per outbound frame, so both sides stay on the playback clock.

Nothing here imports Django.
"""

from __future__ import annotations

import asyncio
import base64
import fractions
import time
import wave
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import av
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.utils import uint16_add

__all__ = [
    "MODEL_RATE",
    "RTP_RATE",
    "AgentAudioTrack",
    "ArrivalOrderJitterBuffer",
    "CallerAudioIn",
    "LatencyHistogram",
    "MarkPlayed",
    "StereoRecorder",
]

MODEL_RATE: Final = 24_000  # Realtime audio/pcm
RTP_RATE: Final = 48_000  # Opus's clock
FRAME_S: Final = 0.020
MODEL_FRAME_BYTES: Final = 960  # 20 ms of PCM16 at 24 kHz
RTP_FRAME_SAMPLES: Final = 960  # 20 ms at 48 kHz
RTP_FRAME_BYTES: Final = 2 * RTP_FRAME_SAMPLES
RTP_TIMESTAMP_MOD: Final = 1 << 32
# aiortc keeps the RTP timestamp of the last packet it sent in a private attribute;
# with the pts of the frame in that packet it gives the stream's random origin
# (aiortc 1.16: timestamp = origin + pts of our frames, pts starting at 0).
_SENDER_RTP_TIMESTAMP: Final = "_RTCRtpSender__rtp_timestamp"


def _frame_from_pcm(data: bytes, *, rate: int, pts: int | None = None) -> Any:
    """An s16 mono ``av.AudioFrame`` holding ``data``."""
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(data) // 2)
    frame.planes[0].update(data)
    frame.sample_rate = rate
    frame.time_base = fractions.Fraction(1, rate)
    if pts is not None:
        frame.pts = pts
    return frame


def _pcm_of(frames: list[Any]) -> bytes:
    """The s16 mono bytes of resampled frames (planes may be padded)."""
    out = bytearray()
    for frame in frames:
        out += bytes(frame.planes[0])[: frame.samples * 2]
    return bytes(out)


_SEQUENCE_HALF: Final = 1 << 15
_RECEIVER_JITTER_BUFFER: Final = "_RTCRtpReceiver__jitter_buffer"


class ArrivalOrderJitterBuffer(JitterBuffer):
    """Each audio packet to ``deliver`` at once; late or repeated ones dropped."""

    def __init__(
        self,
        deliver: Callable[[bytes, float], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(capacity=16)
        self._deliver = deliver
        self._clock = clock
        self._last: int | None = None
        self.dropped = 0  # repeats and late packets
        self.missing = 0  # sequence numbers never seen (lost on the way)

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        sequence = packet.sequence_number
        if self._last is not None:
            ahead = uint16_add(sequence, -self._last)
            if ahead == 0 or ahead >= _SEQUENCE_HALF:
                self.dropped += 1  # a repeat, or older than what was decoded
                return False, None
            self.missing += ahead - 1
        self._last = sequence
        self._deliver(packet._data, self._clock())
        return False, None  # aiortc's own decoder gets nothing

    def install(self, receiver: Any) -> None:
        """Put this buffer in place of ``receiver``'s (aiortc 1.16's attribute)."""
        if not hasattr(receiver, _RECEIVER_JITTER_BUFFER):
            raise RuntimeError("aiortc's receiver has no jitter buffer to replace")
        setattr(receiver, _RECEIVER_JITTER_BUFFER, self)


class LatencyHistogram:
    """Latencies in 0.5 ms bins up to 200 ms (the last bin holds anything longer)."""

    BIN_MS: Final = 0.5
    BINS: Final = 400

    def __init__(self) -> None:
        self.counts = [0] * (self.BINS + 1)
        self.total = 0

    def add(self, seconds: float) -> None:
        index = min(max(int(seconds * 1000 / self.BIN_MS), 0), self.BINS)
        self.counts[index] += 1
        self.total += 1

    def percentile(self, q: float) -> float | None:
        """The upper edge of the bin holding the ``q`` quantile, in ms."""
        if not self.total:
            return None
        rank = q * self.total
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return (index + 1) * self.BIN_MS
        return (self.BINS + 1) * self.BIN_MS

    def sparse(self) -> dict[str, int]:
        """Non-empty bins as {bin index: count}, for a call event."""
        return {str(i): c for i, c in enumerate(self.counts) if c}


class CallerAudioIn:
    """The caller's Opus packets → PCM16 24 kHz, one packet at a time."""

    def __init__(self) -> None:
        self._decoder = av.CodecContext.create("libopus", "r")
        self._decoder.layout = "mono"
        self._resampler = av.AudioResampler(
            format="s16", layout="mono", rate=MODEL_RATE
        )
        self.errors = 0

    def decode(self, payload: bytes) -> bytes:
        """PCM16 24 kHz of one packet (≈ 20 ms; empty if it cannot be decoded)."""
        try:
            frames = self._decoder.decode(av.Packet(payload))
        except av.FFmpegError:
            self.errors += 1  # the decoder keeps its state for the next packet
            return b""
        return b"".join(_pcm_of(self._resampler.resample(f)) for f in frames)

    @staticmethod
    def b64(frame: bytes) -> str:
        return base64.b64encode(frame).decode("ascii")


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """A mark the page has played, and when (``time.monotonic()`` seconds)."""

    name: str
    played_at: float


class StereoRecorder:
    """A stereo WAV (24 kHz PCM16): left the caller, right the AI (F-28).

    The outbound track calls ``write_block`` once per 20 ms frame with what it
    played; the caller's audio waits in a buffer and goes left in the same block,
    silence when none came (time-aligned on the playback clock).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # Open for the whole call; close() ends it.
        self._wav = wave.open(str(path), "wb")  # noqa: SIM115
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(MODEL_RATE)
        self._caller = bytearray()
        self.frames = 0
        self._closed = False

    def caller(self, pcm: bytes) -> None:
        if not self._closed:
            self._caller += pcm
            # Never let the caller side run far ahead (the outbound clock stopped).
            if len(self._caller) > 50 * MODEL_FRAME_BYTES:
                del self._caller[: len(self._caller) - 50 * MODEL_FRAME_BYTES]

    def write_block(self, ai_pcm: bytes) -> None:
        """One 20 ms block: the AI's ``ai_pcm`` right, the caller's next 20 ms left."""
        if self._closed:
            return
        size = len(ai_pcm)
        left = bytes(self._caller[:size]).ljust(size, b"\0")
        del self._caller[:size]
        both = array("h", bytes(2 * size))
        both[0::2] = array("h", left)
        both[1::2] = array("h", ai_pcm)
        self._wav.writeframes(both.tobytes())
        self.frames += size // 2

    @property
    def duration_s(self) -> float:
        return self.frames / MODEL_RATE

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._wav.close()


def _opus_encoder() -> Any:
    """libopus for speech: 48 kHz mono, 20 ms packets (one per frame given)."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = RTP_RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = 32_000
    encoder.time_base = fractions.Fraction(1, RTP_RATE)
    encoder.options = {"application": "voip", "frame_duration": "20"}
    encoder.open()
    return encoder


class AgentAudioTrack(MediaStreamTrack):
    """The AI's audio to the browser, paced at real time, with marks on the RTP clock."""

    kind = "audio"

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        recorder: StereoRecorder | None = None,
        on_frame_sent: Callable[[float | None, float], None] | None = None,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._recorder = recorder
        self._on_frame_sent = on_frame_sent
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RTP_RATE)
        self._encoder = _opus_encoder()
        # (model PCM 24 kHz bytes, queued-at) or (mark name, None), in order
        self._queue: deque[tuple[bytes | str, float | None]] = deque()
        self._head = bytearray()  # 48 kHz audio resampled, not yet framed
        self._head_model = bytearray()  # the same audio at 24 kHz (for the recorder)
        # (end offset in ``_head``, queued at) of each chunk resampled into the head
        self._head_chunks: deque[tuple[int, float]] = deque()
        self._pts = 0
        self._started_at: float | None = None
        self._pending_marks: deque[tuple[int, str]] = deque()  # (rtp offset, name)
        self._rtp_origin: int | None = None
        self._last_sent_pts = 0
        # When the frame handed out last could have played at the earliest (its
        # audio's arrival, or the end of the audio before it), None for silence.
        self._handed_available: float | None = None
        self._previous_audio_due: float | None = None
        self.sender: Any = None  # the RTCRtpSender, to learn the RTP origin
        self.queued_ms = 0.0
        self.bytes_queued = 0
        self.frames_out = 0
        self.audio_frames_out = 0

    # ----------------------------------------------------------- from the bridge

    def queue_audio(self, pcm24: bytes) -> None:
        """Queue AI audio (PCM16 24 kHz) after everything queued so far."""
        self._queue.append((pcm24, self._clock()))
        self.bytes_queued += len(pcm24)
        self.queued_ms += len(pcm24) / 48

    def queue_mark(self, name: str) -> None:
        """Stamp ``name`` after the audio queued so far."""
        self._queue.append((name, None))

    def clear(self) -> list[str]:
        """Drop the audio not yet sent; return the marks dropped with it."""
        dropped = [n for n, _ in self._pending_marks]
        dropped += [item for item, at in self._queue if at is None]  # type: ignore[misc]
        self._queue.clear()
        self._head.clear()
        self._head_model.clear()
        self._head_chunks.clear()
        self._pending_marks.clear()
        self.queued_ms = 0.0
        return [str(n) for n in dropped]

    # ----------------------------------------------------------- from the page

    def playback_reached(
        self, rtp_timestamp: int, *, reported_at: float, age_s: float
    ) -> list[MarkPlayed]:
        """The page played up to ``rtp_timestamp`` ``age_s`` before ``reported_at``.

        Returns the marks now played, each with when it played (the report's time,
        less the age, less the audio between the mark and the reported position).
        """
        origin = self._learn_origin()
        if origin is None:
            return []
        played = (rtp_timestamp - origin) % RTP_TIMESTAMP_MOD + RTP_FRAME_SAMPLES
        if played > self._pts + RTP_TIMESTAMP_MOD // 2:
            return []  # from before our stream began (or garbage)
        at = reported_at - max(age_s, 0.0)
        out: list[MarkPlayed] = []
        while self._pending_marks and self._pending_marks[0][0] <= played:
            offset, name = self._pending_marks.popleft()
            out.append(MarkPlayed(name, at - (played - offset) / RTP_RATE))
        return out

    def _learn_origin(self) -> int | None:
        if self._rtp_origin is None and self.sender is not None and self._pts:
            last = getattr(self.sender, _SENDER_RTP_TIMESTAMP, 0)
            if last:
                # recv() runs after the previous frame's packet went out: ``last``
                # is the timestamp of the frame before the one being prepared.
                self._rtp_origin = (last - self._last_sent_pts) % RTP_TIMESTAMP_MOD
        return self._rtp_origin

    # ----------------------------------------------------------- to aiortc

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._on_frame_sent is not None and self._pts:
            # aiortc asks for a frame only after sending the previous one: it is out.
            self._on_frame_sent(self._handed_available, now)
        if self._started_at is None:
            self._started_at = now
        due = self._started_at + self._pts / RTP_RATE
        if due > now:
            await asyncio.sleep(due - now)
        self._learn_origin_early()
        pts = self._pts
        data, model_data, queued_at = self._next_frame(pts)
        self._last_sent_pts = pts
        self._pts += RTP_FRAME_SAMPLES
        self.frames_out += 1
        if self._recorder is not None:
            self._recorder.write_block(model_data)
        if queued_at is None:
            self._handed_available = self._previous_audio_due = None
        else:
            self.audio_frames_out += 1
            # Audio that waited behind earlier audio was being played, not delayed:
            # its added latency counts from when the audio before it had played.
            follows = self._previous_audio_due
            self._handed_available = (
                queued_at if follows is None else max(queued_at, follows + FRAME_S)
            )
            self._previous_audio_due = due
        packets = self._encoder.encode(_frame_from_pcm(data, rate=RTP_RATE, pts=pts))
        if len(packets) != 1:
            raise MediaStreamError(f"the Opus encoder gave {len(packets)} packets")
        packet = packets[0]
        packet.pts = pts  # not pts less the codec's delay: marks count on this clock
        return packet

    def _learn_origin_early(self) -> None:
        if self._rtp_origin is None and self._pts:
            self._learn_origin()

    def _fill(self) -> None:
        """Resample queued audio into the head until a frame is ready; stamp marks."""
        while len(self._head) < RTP_FRAME_BYTES and self._queue:
            item, queued_at = self._queue.popleft()
            if isinstance(item, str):
                offset = self._pts + len(self._head) // 2
                self._pending_marks.append((offset, item))
                continue
            assert queued_at is not None
            self.queued_ms = max(self.queued_ms - len(item) / 48, 0.0)
            self._head += _pcm_of(
                self._resampler.resample(_frame_from_pcm(item, rate=MODEL_RATE))
            )
            self._head_chunks.append((len(self._head), queued_at))
            self._head_model += item

    def _next_frame(self, pts: int) -> tuple[bytes, bytes, float | None]:
        self._fill()
        if not self._head:
            return bytes(RTP_FRAME_BYTES), bytes(MODEL_FRAME_BYTES), None
        data = bytes(self._head[:RTP_FRAME_BYTES]).ljust(RTP_FRAME_BYTES, b"\0")
        taken = min(len(self._head), RTP_FRAME_BYTES)
        del self._head[:taken]
        model = bytes(self._head_model[:MODEL_FRAME_BYTES]).ljust(
            MODEL_FRAME_BYTES, b"\0"
        )
        del self._head_model[:MODEL_FRAME_BYTES]
        # The frame's audio was queued when its oldest chunk was.
        queued_at = self._head_chunks[0][1] if self._head_chunks else self._clock()
        self._head_chunks = deque(
            (end - taken, at) for end, at in self._head_chunks if end > taken
        )
        # Marks queued right after this frame's audio are stamped now.
        while self._queue and isinstance(self._queue[0][0], str) and not self._head:
            name, _ = self._queue.popleft()
            self._pending_marks.append((pts + taken // 2, str(name)))
        return data, model, queued_at
