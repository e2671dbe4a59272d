"""A transcription-only connection of the fake Realtime server (``?intent=transcription``).

The GA API opens a transcription session when the URL says
``intent=transcription``: ``session.created`` carries a session of type
``transcription``, and only four client events are taken: ``session.update``
(type ``transcription``, with only that session's fields: a realtime-only field
such as ``voice``, ``instructions``, ``tools`` or ``output_modalities`` is an
``unknown_parameter`` error), ``input_audio_buffer.append``, ``.commit`` and
``.clear``. Anything else (``response.create``, ``conversation.item.create``, …)
is refused with an ``error`` (code ``invalid_value`` on ``type``: the fake's
choice, the real code is unverified); the session stays open.

Appended audio goes through the same VAD as the realtime session (20 ms windows
of μ-law that are not silence are speech; ``silence_duration_ms`` of silence
ends a turn), and each turn gives ``input_audio_buffer.speech_started`` →
``speech_stopped`` → ``committed`` → ``conversation.item.added``/``.done`` →
``conversation.item.input_audio_transcription.delta``* → ``.completed``, when a
transcription model is set. What was said comes from the scenario
(``Scenario.supervisor_transcript``), turn by turn. No response is ever made.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from realtime.emulators import audio
from realtime.emulators import realtime_shapes as shapes
from realtime.emulators.realtime_checks import (
    TRANSCRIPTION_EVENT_TYPES,
    ClientEventError,
    check_client_event,
    check_transcription_session,
)
from realtime.emulators.realtime_config import (
    default_transcription_session,
    merge_session,
)
from realtime.emulators.realtime_record import RealtimeConnection, Violation
from realtime.emulators.scenarios import Scenario
from realtime.ws_send import send_text

__all__ = ["FakeTranscriptionSession"]

MAX_APPEND_BYTES = 15 * 1024 * 1024
_WINDOW = audio.FRAME_BYTES  # VAD decides per 20 ms of μ-law


class FakeTranscriptionSession:
    """Serve one ``intent=transcription`` connection (see the module docstring)."""

    def __init__(
        self,
        ws: ServerConnection,
        record: RealtimeConnection,
        scenario: Scenario,
        new_id: Callable[[str], str],
        *,
        record_events: bool = True,
    ) -> None:
        self._ws = ws
        self._rec = record
        self._sc = scenario
        self._new_id = new_id
        self._record_events = record_events
        self._session = default_transcription_session(new_id("sess"))
        record.session = self._session
        self._input_ms = 0.0
        self._buffer = bytearray()
        self._buffer_start_ms = 0.0
        self._speaking = False
        self._speech_start_ms = 0.0
        self._silence_run_ms = 0.0
        self._speech_item: str | None = None
        self._last_item: str | None = None
        self._turns = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Serve the connection until either side closes it."""
        try:
            await self._send("session.created", session=self._session)
            async for message in self._ws:
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            for task in list(self._tasks):
                task.cancel()

    # -- sending -------------------------------------------------------------

    async def _send(self, event_type: str, /, **fields: Any) -> None:
        event = {"type": event_type, "event_id": self._new_id("event"), **fields}
        self._rec.sent_count += 1
        if self._record_events:
            self._rec.sent.append(event)
        self._rec.changed.notify()
        await send_text(self._ws, orjson.dumps(event))

    async def _refuse(self, client_id: str | None, error: ClientEventError) -> None:
        self._rec.violations.append(
            Violation(error.code or "invalid_request_error", error.message)
        )
        await self._send(
            "error",
            error={
                "type": "invalid_request_error",
                "code": error.code,
                "message": error.message,
                "param": error.param,
                "event_id": client_id,
            },
        )

    # -- receiving -----------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        rec = self._rec
        rec.received_count += 1
        rec.changed.notify()
        if isinstance(message, bytes):
            if self._record_events:
                rec.received.append(message)
            await self._refuse(
                None, ClientEventError(None, "Binary frames are not supported.")
            )
            return
        try:
            event = orjson.loads(message)
        except ValueError:
            if self._record_events:
                rec.received.append(message)
            await self._refuse(
                None,
                ClientEventError(
                    "invalid_json",
                    "We could not parse the JSON body of your request.",
                ),
            )
            return
        if self._record_events:
            rec.received.append(event)
        client_id = event.get("event_id") if isinstance(event, dict) else None
        try:
            check_client_event(event)
            kind = event["type"]
            if kind not in TRANSCRIPTION_EVENT_TYPES:
                raise ClientEventError(
                    "invalid_value",
                    f"Invalid value: '{kind}'. '{kind}' is not supported in a "
                    "transcription session.",
                    "type",
                )
            if kind == "session.update":
                await self._on_session_update(event)
            elif kind == "input_audio_buffer.append":
                await self._on_append(event)
            elif kind == "input_audio_buffer.commit":
                await self._on_commit()
            else:
                self._reset_buffer()
                await self._send("input_audio_buffer.cleared")
        except ClientEventError as error:
            await self._refuse(client_id if isinstance(client_id, str) else None, error)

    async def _on_session_update(self, event: dict[str, Any]) -> None:
        update = event["session"]
        if update.get("type") != "transcription":
            raise ClientEventError(
                "invalid_value",
                f"Invalid value: '{update.get('type')}'. This connection holds a "
                "'transcription' session.",
                "session.type",
            )
        check_transcription_session(update)
        self._session = merge_session(self._session, update)
        self._rec.session = self._session
        self._rec.session_updates += 1
        await self._send("session.updated", session=self._session)

    # -- audio and VAD -------------------------------------------------------

    @property
    def _input(self) -> dict[str, Any]:
        audio_config: dict[str, Any] = self._session["audio"]["input"]
        return audio_config

    async def _on_append(self, event: dict[str, Any]) -> None:
        try:
            raw = base64.b64decode(event["audio"], validate=True)
        except binascii.Error:
            raise ClientEventError(
                "invalid_value",
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                "audio",
            ) from None
        if len(raw) > MAX_APPEND_BYTES:
            raise ClientEventError(
                "invalid_value", "Invalid 'audio': more than 15 MiB in one event."
            )
        fmt = self._input["format"]["type"]
        start_ms = self._input_ms
        self._input_ms += len(raw) / audio.BYTES_PER_MS[fmt]
        self._rec.input_audio_ms = self._input_ms
        ulaw = audio.to_ulaw(raw, fmt)
        self._buffer += ulaw
        td = self._input["turn_detection"]
        if td is not None:
            await self._vad(ulaw, start_ms, td)

    async def _vad(self, ulaw: bytes, start_ms: float, td: dict[str, Any]) -> None:
        if td.get("type") == "semantic_vad":
            silence_ms, prefix_ms = 500, 300
        else:
            silence_ms = td.get("silence_duration_ms", 500)
            prefix_ms = td.get("prefix_padding_ms", 300)
        if self._sc.silence_ms is not None:
            silence_ms = self._sc.silence_ms
        for pos in range(0, len(ulaw), _WINDOW):
            window = ulaw[pos : pos + _WINDOW]
            window_start = start_ms + pos / 8
            window_end = window_start + len(window) / 8
            speech = not audio.is_silence(window)
            if not self._speaking:
                if speech:
                    await self._speech_started(
                        max(self._buffer_start_ms, window_start - prefix_ms)
                    )
                elif len(self._buffer) > (prefix_ms + 1000) * 8:
                    cut = len(self._buffer) - prefix_ms * 8
                    del self._buffer[:cut]
                    self._buffer_start_ms += cut / 8
            elif speech:
                self._silence_run_ms = 0.0
            else:
                self._silence_run_ms += window_end - window_start
                if self._silence_run_ms >= silence_ms:
                    await self._speech_stopped(window_end)

    async def _speech_started(self, start_ms: float) -> None:
        self._speaking = True
        self._silence_run_ms = 0.0
        self._speech_start_ms = start_ms
        self._speech_item = self._new_id("item")
        await self._send(
            "input_audio_buffer.speech_started",
            audio_start_ms=int(start_ms),
            item_id=self._speech_item,
        )

    async def _speech_stopped(self, end_ms: float) -> None:
        item_id = self._speech_item or self._new_id("item")
        self._speaking = False
        self._speech_item = None
        await self._send(
            "input_audio_buffer.speech_stopped",
            audio_end_ms=int(end_ms),
            item_id=item_id,
        )
        cut = max(0, round((end_ms - self._buffer_start_ms) * 8))
        start = max(0, round((self._speech_start_ms - self._buffer_start_ms) * 8))
        utterance_ms = max(0, cut - start) / 8
        del self._buffer[:cut]
        self._buffer_start_ms = end_ms
        await self._commit(item_id, utterance_ms)

    async def _on_commit(self) -> None:
        held_ms = len(self._buffer) / 8
        if held_ms < 100:
            raise ClientEventError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at "
                f"least 100ms of audio, but buffer only has {held_ms:.2f}ms of audio.",
            )
        item_id = self._speech_item or self._new_id("item")
        self._reset_buffer()
        await self._commit(item_id, held_ms)

    def _reset_buffer(self) -> None:
        self._buffer.clear()
        self._buffer_start_ms = self._input_ms
        self._speaking = False
        self._speech_item = None
        self._silence_run_ms = 0.0

    async def _commit(self, item_id: str, audio_ms: float) -> None:
        previous, self._last_item = self._last_item, item_id
        await self._send(
            "input_audio_buffer.committed", previous_item_id=previous, item_id=item_id
        )
        item = shapes.user_audio_item(item_id, None)
        await self._send(
            "conversation.item.added", previous_item_id=previous, item=item
        )
        await self._send("conversation.item.done", previous_item_id=previous, item=item)
        self._turns += 1
        if self._input["transcription"] is not None:
            transcript = self._sc.supervisor_transcript(self._turns)
            task = asyncio.create_task(self._transcribe(item_id, transcript, audio_ms))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _transcribe(self, item_id: str, transcript: str, audio_ms: float) -> None:
        await asyncio.sleep(self._sc.transcription_delay_s)
        try:
            for piece in shapes.split_text(transcript):
                await self._send(
                    "conversation.item.input_audio_transcription.delta",
                    item_id=item_id,
                    content_index=0,
                    delta=piece,
                )
            audio_tokens = shapes.audio_tokens_in(audio_ms)
            text_tokens = shapes.text_tokens(transcript)
            await self._send(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=transcript,
                usage={
                    "type": "tokens",
                    "input_tokens": audio_tokens,
                    "output_tokens": text_tokens,
                    "total_tokens": audio_tokens + text_tokens,
                    "input_token_details": {
                        "text_tokens": 0,
                        "audio_tokens": audio_tokens,
                    },
                },
            )
        except ConnectionClosed:
            pass
