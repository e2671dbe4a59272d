"""Strict checks of the 11 OpenAI Realtime (GA) client events, and the session.

``check_client_event(event)`` raises ``ClientEventError`` carrying the
``error`` object the real server would send. Shapes follow PROTOCOL A2/A3 and
the SDK models (``openai.types.realtime``), with the server's strictness:
unknown fields are refused, as the GA server refuses beta-era fields.

Error codes used here, with their standing:

==============================  ============================================
``missing_required_parameter``  observed (``session.type``, PROTOCOL A7)
``unknown_parameter``           OpenAI API convention ("Unknown parameter")
``invalid_type``                OpenAI API convention
``invalid_value``               OpenAI API convention; also the fake's choice
                                for unknown item ids (real code unverified)
``invalid_json``                the fake's choice (real code unverified)
``integer_above_max_value``,    OpenAI API convention
``integer_below_min_value``,
``decimal_above_max_value``,
``decimal_below_min_value``
==============================  ============================================
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "CLIENT_EVENT_TYPES",
    "ClientEventError",
    "check_client_event",
    "default_session",
    "merge_session",
]


class ClientEventError(Exception):
    """A client event the server refuses, with the error fields to send back."""

    def __init__(self, code: str | None, message: str, param: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


Check = Callable[[Any, str], None]

_JSON_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    dict: "an object",
    list: "an array",
    type(None): "null",
}


def _got(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _invalid_type(param: str, expected: str, value: Any) -> ClientEventError:
    return ClientEventError(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {_got(value)} "
        "instead.",
        param,
    )


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def string(value: Any, param: str) -> None:
    """Check a JSON string."""
    if not isinstance(value, str):
        raise _invalid_type(param, "a string", value)


def boolean(value: Any, param: str) -> None:
    """Check a JSON boolean."""
    if not isinstance(value, bool):
        raise _invalid_type(param, "a boolean", value)


def anything(value: Any, param: str) -> None:
    """Accept any JSON value."""


def integer(low: int | None = None, high: int | None = None) -> Check:
    """Check an integer (not a boolean, not a decimal) within bounds."""

    def check(value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid_type(param, "an integer", value)
        if low is not None and value < low:
            raise ClientEventError(
                "integer_below_min_value",
                f"Invalid '{param}': integer below minimum value. Expected a value "
                f">= {low}, but got {value} instead.",
                param,
            )
        if high is not None and value > high:
            raise ClientEventError(
                "integer_above_max_value",
                f"Invalid '{param}': integer above maximum value. Expected a value "
                f"<= {high}, but got {value} instead.",
                param,
            )

    return check


def number(low: float | None = None, high: float | None = None) -> Check:
    """Check a number within bounds."""

    def check(value: Any, param: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid_type(param, "a decimal", value)
        if low is not None and value < low:
            raise ClientEventError(
                "decimal_below_min_value",
                f"Invalid '{param}': decimal below minimum value. Expected a value "
                f">= {low}, but got {value} instead.",
                param,
            )
        if high is not None and value > high:
            raise ClientEventError(
                "decimal_above_max_value",
                f"Invalid '{param}': decimal above maximum value. Expected a value "
                f"<= {high}, but got {value} instead.",
                param,
            )

    return check


def literal(*values: Any) -> Check:
    """Check a value among ``values``."""

    def check(value: Any, param: str) -> None:
        if isinstance(value, dict | list) or value not in values:
            supported = ", ".join(f"'{v}'" for v in values)
            raise ClientEventError(
                "invalid_value",
                f"Invalid value: '{value}'. Supported values are: {supported}.",
                param,
            )

    return check


def nullable(inner: Check) -> Check:
    """Accept null or what ``inner`` accepts."""

    def check(value: Any, param: str) -> None:
        if value is not None:
            inner(value, param)

    return check


def either(*checks: Check) -> Check:
    """Accept what one of ``checks`` accepts; report the first one's error."""

    def check(value: Any, param: str) -> None:
        first: ClientEventError | None = None
        for inner in checks:
            try:
                inner(value, param)
            except ClientEventError as error:
                first = first or error
            else:
                return
        assert first is not None
        raise first

    return check


