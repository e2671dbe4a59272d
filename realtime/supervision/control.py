"""A supervisor's control of a live AI call (F-75): barge, take over, hand back.

One ``SupervisorControl`` per bridge, made at the first ``supervise-*`` command
(a call nobody supervises pays nothing). It turns the commands into the bridge
state's ``pause``/``resume``, sends the microphone of the listener who holds the
call to the caller, runs that supervisor's transcriber, and hands the call back
to the AI when that supervisor's browser is lost and does not come back within
the grace period.

Commands (``data`` always carries ``by_id`` and ``by_name``):

- ``supervise-barge`` / ``supervise-take-over`` {listener?}: the AI pauses;
  ``listener`` is whose microphone the caller hears (none for an API client:
  the AI is silent, nobody speaks from here);
- ``supervise-barge-end`` / ``supervise-hand-back``: the AI resumes with a note
  of what both sides said meanwhile.

The microphone arrives as PCM16 24 kHz 20 ms frames (the media hub decodes the
Opus). For the phone it becomes μ-law 8 kHz (PyAV: libswresample, then the
``pcm_mulaw`` encoder) in whole 160-byte frames, each sent at once as a Media
Streams ``media`` message; a web call takes the PCM16 as it is. Nothing queues
it behind the AI's audio: the AI's was cleared at the pause.

No Django here: events and the ``held_by`` release go through callables the
bridge gives.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import av

from realtime.protocol.bridge_state import Action, BridgeState, SendAudio
from realtime.protocol.caller_audio import MULAW_8K, CallerAudioFormat
from realtime.protocol.openai_events import Transcription
from realtime.protocol.supervision_state import PauseMode
from realtime.supervision.transcriber import SupervisorTranscriber

__all__ = [
    "BARGE",
    "BARGE_END",
    "COMMANDS",
    "HAND_BACK",
    "TAKE_OVER",
    "PhoneFrames",
    "SupervisorControl",
]

log = logging.getLogger(__name__)

BARGE: Final = "supervise-barge"
BARGE_END: Final = "supervise-barge-end"
TAKE_OVER: Final = "supervise-take-over"
HAND_BACK: Final = "supervise-hand-back"
COMMANDS: Final = frozenset({BARGE, BARGE_END, TAKE_OVER, HAND_BACK})
MIC_RATE: Final = 24_000
PHONE_RATE: Final = 8_000
PHONE_FRAME_BYTES: Final = MULAW_8K.frame_bytes  # 160: 20 ms of μ-law

TranscriberFactory = Callable[..., SupervisorTranscriber]


class PhoneFrames:
    """PCM16 24 kHz mono → μ-law 8 kHz, in whole 20 ms (160-byte) frames."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(
            format="s16", layout="mono", rate=PHONE_RATE
        )
        codec = av.CodecContext.create("pcm_mulaw", "w")
        assert isinstance(codec, av.AudioCodecContext)
        codec.sample_rate = PHONE_RATE
        codec.layout = "mono"
        codec.format = "s16"
        codec.open()
        self._codec = codec
        self._pts = 0
        self._held = bytearray()

    def encode(self, pcm24: bytes) -> list[bytes]:
        """The whole μ-law frames ready after ``pcm24``; the rest waits."""
        samples = len(pcm24) // 2
        if not samples:
            return []
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm24[: samples * 2])
        frame.sample_rate = MIC_RATE
        frame.pts = self._pts
        self._pts += samples
        for resampled in self._resampler.resample(frame):
            for packet in self._codec.encode(resampled):
                self._held += bytes(packet)
        whole = len(self._held) - len(self._held) % PHONE_FRAME_BYTES
        frames = [
            bytes(self._held[at : at + PHONE_FRAME_BYTES])
            for at in range(0, whole, PHONE_FRAME_BYTES)
        ]
        del self._held[:whole]
        return frames


