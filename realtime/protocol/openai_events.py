"""OpenAI Realtime (GA) events: build what the bridge sends, parse what it reads.

Client events are built as JSON strings by small functions, one per event the
bridge sends (PROTOCOL A2, A3); the session shape is the GA one, with the caller
transport's format in both directions: ``audio/pcmu`` so Twilio's μ-law passes
through untouched, ``audio/pcm`` at 24 kHz for the browser.

Server events the bridge acts on are parsed into frozen dataclasses
(PROTOCOL A4); any other event becomes ``OtherServerEvent``. The audio delta is
the hot path: one ``orjson.loads``, and its base64 is left for the caller to decode.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import orjson

from realtime.protocol.caller_audio import MULAW_8K, CallerAudioFormat
from realtime.protocol.errors import RealtimeProtocolError

__all__ = [
    "PCMU",
    "ConversationItemAdded",
    "ConversationItemDone",
    "FunctionCallArgumentsDone",
    "FunctionTool",
    "InputAudioCommitted",
    "InputAudioTimeoutTriggered",
    "InputTranscriptionCompleted",
    "InputTranscriptionDelta",
    "InputTranscriptionFailed",
    "Item",
    "ItemTruncated",
    "OtherServerEvent",
    "OutputAudioDelta",
    "OutputAudioDone",
    "OutputAudioTranscriptDelta",
    "OutputAudioTranscriptDone",
    "OutputItemAdded",
    "OutputItemDone",
    "ResponseCreated",
    "ResponseDone",
    "SemanticVad",
    "ServerError",
    "ServerEvent",
    "ServerVad",
    "SessionConfig",
    "SessionCreated",
    "SessionUpdated",
    "SpeechStarted",
    "SpeechStopped",
    "Transcription",
    "TurnFlags",
    "Usage",
    "conversation_item_delete",
    "conversation_item_function_output",
    "conversation_item_message",
    "conversation_item_truncate",
    "input_audio_buffer_append",
    "input_audio_buffer_clear",
    "input_audio_buffer_commit",
    "parse_server_event",
    "response_cancel",
    "response_create",
    "session_format_ok",
    "session_payload",
    "session_turn_flags",
    "session_update",
]

PCMU: Final = "audio/pcmu"  # G.711 μ-law, 8 kHz: what Twilio speaks

Role = Literal["system", "user", "assistant"]
Eagerness = Literal["low", "medium", "high", "auto"]
NoiseReduction = Literal["near_field", "far_field"]
Conversation = Literal["auto", "none"]


# ---------------------------------------------------------------- session config


@dataclass(frozen=True, slots=True)
class ServerVad:
    """Voice activity detection by silence length (``server_vad``)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None  # None: no idle timeout

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold {self.threshold} is outside 0.0–1.0")


@dataclass(frozen=True, slots=True)
class SemanticVad:
    """Voice activity detection by a turn-end model (``semantic_vad``)."""

    eagerness: Eagerness = "auto"
    create_response: bool = True
    interrupt_response: bool = True