def array(item: Check, *, min_items: int = 0) -> Check:
    """Check a JSON array whose items pass ``item``."""

    def check(value: Any, param: str) -> None:
        if not isinstance(value, list):
            raise _invalid_type(param, "an array", value)
        if len(value) < min_items:
            raise ClientEventError(
                "array_below_min_length",
                f"Invalid '{param}': empty array. Expected an array with minimum "
                f"length {min_items}, but got an empty array instead.",
                param,
            )
        for index, element in enumerate(value):
            item(element, f"{param}[{index}]")

    return check


def obj(
    required: Mapping[str, Check] | None = None,
    optional: Mapping[str, Check] | None = None,
    *,
    open_ended: bool = False,
) -> Check:
    """Check an object: required fields, optional fields, nothing else."""
    required = dict(required or {})
    optional = dict(optional or {})

    def check(value: Any, param: str) -> None:
        if not isinstance(value, dict):
            raise _invalid_type(param, "an object", value)
        for name in required:
            if name not in value:
                full = _join(param, name)
                raise ClientEventError(
                    "missing_required_parameter",
                    f"Missing required parameter: '{full}'.",
                    full,
                )
        for name, field_value in value.items():
            inner = required.get(name) or optional.get(name)
            if inner is None:
                if open_ended:
                    continue
                full = _join(param, name)
                raise ClientEventError(
                    "unknown_parameter", f"Unknown parameter: '{full}'.", full
                )
            inner(field_value, _join(param, name))

    return check


def tagged(variants: Mapping[str, Check], tag: str = "type") -> Check:
    """Check an object discriminated by ``tag`` (the variant checks the rest)."""
    tag_check = literal(*variants)

    def check(value: Any, param: str) -> None:
        if not isinstance(value, dict):
            raise _invalid_type(param, "an object", value)
        if tag not in value:
            full = _join(param, tag)
            raise ClientEventError(
                "missing_required_parameter",
                f"Missing required parameter: '{full}'.",
                full,
            )
        tag_check(value[tag], _join(param, tag))
        variants[value[tag]](value, param)

    return check


def _typed(type_name: str, /, **fields: Check) -> Check:
    """An object variant whose ``type`` is ``type_name``, other fields optional."""
    return obj({"type": literal(type_name)}, fields)


# -- session -------------------------------------------------------------------

VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)


def _format(value: Any, param: str) -> None:
    if isinstance(value, str):
        # Beta strings such as "pcm16" or "g711_ulaw" (PROTOCOL A2).
        raise ClientEventError(
            "invalid_value",
            f"Invalid value: '{value}'. Supported values are: 'audio/pcm', "
            "'audio/pcmu', and 'audio/pcma'.",
            param,
        )
    _FORMAT_OBJECT(value, param)


_FORMAT_OBJECT = tagged(
    {
        "audio/pcm": _typed("audio/pcm", rate=literal(24000)),
        "audio/pcmu": _typed("audio/pcmu"),
        "audio/pcma": _typed("audio/pcma"),
    }
)

_TURN_DETECTION = nullable(
    tagged(
        {
            "server_vad": _typed(
                "server_vad",
                threshold=number(0.0, 1.0),
                prefix_padding_ms=integer(0),
                silence_duration_ms=integer(0),
                create_response=boolean,
                interrupt_response=boolean,
                idle_timeout_ms=nullable(integer(0)),
            ),
            "semantic_vad": _typed(
                "semantic_vad",
                eagerness=literal("low", "medium", "high", "auto"),
                create_response=boolean,
                interrupt_response=boolean,
            ),
        }
    )
)

_TRANSCRIPTION = nullable(
    obj(
        optional={
            "model": string,
            "language": string,
            "prompt": string,
            "delay": anything,
            "keywords": array(string),
            "languages": array(string),
        }
    )
)

_VOICE = either(literal(*VOICES), obj({"id": string}))

_FUNCTION_TOOL = obj(
    {"type": literal("function"), "name": string},
    {"description": string, "parameters": obj(open_ended=True)},
)
_TOOL = tagged(
    {
        "function": _FUNCTION_TOOL,
        "mcp": obj({"type": literal("mcp"), "server_label": string}, open_ended=True),
    }
)
_TOOL_CHOICE = either(
    literal("none", "auto", "required"),
    tagged(
        {
            "function": obj({"type": literal("function"), "name": string}),
            "mcp": obj(
                {"type": literal("mcp"), "server_label": string}, {"name": string}
            ),
        }
    ),
)
_MAX_OUTPUT_TOKENS = either(integer(1, 4096), literal("inf"))
_MODALITIES = array(literal("audio", "text"), min_items=1)
_PROMPT = nullable(
    obj({"id": string}, {"version": nullable(string), "variables": anything})
)
_METADATA = nullable(obj(open_ended=True))

