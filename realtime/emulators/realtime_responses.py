"""Responses of the fake Realtime server: creation, streaming, cancel, usage.

A response streams from its own task, so client events (a cancel, caller
speech) are handled while it plays. State changes before each send, and a
send writes its frame before it can be interrupted, so a cancel always knows
exactly which events went out and closes the rest in protocol order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from websockets.exceptions import ConnectionClosed

from realtime.emulators import audio
from realtime.emulators import realtime_shapes as shapes
from realtime.emulators.realtime_conversation import Conversation, Item
from realtime.emulators.realtime_record import Expectation, RealtimeConnection
from realtime.emulators.scenarios import (
    Failure,
    FunctionCall,
    ResponsePlan,
    ResponseRequest,
    Scenario,
    Speech,
)

__all__ = ["Response", "ResponsePlayer", "SessionOver", "TurnContext"]


class SessionOver(Exception):
    """The fake dropped or closed the connection; stop sending."""


class Send(Protocol):
    """Send one server event (``event_id`` is added)."""

    def __call__(self, event_type: str, /, **fields: Any) -> Awaitable[None]: ...


class NewId(Protocol):
    """Return a fresh id with a prefix."""

    def __call__(self, prefix: str, /) -> str: ...


@dataclass(frozen=True, slots=True)
class TurnContext:
    """What the session knows about the caller when a response starts."""

    turn_index: int
    caller_audio: bytes
    caller_transcript: str
    tool_outputs: tuple[str, ...]


@dataclass(slots=True, eq=False)
class _Output:
    item: Item
    index: int
    kind: Literal["message", "function_call"]
    audio: bool = True
    part_open: bool = False
    text: str = ""
    sent: set[str] = field(default_factory=set)


@dataclass(slots=True, eq=False)
class Response:
    """One response, from response.created to response.done."""

    id: str
    index: int
    in_conversation: bool
    format: dict[str, Any]
    voice: Any
    modalities: list[str]
    max_output_tokens: Any
    metadata: Any
    input_tokens: tuple[int, int]
    cached_tokens: tuple[int, int]
    outputs: list[_Output] = field(default_factory=list)
    open: _Output | None = None
    audio_ms: float = 0.0
    task: asyncio.Task[None] | None = None


class ResponsePlayer:
    """Play the scenario's responses on one connection."""

    def __init__(
        self,
        *,
        send: Send,
        new_id: NewId,
        scenario: Scenario,
        conversation: Conversation,
        record: RealtimeConnection,
        check_formats: Callable[[str], None],
        on_task_done: Callable[[asyncio.Task[None]], None],
    ) -> None:
        self._send = send
        self._new_id = new_id
        self._sc = scenario
        self._conversation = conversation
        self._rec = record
        self._check_formats = check_formats
        self._on_task_done = on_task_done
        self._conversation_id = new_id("conv")
        self._out_of_band: dict[str, Response] = {}
        self._previous_input = (0, 0)
        self.active: Response | None = None
        """The response writing to the default conversation, if any."""
        self.started = 0
        self.audio_produced = False

    def find(self, response_id: str | None) -> Response | None:
        """Return the active response with this id (None: the default one)."""
        if response_id is None:
            return self.active
        if self.active is not None and self.active.id == response_id:
            return self.active
        return self._out_of_band.get(response_id)

    def stop(self) -> None:
        """Stop streaming (the connection is gone)."""
        for resp in [self.active, *self._out_of_band.values()]:
            if resp is not None and resp.task is not None:
                resp.task.cancel()

    # -- starting ----------------------------------------------------------------

    async def start(
        self,
        trigger: Literal["turn", "client"],
        params: dict[str, Any],
        session: dict[str, Any],
        turn: TurnContext,
    ) -> Response:
        """Send response.created and rate_limits.updated; stream the rest later."""
        output = (params.get("audio") or {}).get("output") or {}
        fmt = output.get("format") or session["audio"]["output"]["format"]
        if fmt.get("type") == "audio/pcm":
            fmt = {"type": "audio/pcm", "rate": 24000, **fmt}
        instructions = params.get("instructions")
        input_tokens = self._conversation.input_tokens(
            instructions or session["instructions"]
        )
        previous_text, previous_audio = self._previous_input
        resp = Response(
            id=self._new_id("resp"),
            index=self.started,
            in_conversation=params.get("conversation", "auto") != "none",
            format=fmt,
            voice=output.get("voice", session["audio"]["output"]["voice"]),
            modalities=params.get("output_modalities") or session["output_modalities"],
            max_output_tokens=params.get(
                "max_output_tokens", session["max_output_tokens"]
            ),
            metadata=params.get("metadata"),
            input_tokens=input_tokens,
            cached_tokens=(
                min(previous_text, input_tokens[0]),
                min(previous_audio, input_tokens[1]),
            ),
        )
        self._previous_input = input_tokens
        self.started += 1
        if resp.in_conversation:
            self.active = resp
        else:
            self._out_of_band[resp.id] = resp
        if "audio" in resp.modalities:
            self._check_formats(fmt["type"])
        await self._send("response.created", response=self._body(resp, "in_progress"))
        await self._send(
            "rate_limits.updated",
            rate_limits=shapes.rate_limits(resp.index, sum(input_tokens)),
        )
        if self._sc.frame_echo:
            await self._open_message(resp)
            return resp
        request = ResponseRequest(
            trigger=trigger,
            response_index=resp.index,
            turn_index=turn.turn_index,
            instructions=instructions,
            session_instructions=session["instructions"],
            caller_audio=turn.caller_audio,
            caller_transcript=turn.caller_transcript,
            tool_outputs=turn.tool_outputs,
            session_tools=frozenset(
                str(tool.get("name", "")) for tool in session.get("tools") or ()
            ),
        )
        plan = self._sc.respond(request)
        failure = self._sc.failure if resp.index in self._sc.fail_responses else None
        resp.task = asyncio.create_task(self._play(resp, plan, failure or plan.failure))
        resp.task.add_done_callback(self._on_task_done)
        return resp

    def _body(
        self,
        resp: Response,
        status: str,
        details: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "id": resp.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": [out.item.data for out in resp.outputs],
            "conversation_id": self._conversation_id if resp.in_conversation else None,
            "output_modalities": resp.modalities,
            "max_output_tokens": resp.max_output_tokens,
            "audio": {"output": {"format": resp.format, "voice": resp.voice}},
            "usage": usage,
            "metadata": resp.metadata,
        }

    # -- streaming ---------------------------------------------------------------

    async def _pace(self, ms: float) -> None:
        speed = self._sc.audio_speed
        await asyncio.sleep(0 if math.isinf(speed) else ms / speed / 1000)

    async def _play(
        self, resp: Response, plan: ResponsePlan, failure: Failure | None
    ) -> None:
        with contextlib.suppress(ConnectionClosed, SessionOver):
            await self._play_plan(resp, plan, failure)

    async def _play_plan(
        self, resp: Response, plan: ResponsePlan, failure: Failure | None
    ) -> None:
        if failure is not None:
            error = {
                "type": failure.type,
                "code": failure.code,
                "message": failure.message,
            }
            await self._finish(resp, "failed", {"type": "failed", "error": error})
            return
        for output in plan.outputs:
            if isinstance(output, Speech):
                await self._play_speech(resp, output)
            else:
                await self._play_call(resp, output)
        await self._finish(resp, "completed")

    async def _open_output(
        self,
        resp: Response,
        kind: Literal["message", "function_call"],
        data: dict[str, Any],
    ) -> _Output:
        out = _Output(Item(data), len(resp.outputs), kind, "audio" in resp.modalities)
        resp.outputs.append(out)
        resp.open = out
        out.sent.add("item.added")
        await self._send(
            "response.output_item.added",
            response_id=resp.id,
            output_index=out.index,
            item=data,
        )
        if resp.in_conversation:
            previous = self._conversation.append(out.item)
            out.sent.add("conv.added")
            await self._send(
                "conversation.item.added", previous_item_id=previous, item=data
            )
        return out

    async def _open_message(self, resp: Response) -> _Output:
        item_id = self._new_id("item")
        data = shapes.assistant_item(item_id, "in_progress", audio=True, text=None)
        out = await self._open_output(resp, "message", data)
        out.part_open = True
        part: dict[str, Any] = (
            {"type": "audio", "transcript": ""}
            if out.audio
            else {"type": "text", "text": ""}
        )
        await self._send(
            "response.content_part.added",
            response_id=resp.id,
            item_id=item_id,
            output_index=out.index,
            content_index=0,
            part=part,
        )
        return out

    @staticmethod
    def _content_ids(resp: Response, out: _Output) -> dict[str, Any]:
        return {
            "response_id": resp.id,
            "item_id": out.item.id,
            "output_index": out.index,
            "content_index": 0,
        }

    async def _play_speech(self, resp: Response, speech: Speech) -> None:
        out = await self._open_message(resp)
        ids = self._content_ids(resp, out)
        pieces = shapes.split_text(speech.text)
        if not out.audio:
            for piece in pieces:
                out.text += piece
                await self._send("response.output_text.delta", **ids, delta=piece)
                await self._pace(60.0 * len(piece))
            await self._close_message(resp, out, "completed")
            return
        fmt = resp.format["type"]
        ulaw = speech.audio
        if ulaw is None:
            ulaw = audio.tone_for_text(speech.text)
        data = audio.from_ulaw(ulaw, fmt)
        per_ms = audio.BYTES_PER_MS[fmt]
        sizes = shapes.chunk_sizes(len(data), self._sc.chunk_bytes, per_ms // 8)
        said = offset = 0
        for number, size in enumerate(sizes, start=1):
            # Transcript pieces run slightly ahead of the audio they describe.
            due = math.ceil(number * len(pieces) / len(sizes))
            for piece in pieces[said:due]:
                out.text += piece
                await self._send(
                    "response.output_audio_transcript.delta", **ids, delta=piece
                )
            said = max(said, due)
            chunk = data[offset : offset + size]
            offset += size
            self._count_audio(resp, out, size / per_ms)
            await self._send(
                "response.output_audio.delta",
                **ids,
                delta=base64.b64encode(chunk).decode(),
            )
            await self._pace(size / per_ms)
        for piece in pieces[said:]:
            out.text += piece
            await self._send(
                "response.output_audio_transcript.delta", **ids, delta=piece
            )
        await self._close_message(resp, out, "completed")

    def _count_audio(self, resp: Response, out: _Output, ms: float) -> None:
        out.item.audio_ms += ms
        resp.audio_ms += ms
        self.audio_produced = True

    async def _close_message(self, resp: Response, out: _Output, status: str) -> None:
        ids = self._content_ids(resp, out)
        if out.part_open:
            if out.audio:
                if "audio.done" not in out.sent:
                    out.sent.add("audio.done")
                    await self._send("response.output_audio.done", **ids)
                if "transcript.done" not in out.sent:
                    out.sent.add("transcript.done")
                    await self._send(
                        "response.output_audio_transcript.done",
                        **ids,
                        transcript=out.text,
                    )
                part: dict[str, Any] = {"type": "audio", "transcript": out.text}
            else:
                if "text.done" not in out.sent:
                    out.sent.add("text.done")
                    await self._send("response.output_text.done", **ids, text=out.text)
                part = {"type": "text", "text": out.text}
            if "part.done" not in out.sent:
                out.sent.add("part.done")
                await self._send("response.content_part.done", **ids, part=part)
        out.item.data = shapes.assistant_item(
            out.item.id,
            status,
            audio=out.audio,
            text=out.text if out.part_open else None,
        )
        await self._close_output(resp, out)

    async def _close_output(self, resp: Response, out: _Output) -> None:
        resp.open = None
        if "item.done" not in out.sent:
            out.sent.add("item.done")
            await self._send(
                "response.output_item.done",
                response_id=resp.id,
                output_index=out.index,
                item=out.item.data,
            )
        if "conv.added" in out.sent and "conv.done" not in out.sent:
            out.sent.add("conv.done")
            await self._send(
                "conversation.item.done",
                previous_item_id=self._conversation.previous_of(out.item.id),
                item=out.item.data,
            )

    async def _play_call(self, resp: Response, call: FunctionCall) -> None:
        call_id = self._new_id("call")
        data = {
            "id": self._new_id("item"),
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "name": call.name,
            "call_id": call_id,
            "arguments": "",
        }
        out = await self._open_output(resp, "function_call", data)
        ids = {
            "response_id": resp.id,
            "item_id": out.item.id,
            "output_index": out.index,
            "call_id": call_id,
        }
        step = max(1, math.ceil(len(call.arguments) / 3))
        for start in range(0, len(call.arguments), step):
            piece = call.arguments[start : start + step]
            out.text += piece
            await self._send(
                "response.function_call_arguments.delta", **ids, delta=piece
            )
            await self._pace(20.0)
        out.sent.add("arguments.done")
        await self._send(
            "response.function_call_arguments.done",
            **ids,
            name=call.name,
            arguments=call.arguments,
        )
        out.item.data = {**data, "status": "completed", "arguments": call.arguments}
        self._rec.expectations.append(
            Expectation(
                f"function_call_output for {call.name} ({call_id})",
                lambda e: (
                    e.get("type") == "conversation.item.create"
                    and e["item"].get("type") == "function_call_output"
                    and e["item"].get("call_id") == call_id
                ),
                then=Expectation(
                    f"response.create after the output of {call_id}",
                    lambda e: e.get("type") == "response.create",
                ),
            )
        )
        await self._close_output(resp, out)

    # -- ending ------------------------------------------------------------------

    async def cancel(self, resp: Response, reason: str) -> None:
        """Cancel ``resp``: close what is open (incomplete), then response.done."""
        if resp.task is not None and resp.task is not asyncio.current_task():
            resp.task.cancel()
        out = resp.open
        if out is not None:
            if out.kind == "message":
                await self._close_message(resp, out, "incomplete")
            else:
                out.item.data = {
                    **out.item.data,
                    "status": "incomplete",
                    "arguments": out.text,
                }
                await self._close_output(resp, out)
        await self._finish(resp, "cancelled", {"type": "cancelled", "reason": reason})

    async def interrupt(self) -> None:
        """Caller speech with interrupt_response: cancel with turn_detected."""
        resp = self.active
        if resp is None:
            return
        heard = resp.outputs[-1] if resp.outputs else None
        if resp.task is not None:
            resp.task.cancel()
        out = resp.open
        if out is not None and out.part_open and "audio.done" not in out.sent:
            await self._send_late_deltas(resp, out)
        await self.cancel(resp, "turn_detected")
        if (
            self._sc.expect_truncate_on_barge_in
            and heard is not None
            and heard.kind == "message"
            and heard.item.audio_ms > 0
        ):
            item_id = heard.item.id
            self._rec.expectations.append(
                Expectation(
                    f"conversation.item.truncate of {item_id} after barge-in",
                    lambda e: (
                        e.get("type") == "conversation.item.truncate"
                        and e.get("item_id") == item_id
                    ),
                )
            )

    async def _send_late_deltas(self, resp: Response, out: _Output) -> None:
        """Audio already in flight when the server noticed the caller."""
        if not out.audio:
            return
        fmt = resp.format["type"]
        chunk = audio.from_ulaw(audio.tone(20, 392.0, 7000), fmt)
        for _ in range(self._sc.late_deltas):
            self._count_audio(resp, out, 20.0)
            await self._send(
                "response.output_audio.delta",
                **self._content_ids(resp, out),
                delta=base64.b64encode(chunk).decode(),
            )

    async def _finish(
        self, resp: Response, status: str, details: dict[str, Any] | None = None
    ) -> None:
        if self.active is resp:
            self.active = None
        self._out_of_band.pop(resp.id, None)
        self._rec.response_statuses[resp.id] = status
        usage = shapes.usage(
            input_text=resp.input_tokens[0],
            input_audio=resp.input_tokens[1],
            cached_text=resp.cached_tokens[0],
            cached_audio=resp.cached_tokens[1],
            output_text=sum(shapes.text_tokens(out.text) for out in resp.outputs),
            output_audio=shapes.audio_tokens_out(resp.audio_ms),
        )
        await self._send(
            "response.done", response=self._body(resp, status, details, usage)
        )

    # -- frame echo (ECHO_FRAMES) ------------------------------------------------

    async def echo_frame(
        self,
        encoded: str,
        raw: bytes,
        in_format: str,
        open_response: Callable[[], Awaitable[Response]],
    ) -> None:
        """Send one appended chunk back as an output_audio.delta of the echo."""
        resp = self.active
        if resp is None:
            if not self._sc.open_on_append:
                return
            resp = await open_response()
        out = resp.open
        if out is None:
            return
        out_format = resp.format["type"]
        if out_format != in_format:
            raw = audio.from_ulaw(audio.to_ulaw(raw, in_format), out_format)
            encoded = base64.b64encode(raw).decode()
        self._count_audio(resp, out, len(raw) / audio.BYTES_PER_MS[out_format])
        await self._send(
            "response.output_audio.delta",
            response_id=resp.id,
            item_id=out.item.id,
            output_index=out.index,
            content_index=0,
            delta=encoded,
        )