@dataclass(frozen=True, slots=True)
class Transcription:
    """Transcription of the caller's audio (billed separately)."""

    model: str = "gpt-4o-transcribe"
    language: str | None = None  # ISO-639-1, e.g. "ja"
    prompt: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str
    parameters: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything the bridge sets in ``session.update``.

    ``tool_choice`` is ``"auto"``, ``"none"``, ``"required"``, or the name of a
    function to force. ``audio`` is the caller transport's format, used both
    ways: ``audio/pcmu`` for the phone, ``audio/pcm`` (24 kHz) for the browser.
    """

    model: str = "gpt-realtime"
    instructions: str = ""
    voice: str = "marin"
    speed: float = 1.0
    turn_detection: ServerVad | SemanticVad | None = ServerVad()
    transcription: Transcription | None = None
    noise_reduction: NoiseReduction | None = None
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: str = "auto"
    max_output_tokens: int | None = None  # None: the server default ("inf")
    audio: CallerAudioFormat = MULAW_8K

    def __post_init__(self) -> None:
        if not 0.25 <= self.speed <= 1.5:
            raise ValueError(f"speed {self.speed} is outside 0.25–1.5")
        if self.max_output_tokens is not None and not (
            1 <= self.max_output_tokens <= 4096
        ):
            raise ValueError(f"max_output_tokens {self.max_output_tokens} not 1–4096")

    @property
    def interrupt_response(self) -> bool:
        """Whether the server cancels a response itself when the caller speaks."""
        td = self.turn_detection
        return td is not None and td.interrupt_response

    @property
    def create_response(self) -> bool:
        """Whether the server answers each caller turn by itself."""
        td = self.turn_detection
        return td is not None and td.create_response


def _tool_choice(choice: str) -> object:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "name": choice}


def _turn_detection(td: ServerVad | SemanticVad | None) -> object:
    if td is None:
        return None
    if isinstance(td, SemanticVad):
        return {
            "type": "semantic_vad",
            "eagerness": td.eagerness,
            "create_response": td.create_response,
            "interrupt_response": td.interrupt_response,
        }
    return {
        "type": "server_vad",
        "threshold": td.threshold,
        "prefix_padding_ms": td.prefix_padding_ms,
        "silence_duration_ms": td.silence_duration_ms,
        "create_response": td.create_response,
        "interrupt_response": td.interrupt_response,
        "idle_timeout_ms": td.idle_timeout_ms,
    }


def _transcription(tr: Transcription | None) -> object:
    if tr is None:
        return None
    out: dict[str, object] = {"model": tr.model}
    if tr.language is not None:
        out["language"] = tr.language
    if tr.prompt is not None:
        out["prompt"] = tr.prompt
    return out


def session_payload(config: SessionConfig) -> dict[str, object]:
    """Return the GA ``session`` object for ``config``.

    Every field is sent, ``null`` included, so a session.update after a
    reconnect sets the whole configuration rather than merging into defaults.
    """
    session: dict[str, object] = {
        "type": "realtime",
        "model": config.model,
        "output_modalities": ["audio"],
        "instructions": config.instructions,
        "audio": {
            "input": {
                "format": config.audio.session_format(),
                "turn_detection": _turn_detection(config.turn_detection),
                "transcription": _transcription(config.transcription),
                "noise_reduction": (
                    None
                    if config.noise_reduction is None
                    else {"type": config.noise_reduction}
                ),
            },
            "output": {
                "format": config.audio.session_format(),
                "voice": config.voice,
                "speed": config.speed,
            },
        },
        "tools": [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
            }
            for tool in config.tools
        ],
        "tool_choice": _tool_choice(config.tool_choice),
    }
    if config.max_output_tokens is not None:
        session["max_output_tokens"] = config.max_output_tokens
    return session


# ---------------------------------------------------------------- client events


def _event(type_: str, event_id: str | None, **fields: object) -> str:
    body: dict[str, object] = {"type": type_, **fields}
    if event_id is not None:
        body["event_id"] = event_id
    return json.dumps(body, ensure_ascii=False)


def session_update(config: SessionConfig, *, event_id: str | None = None) -> str:
    """Return ``session.update`` setting the whole session from ``config``."""
    return _event("session.update", event_id, session=session_payload(config))


def input_audio_buffer_append(audio_b64: str) -> str:
    """Return ``input_audio_buffer.append`` carrying base64 μ-law as received."""
    # A serialiser, not an f-string: the payload came from the network unchecked.
    return orjson.dumps(
        {"type": "input_audio_buffer.append", "audio": audio_b64}
    ).decode()


def input_audio_buffer_commit(*, event_id: str | None = None) -> str:
    """Return ``input_audio_buffer.commit`` (only needed without server VAD)."""
    return _event("input_audio_buffer.commit", event_id)


def input_audio_buffer_clear(*, event_id: str | None = None) -> str:
    """Return ``input_audio_buffer.clear``."""
    return _event("input_audio_buffer.clear", event_id)


def conversation_item_message(
    role: Role,
    text: str,
    *,
    previous_item_id: str | None = None,
    event_id: str | None = None,
    item_id: str | None = None,
) -> str:
    """Return ``conversation.item.create`` adding a text message.

    System and user text is ``input_text``; assistant text is ``output_text``.
    ``item_id`` names the item (the client may choose it), so that it can be
    deleted or referred to later.
    """
    part = "output_text" if role == "assistant" else "input_text"
    item: dict[str, object] = {
        "type": "message",
        "role": role,
        "content": [{"type": part, "text": text}],
    }
    if item_id is not None:
        item = {"id": item_id, **item}
    if previous_item_id is None:
        return _event("conversation.item.create", event_id, item=item)
    return _event(
        "conversation.item.create",
        event_id,
        item=item,
        previous_item_id=previous_item_id,
    )


def conversation_item_function_output(
    call_id: str, output: str, *, event_id: str | None = None
) -> str:
    """Return ``conversation.item.create`` adding a tool's output (usually JSON)."""
    item = {"type": "function_call_output", "call_id": call_id, "output": output}
    return _event("conversation.item.create", event_id, item=item)


