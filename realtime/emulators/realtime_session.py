"""One connection of the fake OpenAI Realtime server: session state and playback.

``FakeSession.run()`` sends ``session.created``, then handles client events in
order. Event order of a spoken turn with server VAD (PROTOCOL A4):

1. ``input_audio_buffer.speech_started`` → ``speech_stopped`` → ``committed``
2. ``conversation.item.added`` (user audio) → ``conversation.item.done``
3. later, from a task: ``conversation.item.input_audio_transcription.delta``*
   → ``.completed`` (only when ``audio.input.transcription`` is set)
4. ``response.created`` → ``rate_limits.updated``
5. per output item: ``response.output_item.added`` → ``conversation.item.added``
   - a message: ``response.content_part.added``, then for each odd-sized chunk
     the ``response.output_audio_transcript.delta`` pieces due, then
     ``response.output_audio.delta``; then ``response.output_audio.done`` →
     ``response.output_audio_transcript.done`` → ``response.content_part.done``
     (text-only sessions use ``response.output_text.*`` instead)
   - a function call: ``response.function_call_arguments.delta``* →
     ``response.function_call_arguments.done``
   - ``response.output_item.done`` → ``conversation.item.done``
6. ``response.done`` with usage.

A cancel (caller speech with ``interrupt_response``, or ``response.cancel``)
closes whatever is open in the same order, with the item ``incomplete``, then
``response.done`` ``cancelled`` (``turn_detected`` or ``client_cancelled``).

VAD works on the audio timeline, not the clock: a 20 ms window is speech when
its μ-law is not silence (``audio.is_silence``); a turn ends after
``silence_ms`` (or the session's ``silence_duration_ms``) of silent windows.
``audio_start_ms`` includes ``prefix_padding_ms``; ``audio_end_ms`` includes
the silence, as the real server reports them. ``semantic_vad`` is treated as
server VAD with 500 ms of silence. ``idle_timeout_ms`` is not simulated.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from realtime.emulators import audio
from realtime.emulators import realtime_shapes as shapes
from realtime.emulators.realtime_checks import ClientEventError, check_client_event
from realtime.emulators.realtime_config import default_session, merge_session
from realtime.emulators.realtime_conversation import Conversation, Item
from realtime.emulators.realtime_record import RealtimeConnection, Violation
from realtime.emulators.realtime_responses import (
    Response,
    ResponsePlayer,
    SessionOver,
    TurnContext,
)
from realtime.emulators.scenarios import Scenario
from realtime.ws_send import send_text

__all__ = ["FakeSession", "IdSource"]

MAX_APPEND_BYTES = 15 * 1024 * 1024
_APPEND_KEYS = frozenset({"type", "audio", "event_id"})
_WINDOW = audio.FRAME_BYTES  # VAD decides per 20 ms of μ-law


class IdSource:
    """Server-wide ids: ``event_…``, ``item_…``, ``resp_…``, ``call_…``."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def new(self, prefix: str) -> str:
        """Return a fresh id with ``prefix``."""
        return f"{prefix}_{next(self._counter):06d}"