_REALTIME_SESSION = obj(
    {"type": literal("realtime", "transcription")},
    {
        "model": string,
        "output_modalities": _MODALITIES,
        "instructions": string,
        "audio": obj(
            optional={
                "input": obj(
                    optional={
                        "format": _format,
                        "transcription": _TRANSCRIPTION,
                        "noise_reduction": nullable(
                            obj(
                                optional={
                                    "type": literal("near_field", "far_field"),
                                    "strength": number(0.0),
                                }
                            )
                        ),
                        "turn_detection": _TURN_DETECTION,
                    }
                ),
                "output": obj(
                    optional={
                        "format": _format,
                        "voice": _VOICE,
                        "speed": number(0.25, 1.5),
                    }
                ),
            }
        ),
        "tools": array(_TOOL),
        "tool_choice": _TOOL_CHOICE,
        "max_output_tokens": _MAX_OUTPUT_TOKENS,
        "tracing": nullable(
            either(
                literal("auto"),
                obj(
                    optional={
                        "workflow_name": string,
                        "group_id": string,
                        "metadata": anything,
                    }
                ),
            )
        ),
        "truncation": either(
            literal("auto", "disabled"),
            obj(
                {
                    "type": literal("retention_ratio"),
                    "retention_ratio": number(0.0, 1.0),
                },
                {"token_limits": obj(open_ended=True)},
            ),
        ),
        "prompt": _PROMPT,
        "include": nullable(array(literal("item.input_audio_transcription.logprobs"))),
        "parallel_tool_calls": boolean,
        "reasoning": obj(optional={"effort": nullable(string)}),
    },
)


def _session(value: Any, param: str) -> None:
    _REALTIME_SESSION(value, param)
    modalities = value.get("output_modalities")
    if isinstance(modalities, list) and len(set(modalities)) > 1:
        raise ClientEventError(
            "invalid_value",
            "Invalid value for 'session.output_modalities': 'audio' and 'text' "
            "cannot be requested together.",
            f"{param}.output_modalities",
        )


# -- conversation items ----------------------------------------------------------

_ITEM_COMMON: dict[str, Check] = {
    "id": string,
    "object": literal("realtime.item"),
    "status": literal("completed", "incomplete", "in_progress"),
}

_CONTENT_BY_ROLE: dict[str, Check] = {
    "system": array(_typed("input_text", text=string)),
    "user": array(
        tagged(
            {
                "input_text": _typed("input_text", text=string),
                "input_audio": _typed(
                    "input_audio", audio=string, transcript=nullable(string)
                ),
                "input_image": _typed(
                    "input_image",
                    image_url=string,
                    detail=literal("auto", "low", "high"),
                ),
            }
        )
    ),
    "assistant": array(
        tagged(
            {
                "output_text": _typed("output_text", text=string),
                "output_audio": _typed(
                    "output_audio", audio=string, transcript=nullable(string)
                ),
            }
        )
    ),
}


def _message(value: Any, param: str) -> None:
    role_check = literal("system", "user", "assistant")
    if "role" not in value:
        raise ClientEventError(
            "missing_required_parameter",
            f"Missing required parameter: '{param}.role'.",
            f"{param}.role",
        )
    role_check(value["role"], f"{param}.role")
    obj(
        {
            "type": literal("message"),
            "role": anything,
            "content": _CONTENT_BY_ROLE[value["role"]],
        },
        _ITEM_COMMON,
    )(value, param)


_MCP_ITEM = obj({"type": string}, open_ended=True)

ITEM = tagged(
    {
        "message": _message,
        "function_call": obj(
            {"type": literal("function_call"), "name": string, "arguments": string},
            {**_ITEM_COMMON, "call_id": string},
        ),
        "function_call_output": obj(
            {
                "type": literal("function_call_output"),
                "call_id": string,
                "output": string,
            },
            _ITEM_COMMON,
        ),
        "mcp_call": _MCP_ITEM,
        "mcp_list_tools": _MCP_ITEM,
        "mcp_approval_request": _MCP_ITEM,
        "mcp_approval_response": _MCP_ITEM,
    }
)