def conversation_item_delete(item_id: str, *, event_id: str | None = None) -> str:
    """Return ``conversation.item.delete`` removing an item from the conversation."""
    return _event("conversation.item.delete", event_id, item_id=item_id)


def conversation_item_truncate(
    item_id: str,
    audio_end_ms: int,
    *,
    content_index: int = 0,
    event_id: str | None = None,
) -> str:
    """Return ``conversation.item.truncate`` cutting an assistant item's audio."""
    return _event(
        "conversation.item.truncate",
        event_id,
        item_id=item_id,
        content_index=content_index,
        audio_end_ms=audio_end_ms,
    )


def response_create(
    *,
    instructions: str | None = None,
    conversation: Conversation | None = None,
    tool_choice: str | None = None,
    output_modalities: Sequence[Literal["audio", "text"]] | None = None,
    max_output_tokens: int | None = None,
    metadata: Mapping[str, str] | None = None,
    event_id: str | None = None,
) -> str:
    """Return ``response.create``; unset parameters keep the session's values.

    ``instructions`` replace the session instructions for this one response.
    ``conversation="none"`` makes an out-of-band response kept out of context.
    """
    response: dict[str, object] = {}
    if instructions is not None:
        response["instructions"] = instructions
    if conversation is not None:
        response["conversation"] = conversation
    if tool_choice is not None:
        response["tool_choice"] = _tool_choice(tool_choice)
    if output_modalities is not None:
        response["output_modalities"] = list(output_modalities)
    if max_output_tokens is not None:
        response["max_output_tokens"] = max_output_tokens
    if metadata is not None:
        response["metadata"] = dict(metadata)
    if not response:
        return _event("response.create", event_id)
    return _event("response.create", event_id, response=response)


def response_cancel(
    response_id: str | None = None, *, event_id: str | None = None
) -> str:
    """Return ``response.cancel`` (of ``response_id``, or of the active one)."""
    if response_id is None:
        return _event("response.cancel", event_id)
    return _event("response.cancel", event_id, response_id=response_id)


# ---------------------------------------------------------------- server events


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response, or a sum of several."""

    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_cached_tokens: int = 0  # a subset of input_tokens
    input_cached_text_tokens: int = 0
    input_cached_audio_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            *(
                getattr(self, name) + getattr(other, name)
                for name in self.__dataclass_fields__
            )
        )


@dataclass(frozen=True, slots=True)
class Item:
    """A conversation item as the server describes it (audio bytes omitted)."""

    type: str  # "message", "function_call", "function_call_output", …
    id: str | None
    role: str | None = None
    status: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


@dataclass(frozen=True, slots=True)
class SessionCreated:
    """The first server event; ``session`` is the server's default session."""

    session: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """The effective session after a ``session.update``."""

    session: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class ServerError:
    """An ``error`` event; ``event_id`` is the client event that failed, if any."""

    type: str  # e.g. "invalid_request_error", "server_error"
    code: str | None
    message: str
    param: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Server VAD heard the caller start speaking."""

    item_id: str
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """Server VAD heard the caller stop speaking."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class InputAudioCommitted:
    """The caller's audio became a user item."""

    item_id: str
    previous_item_id: str | None = None


@dataclass(frozen=True, slots=True)
class InputAudioTimeoutTriggered:
    """The idle timeout fired; the server will answer the silence."""

    item_id: str
    audio_start_ms: int
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class InputTranscriptionDelta:
    """Part of the caller's transcript."""

    item_id: str
    delta: str
    content_index: int = 0


@dataclass(frozen=True, slots=True)
class InputTranscriptionCompleted:
    """The caller's whole utterance, transcribed."""

    item_id: str
    transcript: str
    content_index: int = 0


@dataclass(frozen=True, slots=True)
class InputTranscriptionFailed:
    """Transcription of a caller item failed (the conversation goes on)."""

    item_id: str
    code: str | None
    message: str
    content_index: int = 0


@dataclass(frozen=True, slots=True)
class ConversationItemAdded:
    """An item entered the conversation (``.added``, or beta-era ``.created``)."""

    item: Item
    previous_item_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationItemDone:
    """An item of the conversation is final."""

    item: Item
    previous_item_id: str | None = None


