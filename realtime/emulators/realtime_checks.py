"""Strict checks of the 11 OpenAI Realtime (GA) client events.

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

from typing import Any

from realtime.emulators.strict_json import (
    Check,
    ClientEventError,
    anything,
    array,
    boolean,
    either,
    integer,
    invalid_type,
    literal,
    nullable,
    number,
    obj,
    string,
    tagged,
)

__all__ = [
    "CLIENT_EVENT_TYPES",
    "TRANSCRIPTION_EVENT_TYPES",
    "VOICES",
    "ClientEventError",
    "check_client_event",
    "check_transcription_session",
]


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


# A transcription session (``?intent=transcription``) has only these fields
# (``RealtimeTranscriptionSessionCreateRequest`` in the SDK); a realtime-only
# field (voice, instructions, tools, output_modalities, …) is an unknown
# parameter, as the API's strict parsing makes it.
_TRANSCRIPTION_SESSION = obj(
    {"type": literal("transcription")},
    {
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
            }
        ),
        "include": nullable(array(literal("item.input_audio_transcription.logprobs"))),
    },
)

TRANSCRIPTION_EVENT_TYPES = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)
"""The client events a transcription session takes; the others are refused."""


def check_transcription_session(value: Any, param: str = "session") -> None:
    """Raise ClientEventError unless ``value`` is a transcription session."""
    _TRANSCRIPTION_SESSION(value, param)


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
        raise invalid_type("", "an object", event)
    if "type" not in event:
        raise ClientEventError(
            "missing_required_parameter", "Missing required parameter: 'type'.", "type"
        )
    _TYPE(event["type"], "type")
    _EVENTS[event["type"]](event, "")