class SupervisorControl:
    """Who holds one call, and the supervisor's audio and words while they do."""

    def __init__(
        self,
        *,
        state: BridgeState,
        audio: CallerAudioFormat,
        perform: Callable[[list[Action]], Awaitable[None]],
        to_caller: Callable[[SendAudio], Awaitable[None]],
        record_event: Callable[[str, dict[str, Any]], None],
        release_hold: Callable[[], None],
        model_url: str,
        api_key: str,
        transcription: Transcription | None,
        grace_s: float,
        transcriber_factory: TranscriberFactory = SupervisorTranscriber,
    ) -> None:
        self._state = state
        self._phone = audio == MULAW_8K
        self._perform = perform
        self._to_caller = to_caller
        self._record_event = record_event
        self._release_hold = release_hold
        self._model_url = model_url
        self._api_key = api_key
        self._transcription = transcription
        self._grace_s = grace_s
        self._make_transcriber = transcriber_factory
        self.mode: PauseMode | None = None
        self.mic: str | None = None  # the listener whose microphone the caller hears
        self.by_name = ""
        self._frames: PhoneFrames | None = None
        self._transcriber: SupervisorTranscriber | None = None
        self._grace: asyncio.Task[None] | None = None
        self._closed = False
        self.frames_sent = 0

    @property
    def transcriber(self) -> SupervisorTranscriber | None:
        """The supervisor's transcription session while one runs."""
        return self._transcriber

    # ------------------------------------------------------------------ commands

    async def on_command(self, command: str, data: dict[str, Any]) -> None:
        """One of ``COMMANDS``."""
        if self._closed:
            return
        if command in (BARGE, TAKE_OVER):
            mode: PauseMode = "barge" if command == BARGE else "take-over"
            listener = data.get("listener")
            await self._pause(mode, str(listener) if listener else None, data)
        elif command in (BARGE_END, HAND_BACK):
            await self._resume()

    async def _pause(
        self, mode: PauseMode, listener: str | None, data: dict[str, Any]
    ) -> None:
        self._cancel_grace()
        self.mode = mode
        self.by_name = str(data.get("by_name") or "")
        await self._perform(self._state.pause(mode, by_name=self.by_name))
        if listener != self.mic:
            await self._close_transcriber()
            self.mic = listener
            self._frames = None
            if listener is not None:
                self._open_transcriber()

    async def _resume(self) -> None:
        self._cancel_grace()
        self.mode = None
        self.mic = None
        self._frames = None
        await self._close_transcriber()
        await self._perform(self._state.resume())

    # ------------------------------------------------------------------ media hub

    async def on_audio(self, listener_id: str, pcm24: bytes) -> None:
        """A 20 ms frame of a listener's microphone: to the caller if they hold it."""
        if self._closed or listener_id != self.mic or self.mode is None:
            return
        sid = self._state.stream_sid
        if sid is not None:
            frames = self._phone_frames().encode(pcm24) if self._phone else [pcm24]
            for frame in frames:
                payload = base64.b64encode(frame).decode("ascii")
                await self._to_caller(SendAudio(sid, payload))
                self.frames_sent += 1
        transcriber = self._transcriber
        if transcriber is not None:
            transcriber.feed(pcm24)

    def _phone_frames(self) -> PhoneFrames:
        if self._frames is None:
            self._frames = PhoneFrames()
        return self._frames

    async def on_lost(self, listener_id: str) -> None:
        """A listener's browser is gone; if they held the call, the grace begins."""
        if self._closed or listener_id != self.mic or self.mode is None:
            return
        self._cancel_grace()
        self._grace = asyncio.create_task(
            self._hand_back_after_grace(listener_id), name="supervisor-grace"
        )

    async def _hand_back_after_grace(self, listener_id: str) -> None:
        await asyncio.sleep(self._grace_s)
        if self._closed or listener_id != self.mic or self.mode is None:
            return  # back within the grace, or handed back meanwhile
        self._grace = None  # this task: not to be cancelled by the resume below
        log.info("supervisor %s lost: the AI holds the call again", listener_id)
        self._record_event(HAND_BACK, {"by_id": None, "reason": "supervisor-lost"})
        self._release_hold()
        await self._resume()

    def _cancel_grace(self) -> None:
        grace, self._grace = self._grace, None
        if grace is not None and grace is not asyncio.current_task():
            grace.cancel()

    # ------------------------------------------------------------------ words

    def _open_transcriber(self) -> None:
        self._transcriber = self._make_transcriber(
            model_url=self._model_url,
            api_key=self._api_key,
            transcription=self._transcription,
            on_line=self._on_line,
            on_failure=self._on_transcriber_failure,
        )
        self._transcriber.start()

    async def _close_transcriber(self) -> None:
        transcriber, self._transcriber = self._transcriber, None
        if transcriber is not None:
            await transcriber.close()

    async def _on_line(self, item_id: str, text: str) -> None:
        if not self._closed:
            line_id = f"sv_{item_id}"  # apart from the model session's item ids
            await self._perform(self._state.supervisor_said(text, line_id))

    async def _on_transcriber_failure(self, detail: str) -> None:
        self._record_event(
            "supervise-transcription-failed", {"listener": self.mic, "detail": detail}
        )

    async def close(self) -> None:
        """The call is over: stop the grace and the transcriber."""
        self._closed = True
        self._cancel_grace()
        with contextlib.suppress(Exception):
            await self._close_transcriber()