@dataclass(frozen=True, slots=True)
class ItemTruncated:
    """The server cut an assistant item's audio at ``audio_end_ms``."""

    item_id: str
    content_index: int
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    """A response started; ``metadata`` is what response.create attached."""

    response_id: str
    status: str = "in_progress"
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class OutputItemAdded:
    """A response began an output item (assistant message or function call)."""

    response_id: str
    output_index: int
    item: Item


@dataclass(frozen=True, slots=True)
class OutputItemDone:
    """A response finished an output item (``incomplete`` when interrupted)."""

    response_id: str
    output_index: int
    item: Item


@dataclass(frozen=True, slots=True)
class OutputAudioDelta:
    """A piece of the answer's audio: base64 μ-law of arbitrary length."""

    response_id: str
    item_id: str
    delta_b64: str
    output_index: int = 0
    content_index: int = 0


@dataclass(frozen=True, slots=True)
class OutputAudioDone:
    """An item's audio is complete (also sent on interruption or cancel)."""

    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class OutputAudioTranscriptDelta:
    """Part of the transcript of the answer's audio."""

    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class OutputAudioTranscriptDone:
    """The whole transcript of an item's audio."""

    response_id: str
    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class FunctionCallArgumentsDone:
    """A function call's arguments are complete.

    ``name`` is only sent by newer servers; take it from the item otherwise.
    """

    response_id: str
    item_id: str
    call_id: str
    arguments: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """A response ended, whatever its status; carries usage when known."""

    response_id: str
    status: str  # completed | cancelled | failed | incomplete | in_progress
    status_reason: str | None = None  # turn_detected, client_cancelled, …
    error_code: str | None = None
    error_message: str | None = None
    usage: Usage | None = None
    output: tuple[Item, ...] = ()
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class OtherServerEvent:
    """A well-formed event the bridge does not act on."""

    type: str
    raw: Mapping[str, object]


ServerEvent = (
    SessionCreated
    | SessionUpdated
    | ServerError
    | SpeechStarted
    | SpeechStopped
    | InputAudioCommitted
    | InputAudioTimeoutTriggered
    | InputTranscriptionDelta
    | InputTranscriptionCompleted
    | InputTranscriptionFailed
    | ConversationItemAdded
    | ConversationItemDone
    | ItemTruncated
    | ResponseCreated
    | OutputItemAdded
    | OutputItemDone
    | OutputAudioDelta
    | OutputAudioDone
    | OutputAudioTranscriptDelta
    | OutputAudioTranscriptDone
    | FunctionCallArgumentsDone
    | ResponseDone
    | OtherServerEvent
)

_Obj = Mapping[str, object]


def _bad(type_: str, message: str) -> RealtimeProtocolError:
    return RealtimeProtocolError(f"{type_}: {message}")