class FakeSession:
    """Play ``scenario`` on one accepted connection, following PROTOCOL A."""

    def __init__(
        self,
        ws: ServerConnection,
        record: RealtimeConnection,
        scenario: Scenario,
        ids: IdSource,
        *,
        record_events: bool = True,
    ) -> None:
        self._ws = ws
        self._rec = record
        self._sc = scenario
        self._ids = ids
        self._record_events = record_events
        self._faulty = scenario.faults_apply(record.index)
        self._session = default_session(ids.new("sess"), record.model or "gpt-realtime")
        record.session = self._session
        self._cache_session()
        self._conversation = Conversation()
        self._responses = ResponsePlayer(
            send=self._send,
            new_id=ids.new,
            scenario=scenario,
            conversation=self._conversation,
            record=record,
            check_formats=self._check_formats,
            on_task_done=self._task_done,
        )
        self._input_ms = 0.0
        self._buffer = bytearray()
        self._buffer_start_ms = 0.0
        self._speaking = False
        self._speech_start_ms = 0.0
        self._silence_run_ms = 0.0
        self._speech_item: str | None = None
        self._turns = 0
        self._answered_turns = 0
        self._last_turn_audio = b""
        self._last_turn_transcript = ""
        self._tool_outputs: list[str] = []
        self._format_checked = False
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._after = {s.after: s for s in reversed(scenario.schedule) if s.after}
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "output_audio_buffer.clear": self._on_output_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.retrieve": self._on_item_retrieve,
            "conversation.item.delete": self._on_item_delete,
            "conversation.item.truncate": self._on_truncate,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
        }

    # -- lifecycle -----------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until either side closes it."""
        try:
            await self._send("session.created", session=self._session)
            self._start_timers()
            async for message in self._ws:
                await self._on_message(message)
        except (ConnectionClosed, SessionOver):
            pass
        finally:
            for task in list(self._tasks):
                task.cancel()
            self._responses.stop()

    def _start_timers(self) -> None:
        sc = self._sc
        if self._faulty and sc.drop_after_ms is not None:
            self._spawn(self._later(sc.drop_after_ms, self._drop))
        if self._faulty and sc.expire_after_ms is not None:
            self._spawn(self._later(sc.expire_after_ms, self._expire))
        for scheduled in sc.schedule:
            if scheduled.at_ms is not None:
                send = functools.partial(self._raw, dict(scheduled.event))
                self._spawn(self._later(scheduled.at_ms, send))

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            with contextlib.suppress(ConnectionClosed, SessionOver):
                await coro

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._violate("fake_internal_error", repr(task.exception()))

    async def _later(self, ms: float, action: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(ms / 1000)
        await action()

    async def _drop(self) -> None:
        """Abort the TCP connection: no close frame, the client sees 1006."""
        if not self._closing:
            self._closing = True
            self._rec.closed_by = "drop"
            self._ws.transport.abort()

    async def _expire(self) -> None:
        await self._error(
            None,
            "session_expired",
            "Your session hit the maximum duration of 60 minutes.",
        )
        await self._close(
            self._sc.expire_close_code, "invalid_request_error.session_expired"
        )

    async def _close(self, code: int, reason: str) -> None:
        self._closing = True
        self._rec.closed_by = "server"
        await self._ws.close(code, reason)

    # -- sending -------------------------------------------------------------

    async def _send(self, event_type: str, /, **fields: Any) -> None:
        await self._emit(
            {"type": event_type, "event_id": self._ids.new("event"), **fields}
        )

    async def _raw(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self._ids.new("event"))
        await self._emit(event)

    async def _emit(self, event: dict[str, Any]) -> None:
        if self._closing:
            raise SessionOver
        rec = self._rec
        rec.sent_count += 1
        if self._record_events:
            rec.sent.append(event)
            rec.changed.notify()
        await send_text(self._ws, orjson.dumps(event))
        limit = self._sc.drop_after_server_events
        if self._faulty and limit is not None and rec.sent_count >= limit:
            await self._drop()

    async def _error(
        self,
        client_event_id: str | None,
        code: str | None,
        message: str,
        param: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        await self._send(
            "error",
            error={
                "type": error_type,
                "code": code,
                "message": message,
                "param": param,
                "event_id": client_event_id,
            },
        )

    def _violate(self, code: str, detail: str) -> None:
        self._rec.violations.append(Violation(code, detail))

    # -- receiving -----------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        rec = self._rec
        rec.received_count += 1
        rec.changed.notify()
        if isinstance(message, bytes):
            if self._record_events:
                rec.received.append(message)
            self._violate("binary_frame", "client sent a binary frame")
            await self._error(None, None, "Binary frames are not supported.")
            return
        try:
            event = orjson.loads(message)
        except ValueError:
            if self._record_events:
                rec.received.append(message)
            error = ClientEventError(
                "invalid_json",
                "We could not parse the JSON body of your request. Expected a "
                "JSON object.",
            )
            await self._refuse(None, "(not JSON)", error)
            return
        if self._record_events:
            rec.received.append(event)
        event_type = event.get("type") if isinstance(event, dict) else None
        client_id = event.get("event_id") if isinstance(event, dict) else None
        if not isinstance(client_id, str):
            client_id = None
        try:
            if not (
                event_type == "input_audio_buffer.append"
                and event.keys() <= _APPEND_KEYS
                and isinstance(event.get("audio"), str)
                and isinstance(event.get("event_id", ""), str)
            ):
                check_client_event(event)
            await self._handlers[event["type"]](event)
        except ClientEventError as error:
            await self._refuse(client_id, str(event_type), error)
        else:
            self._satisfy(event)
        await self._after_event(str(event_type))

    async def _refuse(
        self, client_id: str | None, event_type: str, error: ClientEventError
    ) -> None:
        self._violate(
            error.code or "invalid_request_error", f"{event_type}: {error.message}"
        )
        await self._error(client_id, error.code, error.message, error.param)

    def _satisfy(self, event: dict[str, Any]) -> None:
        pending = self._rec.expectations
        for expectation in list(pending):
            if expectation.matches(event):
                pending.remove(expectation)
                if expectation.then is not None:
                    pending.append(expectation.then)

    async def _after_event(self, event_type: str) -> None:
        scheduled = self._after.pop(event_type, None)
        if scheduled is not None:
            await self._raw(dict(scheduled.event))
        limit = self._sc.drop_after_client_events
        if self._faulty and limit is not None and self._rec.received_count >= limit:
            await self._drop()

    # -- session -------------------------------------------------------------

    def _cache_session(self) -> None:
        audio_cfg = self._session["audio"]
        self._in_format: str = audio_cfg["input"]["format"]["type"]
        self._turn_detection: dict[str, Any] | None = audio_cfg["input"][
            "turn_detection"
        ]

    async def _on_session_update(self, event: dict[str, Any]) -> None:
        update = event["session"]
        if update["type"] != "realtime":
            raise ClientEventError(
                "invalid_value",
                f"Invalid value: '{update['type']}'. This connection holds a "
                "'realtime' session (a transcription session is opened with "
                "?intent=transcription).",
                "session.type",
            )
        voice = ((update.get("audio") or {}).get("output") or {}).get("voice")
        current = self._session["audio"]["output"]["voice"]
        if voice is not None and voice != current and self._responses.audio_produced:
            raise ClientEventError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                "session.audio.output.voice",
            )
        self._session = merge_session(self._session, update)
        self._cache_session()
        self._rec.session = self._session
        self._rec.session_updates += 1
        await self._send("session.updated", session=self._session)

    def _check_formats(self, output_format: str) -> None:
        wanted = self._sc.expect_audio_format
        if wanted is None or self._format_checked:
            return
        self._format_checked = True
        if self._in_format != wanted or output_format != wanted:
            self._violate(
                "audio_format",
                f"audio flowed with input {self._in_format} and output "
                f"{output_format}; set {wanted} both ways in session.update first",
            )

    # -- input audio and VAD -------------------------------------------------

    async def _on_append(self, event: dict[str, Any]) -> None:
        encoded: str = event["audio"]
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ClientEventError(
                "invalid_value",
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                "audio",
            ) from None
        if len(raw) > MAX_APPEND_BYTES:
            raise ClientEventError(
                "invalid_value",
                "Invalid 'audio': more than 15 MiB in one event.",
                "audio",
            )
        fmt = self._in_format
        ms = len(raw) / audio.BYTES_PER_MS[fmt]
        start_ms = self._input_ms
        self._input_ms += ms
        self._rec.input_audio_ms = self._input_ms
        if self._rec.first_append_at is None:
            self._rec.first_append_at = time.monotonic()
            self._check_formats(self._session["audio"]["output"]["format"]["type"])
        if self._sc.frame_echo:
            open_echo = functools.partial(self._start_response, "client", {})
            await self._responses.echo_frame(encoded, raw, fmt, open_echo)
            return
        ulaw = audio.to_ulaw(raw, fmt)
        self._buffer += ulaw
        if self._turn_detection is not None:
            await self._vad(ulaw, start_ms)

    def _offset(self, ms: float) -> int:
        return max(0, round((ms - self._buffer_start_ms) * 8))

    async def _vad(self, ulaw: bytes, start_ms: float) -> None:
        td = self._turn_detection or {}
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
                        max(self._buffer_start_ms, window_start - prefix_ms), td
                    )
                elif len(self._buffer) > (prefix_ms + 1000) * 8:
                    # VAD drops silence: keep only what prefix padding needs.
                    cut = len(self._buffer) - prefix_ms * 8
                    del self._buffer[:cut]
                    self._buffer_start_ms += cut / 8
            elif speech:
                self._silence_run_ms = 0.0
            else:
                self._silence_run_ms += window_end - window_start
                if self._silence_run_ms >= silence_ms:
                    await self._speech_stopped(window_end, td)

    async def _speech_started(self, start_ms: float, td: dict[str, Any]) -> None:
        self._speaking = True
        self._silence_run_ms = 0.0
        self._speech_start_ms = start_ms
        self._speech_item = self._ids.new("item")
        await self._send(
            "input_audio_buffer.speech_started",
            audio_start_ms=int(start_ms),
            item_id=self._speech_item,
        )
        if td.get("interrupt_response", True):
            await self._responses.interrupt()

    async def _speech_stopped(self, end_ms: float, td: dict[str, Any]) -> None:
        item_id = self._speech_item or self._ids.new("item")
        self._speaking = False
        self._speech_item = None
        await self._send(
            "input_audio_buffer.speech_stopped",
            audio_end_ms=int(end_ms),
            item_id=item_id,
        )
        cut = self._offset(end_ms)
        utterance = bytes(self._buffer[self._offset(self._speech_start_ms) : cut])
        del self._buffer[:cut]
        self._buffer_start_ms = end_ms
        await self._commit(item_id, utterance)
        if td.get("create_response", True) and self._responses.active is None:
            await self._start_response("turn", {})

    async def _commit(self, item_id: str, utterance: bytes) -> None:
        previous = self._conversation.last_id
        await self._send(
            "input_audio_buffer.committed", previous_item_id=previous, item_id=item_id
        )
        item = Item(
            shapes.user_audio_item(item_id, None), len(utterance) / 8, utterance
        )
        self._conversation.append(item)
        await self._send(
            "conversation.item.added", previous_item_id=previous, item=item.data
        )
        await self._send(
            "conversation.item.done", previous_item_id=previous, item=item.data
        )
        self._turns += 1
        self._last_turn_audio = utterance
        self._last_turn_transcript = self._sc.caller_transcript(
            self._turns, self._session["instructions"]
        )
        if self._session["audio"]["input"]["transcription"] is not None:
            self._spawn(self._transcribe(item, self._last_turn_transcript))

    async def _transcribe(self, item: Item, transcript: str) -> None:
        await asyncio.sleep(self._sc.transcription_delay_s)
        for piece in shapes.split_text(transcript):
            await self._send(
                "conversation.item.input_audio_transcription.delta",
                item_id=item.id,
                content_index=0,
                delta=piece,
            )
        audio_tokens = shapes.audio_tokens_in(item.audio_ms)
        text_tokens = shapes.text_tokens(transcript)
        await self._send(
            "conversation.item.input_audio_transcription.completed",
            item_id=item.id,
            content_index=0,
            transcript=transcript,
            usage={
                "type": "tokens",
                "input_tokens": audio_tokens,
                "output_tokens": text_tokens,
                "total_tokens": audio_tokens + text_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            },
        )
        item.data = shapes.user_audio_item(item.id, transcript)

    async def _on_commit(self, event: dict[str, Any]) -> None:
        held_ms = len(self._buffer) / 8
        if held_ms < 100:
            raise ClientEventError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at "
                f"least 100ms of audio, but buffer only has {held_ms:.2f}ms of audio.",
            )
        item_id = self._speech_item or self._ids.new("item")
        utterance = bytes(self._buffer)
        self._reset_buffer()
        await self._commit(item_id, utterance)

    def _reset_buffer(self) -> None:
        self._buffer.clear()
        self._buffer_start_ms = self._input_ms
        self._speaking = False
        self._speech_item = None
        self._silence_run_ms = 0.0

    async def _on_clear(self, event: dict[str, Any]) -> None:
        self._reset_buffer()
        await self._send("input_audio_buffer.cleared")

    async def _on_output_clear(self, event: dict[str, Any]) -> None:
        self._violate(
            "output_audio_buffer_clear",
            "output_audio_buffer.clear is WebRTC/SIP only; over a WebSocket, clear "
            "the caller's playback (Twilio clear) instead",
        )

    # -- conversation items --------------------------------------------------

    async def _on_item_create(self, event: dict[str, Any]) -> None:
        data = dict(event["item"])
        position = self._conversation.position_after(event.get("previous_item_id"))
        content = data.get("content") or []
        if data.get("role") == "assistant" and any(
            part.get("type") == "output_audio" for part in content
        ):
            raise ClientEventError(
                "invalid_value",
                "Assistant audio content cannot be created; use 'output_text'.",
                "item.content",
            )
        item_id = data.get("id") or self._ids.new("item")
        if item_id in self._conversation:
            raise ClientEventError(
                "invalid_value", f"Item with id '{item_id}' already exists.", "item.id"
            )
        user_audio = b""
        for part in content:
            if part.get("type") == "input_audio" and "audio" in part:
                user_audio += self._decode_item_audio(part["audio"])
        data = {
            **data,
            "id": item_id,
            "object": "realtime.item",
            "status": data.get("status", "completed"),
        }
        if user_audio:  # audio bytes never travel in conversation.item.* events
            data["content"] = [
                {k: v for k, v in part.items() if k != "audio"} for part in content
            ]
        if data["type"] == "function_call_output":
            self._note_tool_output(data["call_id"])
        previous = self._conversation.id_before(position)
        self._conversation.insert(Item(data, len(user_audio) / 8, user_audio), position)
        await self._send(
            "conversation.item.added", previous_item_id=previous, item=data
        )
        await self._send("conversation.item.done", previous_item_id=previous, item=data)

    def _decode_item_audio(self, encoded: str) -> bytes:
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ClientEventError(
                "invalid_value", "Invalid base64 audio.", "item.content"
            ) from None
        return audio.to_ulaw(raw, self._in_format)

    def _note_tool_output(self, call_id: str) -> None:
        if not self._conversation.has_call(call_id):
            self._violate(
                "unknown_call_id",
                f"function_call_output for call_id {call_id}, which no "
                "function_call item in the conversation carries",
            )
        self._tool_outputs.append(call_id)

    async def _on_item_retrieve(self, event: dict[str, Any]) -> None:
        item = self._conversation.get(event["item_id"])
        data = item.data
        if item.audio and data.get("role") == "user":
            encoded = base64.b64encode(audio.from_ulaw(item.audio, self._in_format))
            data = {
                **data,
                "content": [
                    {**part, "audio": encoded.decode()}
                    if part.get("type") == "input_audio"
                    else part
                    for part in data["content"]
                ],
            }
        await self._send("conversation.item.retrieved", item=data)

    async def _on_item_delete(self, event: dict[str, Any]) -> None:
        item = self._conversation.get(event["item_id"])
        self._conversation.delete(item.id)
        await self._send("conversation.item.deleted", item_id=item.id)

    async def _on_truncate(self, event: dict[str, Any]) -> None:
        item = self._conversation.get(event["item_id"])
        if item.data.get("type") != "message" or item.data.get("role") != "assistant":
            raise ClientEventError(
                "invalid_value", "Only assistant messages can be truncated.", "item_id"
            )
        content_index: int = event["content_index"]
        if content_index != 0:
            raise ClientEventError(
                "invalid_value",
                f"Invalid 'content_index': the item has no content part "
                f"{content_index}.",
                "content_index",
            )
        held_ms = int(item.audio_ms)
        end_ms: int = event["audio_end_ms"]
        if end_ms > held_ms:
            raise ClientEventError(
                None, f"Audio content of {held_ms}ms is already shorter than {end_ms}ms"
            )
        # The server also drops the unheard part of the transcript.
        parts = item.data.get("content") or []
        if parts and held_ms:
            transcript = parts[0].get("transcript") or ""
            kept = transcript[: round(len(transcript) * end_ms / held_ms)]
            item.data = {**item.data, "content": [{**parts[0], "transcript": kept}]}
        item.audio_ms = float(end_ms)
        await self._send(
            "conversation.item.truncated",
            item_id=item.id,
            content_index=content_index,
            audio_end_ms=end_ms,
        )

    # -- responses -------------------------------------------------------------

    async def _on_response_create(self, event: dict[str, Any]) -> None:
        params = event.get("response") or {}
        active = self._responses.active
        if params.get("conversation", "auto") != "none" and active is not None:
            raise ClientEventError(
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress: "
                f"{active.id}. Wait until the response is finished before "
                "creating a new one.",
            )
        await self._start_response("client", params)

    async def _on_response_cancel(self, event: dict[str, Any]) -> None:
        target = self._responses.find(event.get("response_id"))
        if target is None:
            raise ClientEventError(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
            )
        await self._responses.cancel(target, "client_cancelled")

    async def _start_response(
        self, trigger: Literal["turn", "client"], params: dict[str, Any]
    ) -> Response:
        unanswered = self._turns > self._answered_turns
        turn = TurnContext(
            turn_index=self._turns,
            caller_audio=self._last_turn_audio if unanswered else b"",
            caller_transcript=self._last_turn_transcript,
            tool_outputs=tuple(self._tool_outputs),
        )
        self._tool_outputs.clear()
        self._answered_turns = self._turns
        return await self._responses.start(trigger, params, self._session, turn)