_RESPONSE_PARAMS = obj(
    optional={
        "audio": obj(
            optional={"output": obj(optional={"format": _format, "voice": _VOICE})}
        ),
        "conversation": string,
        "input": array(
            either(
                ITEM,
                obj({"type": literal("item_reference"), "id": string}),
            )
        ),
        "instructions": string,
        "max_output_tokens": _MAX_OUTPUT_TOKENS,
        "metadata": _METADATA,
        "output_modalities": _MODALITIES,
        "prompt": _PROMPT,
        "tool_choice": _TOOL_CHOICE,
        "tools": array(_TOOL),
        "parallel_tool_calls": boolean,
        "reasoning": obj(optional={"effort": nullable(string)}),
    }
)


def _event(type_name: str, **required: Check) -> Check:
    return obj({"type": literal(type_name), **required}, {"event_id": string})


_EVENTS: dict[str, Check] = {
    "session.update": _event("session.update", session=_session),
    "input_audio_buffer.append": _event("input_audio_buffer.append", audio=string),
    "input_audio_buffer.commit": _event("input_audio_buffer.commit"),
    "input_audio_buffer.clear": _event("input_audio_buffer.clear"),
    "output_audio_buffer.clear": _event("output_audio_buffer.clear"),
    "conversation.item.create": obj(
        {"type": literal("conversation.item.create"), "item": ITEM},
        {"event_id": string, "previous_item_id": nullable(string)},
    ),
    "conversation.item.retrieve": _event("conversation.item.retrieve", item_id=string),
    "conversation.item.delete": _event("conversation.item.delete", item_id=string),
    "conversation.item.truncate": _event(
        "conversation.item.truncate",
        item_id=string,
        content_index=integer(0),
        audio_end_ms=integer(0),
    ),
    "response.create": obj(
        {"type": literal("response.create")},
        {"event_id": string, "response": _RESPONSE_PARAMS},
    ),
    "response.cancel": obj(
        {"type": literal("response.cancel")},
        {"event_id": string, "response_id": string},
    ),
}

CLIENT_EVENT_TYPES = tuple(_EVENTS)
"""The 11 client event types of the GA API."""

_TYPE = literal(*CLIENT_EVENT_TYPES)


def check_client_event(event: Any) -> None:
    """Raise ClientEventError unless ``event`` is a well-formed client event."""
    if not isinstance(event, dict):
        raise _invalid_type("", "an object", event)
    if "type" not in event:
        raise ClientEventError(
            "missing_required_parameter", "Missing required parameter: 'type'.", "type"
        )
    _TYPE(event["type"], "type")
    _EVENTS[event["type"]](event, "")


# -- the session object ----------------------------------------------------------

DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. "
    "Act like a human, but remember that you aren't a human."
)

_VAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "server_vad": {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 200,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    },
    "semantic_vad": {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    },
}


def default_session(session_id: str, model: str) -> dict[str, Any]:
    """Return the full default session a new connection starts with (A2)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": copy.deepcopy(_VAD_DEFAULTS["server_vad"]),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1.0,
            },
        },
    }


def _complete(value: dict[str, Any]) -> dict[str, Any]:
    """Fill a newly chosen tagged object with its server defaults."""
    kind = value.get("type")
    if kind == "audio/pcm":
        return {"type": "audio/pcm", "rate": 24000, **value}
    if kind in _VAD_DEFAULTS:
        return {**copy.deepcopy(_VAD_DEFAULTS[kind]), **value}
    return copy.deepcopy(value)


def merge_session(
    current: dict[str, Any], update: Mapping[str, Any], *, top: bool = True
) -> dict[str, Any]:
    """Return ``current`` with ``update`` deep-merged into it.

    Objects merge field by field; other values (arrays, null, strings) replace.
    A tagged object (``type``) whose tag changes is replaced and completed with
    its defaults, so ``{"type":"audio/pcmu"}`` does not inherit a PCM ``rate``.
    The model is fixed for the session's life, so it is not changed.
    """
    merged = copy.deepcopy(current)
    for name, value in update.items():
        if top and name == "model" and "model" in merged:
            continue
        old = merged.get(name)
        if isinstance(value, dict) and isinstance(old, dict):
            if "type" in value and value.get("type") != old.get("type"):
                merged[name] = _complete(value)
            else:
                merged[name] = merge_session(old, value, top=False)
        elif isinstance(value, dict):
            merged[name] = _complete(value)
        else:
            merged[name] = copy.deepcopy(value)
    return merged