def _s(obj: _Obj, key: str, type_: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _bad(type_, f"{key} must be a string, got {value!r:.40}")
    return value


def _os(obj: _Obj, key: str, type_: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(type_, f"{key} must be a string or null, got {value!r:.40}")
    return value


def _i(obj: _Obj, key: str, type_: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(type_, f"{key} must be an integer, got {value!r:.40}")
    return value


def _o(obj: _Obj, key: str, type_: str) -> _Obj:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise _bad(type_, f"{key} must be an object, got {value!r:.40}")
    return value


def _count(obj: object, key: str) -> int:
    """Read an optional token count; anything but an integer counts as 0."""
    if not isinstance(obj, dict):
        return 0
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _metadata(obj: _Obj) -> Mapping[str, str] | None:
    value = obj.get("metadata")
    if not isinstance(value, dict):
        return None
    return {k: v for k, v in value.items() if isinstance(v, str)}


def _item(obj: _Obj, key: str, type_: str) -> Item:
    raw = _o(obj, key, type_)
    where = f"{type_} {key}"
    return Item(
        type=_s(raw, "type", where),
        id=_os(raw, "id", where),
        role=_os(raw, "role", where),
        status=_os(raw, "status", where),
        call_id=_os(raw, "call_id", where),
        name=_os(raw, "name", where),
        arguments=_os(raw, "arguments", where),
    )


def _usage(raw: object) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    inp = raw.get("input_token_details")
    cached = inp.get("cached_tokens_details") if isinstance(inp, dict) else None
    out = raw.get("output_token_details")
    return Usage(
        total_tokens=_count(raw, "total_tokens"),
        input_tokens=_count(raw, "input_tokens"),
        output_tokens=_count(raw, "output_tokens"),
        input_text_tokens=_count(inp, "text_tokens"),
        input_audio_tokens=_count(inp, "audio_tokens"),
        input_cached_tokens=_count(inp, "cached_tokens"),
        input_cached_text_tokens=_count(cached, "text_tokens"),
        input_cached_audio_tokens=_count(cached, "audio_tokens"),
        output_text_tokens=_count(out, "text_tokens"),
        output_audio_tokens=_count(out, "audio_tokens"),
    )


def _response_done(o: _Obj, t: str) -> ResponseDone:
    response = _o(o, "response", t)
    details = response.get("status_details")
    reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    if isinstance(details, dict):
        reason = _os(details, "reason", t)
        error = details.get("error")
        if isinstance(error, dict):
            error_code = _os(error, "code", t)
            error_message = _os(error, "message", t)
    output = response.get("output")
    items = tuple(
        _item({"item": entry}, "item", t)
        for entry in (output if isinstance(output, list) else ())
    )
    return ResponseDone(
        response_id=_s(response, "id", t),
        status=_s(response, "status", t),
        status_reason=reason,
        error_code=error_code,
        error_message=error_message,
        usage=_usage(response.get("usage")),
        output=items,
        metadata=_metadata(response),
    )


def _error(o: _Obj, t: str) -> ServerError:
    error = _o(o, "error", t)
    return ServerError(
        type=_s(error, "type", t),
        code=_os(error, "code", t),
        message=_s(error, "message", t),
        param=_os(error, "param", t),
        event_id=_os(error, "event_id", t),
    )


def _transcription_failed(o: _Obj, t: str) -> InputTranscriptionFailed:
    error = o.get("error")
    error = error if isinstance(error, dict) else {}
    return InputTranscriptionFailed(
        item_id=_s(o, "item_id", t),
        code=_os(error, "code", t),
        message=_os(error, "message", t) or "",
        content_index=_i(o, "content_index", t, 0),
    )


_PARSERS: Final[dict[str, Callable[[_Obj, str], ServerEvent]]] = {
    "session.created": lambda o, t: SessionCreated(_o(o, "session", t)),
    "session.updated": lambda o, t: SessionUpdated(_o(o, "session", t)),
    "error": _error,
    "input_audio_buffer.speech_started": lambda o, t: SpeechStarted(
        _s(o, "item_id", t), _i(o, "audio_start_ms", t)
    ),
    "input_audio_buffer.speech_stopped": lambda o, t: SpeechStopped(
        _s(o, "item_id", t), _i(o, "audio_end_ms", t)
    ),
    "input_audio_buffer.committed": lambda o, t: InputAudioCommitted(
        _s(o, "item_id", t), _os(o, "previous_item_id", t)
    ),
    "input_audio_buffer.timeout_triggered": lambda o, t: InputAudioTimeoutTriggered(
        _s(o, "item_id", t), _i(o, "audio_start_ms", t), _i(o, "audio_end_ms", t)
    ),
    "conversation.item.input_audio_transcription.delta": lambda o, t: (
        InputTranscriptionDelta(
            _s(o, "item_id", t), _os(o, "delta", t) or "", _i(o, "content_index", t, 0)
        )
    ),
    "conversation.item.input_audio_transcription.completed": lambda o, t: (
        InputTranscriptionCompleted(
            _s(o, "item_id", t), _s(o, "transcript", t), _i(o, "content_index", t, 0)
        )
    ),
    "conversation.item.input_audio_transcription.failed": _transcription_failed,
    "conversation.item.added": lambda o, t: ConversationItemAdded(
        _item(o, "item", t), _os(o, "previous_item_id", t)
    ),
    "conversation.item.created": lambda o, t: ConversationItemAdded(
        _item(o, "item", t), _os(o, "previous_item_id", t)
    ),
    "conversation.item.done": lambda o, t: ConversationItemDone(
        _item(o, "item", t), _os(o, "previous_item_id", t)
    ),
    "conversation.item.truncated": lambda o, t: ItemTruncated(
        _s(o, "item_id", t), _i(o, "content_index", t, 0), _i(o, "audio_end_ms", t)
    ),
    "response.created": lambda o, t: ResponseCreated(
        _s(_o(o, "response", t), "id", t),
        _os(_o(o, "response", t), "status", t) or "in_progress",
        _metadata(_o(o, "response", t)),
    ),
    "response.output_item.added": lambda o, t: OutputItemAdded(
        _s(o, "response_id", t), _i(o, "output_index", t, 0), _item(o, "item", t)
    ),
    "response.output_item.done": lambda o, t: OutputItemDone(
        _s(o, "response_id", t), _i(o, "output_index", t, 0), _item(o, "item", t)
    ),
    "response.output_audio.done": lambda o, t: OutputAudioDone(
        _s(o, "response_id", t), _s(o, "item_id", t)
    ),
    "response.output_audio_transcript.delta": lambda o, t: OutputAudioTranscriptDelta(
        _s(o, "response_id", t), _s(o, "item_id", t), _s(o, "delta", t)
    ),
    "response.output_audio_transcript.done": lambda o, t: OutputAudioTranscriptDone(
        _s(o, "response_id", t), _s(o, "item_id", t), _s(o, "transcript", t)
    ),
    "response.function_call_arguments.done": lambda o, t: FunctionCallArgumentsDone(
        _s(o, "response_id", t),
        _s(o, "item_id", t),
        _s(o, "call_id", t),
        _s(o, "arguments", t),
        _os(o, "name", t),
    ),
    "response.done": _response_done,
}

_AUDIO_DELTA: Final = "response.output_audio.delta"


def parse_server_event(text: str | bytes) -> ServerEvent:
    """Parse one frame from the Realtime server.

    Raises ``RealtimeProtocolError`` for anything but a JSON object with a
    string ``type``, or for a known event whose fields are missing or mistyped.
    """
    try:
        obj: object = orjson.loads(text)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise RealtimeProtocolError(f"server frame is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RealtimeProtocolError("server frame must be a JSON object")
    type_ = obj.get("type")
    if not isinstance(type_, str):
        raise RealtimeProtocolError(f"server event without a type: {type_!r:.40}")
    if type_ == _AUDIO_DELTA:  # first: the hot path
        return OutputAudioDelta(
            response_id=_s(obj, "response_id", type_),
            item_id=_s(obj, "item_id", type_),
            delta_b64=_s(obj, "delta", type_),
            output_index=_i(obj, "output_index", type_, 0),
            content_index=_i(obj, "content_index", type_, 0),
        )
    parser = _PARSERS.get(type_)
    if parser is None:
        return OtherServerEvent(type=type_, raw=obj)
    return parser(obj, type_)


@dataclass(frozen=True, slots=True)
class TurnFlags:
    """How the effective session answers and interrupts turns."""

    create_response: bool
    interrupt_response: bool


def _format_type(session: Mapping[str, object], direction: str) -> object:
    audio = session.get("audio")
    side = audio.get(direction) if isinstance(audio, dict) else None
    fmt = side.get("format") if isinstance(side, dict) else None
    return fmt.get("type") if isinstance(fmt, dict) else None


def _format_rate(session: Mapping[str, object], direction: str) -> object:
    audio = session.get("audio")
    side = audio.get(direction) if isinstance(audio, dict) else None
    fmt = side.get("format") if isinstance(side, dict) else None
    return fmt.get("rate") if isinstance(fmt, dict) else None


def session_format_ok(
    session: Mapping[str, object], expected: CallerAudioFormat = MULAW_8K
) -> bool:
    """Whether the session uses ``expected`` (by default ``audio/pcmu``) both ways.

    For ``audio/pcm`` the rate must be ``expected``'s too (a server that leaves
    it out means its default, 24 kHz).
    """
    for direction in ("input", "output"):
        if _format_type(session, direction) != expected.realtime_type:
            return False
        if expected.realtime_type == "audio/pcm":
            rate = _format_rate(session, direction)
            if (rate if rate is not None else 24000) != expected.sample_rate:
                return False
    return True


def session_turn_flags(session: Mapping[str, object]) -> TurnFlags | None:
    """Return the turn-detection flags of a server session, None when VAD is off.

    A flag the server leaves out takes its documented default (true).
    """
    audio = session.get("audio")
    side = audio.get("input") if isinstance(audio, dict) else None
    td = side.get("turn_detection") if isinstance(side, dict) else None
    if not isinstance(td, dict):
        return None
    create = td.get("create_response", True)
    interrupt = td.get("interrupt_response", True)
    return TurnFlags(
        create_response=create if isinstance(create, bool) else True,
        interrupt_response=interrupt if isinstance(interrupt, bool) else True,
    )
