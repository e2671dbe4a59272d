"""The OpenAI Responses API's request checks and response shapes (no Django, no I/O).

``check_request(body)`` refuses what ``POST /v1/responses`` refuses, with the
API's error body (``{"error": {"message", "type", "param", "code"}}``, HTTP 400):
unknown parameters, a missing or unknown model, malformed input items or tools, a
``function_call_output`` with no ``function_call`` of its ``call_id`` before it,
a ``function_call`` left without its output. ``response_object`` and
``stream_events`` build what the API sends back: one ``response`` object, or the
server-sent events of a streamed one (``response.created`` … ``response.completed``,
each with its ``sequence_number``).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ApiError",
    "OutputItem",
    "check_request",
    "new_id",
    "response_object",
    "stream_events",
    "usage_for",
]

TEXT_MODELS: Final = frozenset(
    {"gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini"}
    | {"gpt-5", "gpt-5-mini", "gpt-5-nano"}
)
PARAMETERS: Final = frozenset(
    {"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls"}
    | {"stream", "store", "temperature", "top_p", "max_output_tokens", "metadata"}
    | {"previous_response_id", "user", "text", "reasoning", "truncation", "include"}
    | {"service_tier", "background", "max_tool_calls", "prompt_cache_key"}
)
ROLES: Final = ("assistant", "system", "developer", "user")
_TOOL_NAME: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TOOL_KEYS: Final = frozenset({"type", "name", "description", "parameters", "strict"})


class ApiError(Exception):
    """An error reply of the API: status and body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {"message": message, "type": type, "param": param, "code": code}
        }


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def _invalid(message: str, param: str, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _check_type(value: Any, kind: type | tuple[type, ...], param: str) -> None:
    if isinstance(value, bool) and kind is not bool:
        ok = False
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise _invalid(
            f"Invalid type for '{param}': expected {getattr(kind, '__name__', kind)}, "
            f"but got {type(value).__name__} instead.",
            param,
            "invalid_type",
        )


def _check_message(item: dict[str, Any], param: str) -> None:
    role = item.get("role")
    if role not in ROLES:
        raise _invalid(
            f"Invalid value: {role!r}. Supported values are: 'assistant', 'system', "
            "'developer', and 'user'.",
            f"{param}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid(
            f"Invalid type for '{param}.content': expected a string or an array.",
            f"{param}.content",
            "invalid_type",
        )
    allowed = {"output_text", "refusal"} if role == "assistant" else {"input_text"}
    for j, part in enumerate(content):
        where = f"{param}.content[{j}]"
        _check_type(part, dict, where)
        if part.get("type") not in allowed:
            raise _invalid(
                f"Invalid value: {part.get('type')!r}. Supported values are: "
                + ", ".join(repr(a) for a in sorted(allowed))
                + ".",
                f"{where}.type",
            )
        _check_type(part.get("text"), str, f"{where}.text")


def _check_input(items: Any, previous: str | None) -> list[dict[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    _check_type(items, list, "input")
    calls: set[str] = set()
    answered: set[str] = set()
    for i, item in enumerate(items):
        param = f"input[{i}]"
        _check_type(item, dict, param)
        kind = item.get("type", "message")
        if kind == "message":
            _check_message(item, param)
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                _check_type(item.get(key), str, f"{param}.{key}")
            calls.add(item["call_id"])
        elif kind == "function_call_output":
            _check_type(item.get("call_id"), str, f"{param}.call_id")
            _check_type(item.get("output"), str, f"{param}.output")
            if item["call_id"] not in calls and previous is None:
                raise ApiError(
                    400,
                    "No tool call found for function call output with call_id "
                    f"{item['call_id']}.",
                    param="input",
                )
            answered.add(item["call_id"])
        else:
            raise _invalid(
                f"Invalid value: {kind!r}. Supported values are: 'message', "
                "'function_call', and 'function_call_output' (among others).",
                f"{param}.type",
            )
    for call_id in sorted(calls - answered):
        raise ApiError(
            400, f"No tool output found for function call {call_id}.", param="input"
        )
    return list(items)


def _check_tools(tools: Any) -> list[dict[str, Any]]:
    _check_type(tools, list, "tools")
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        _check_type(tool, dict, param)
        for key in tool:
            if key not in _TOOL_KEYS:
                raise _invalid(
                    f"Unknown parameter: '{param}.{key}'.",
                    f"{param}.{key}",
                    "unknown_parameter",
                )
        if tool.get("type") != "function":
            raise _invalid(
                f"Invalid value: {tool.get('type')!r}. The fake serves function "
                "tools only.",
                f"{param}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise _invalid(
                f"Invalid '{param}.name': string does not match pattern. Expected a "
                "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                f"{param}.name",
                "invalid_value",
            )
        schema = tool.get("parameters")
        _check_type(schema, dict, f"{param}.parameters")
        if schema.get("type") != "object":
            raise _invalid(
                f"Invalid schema for function '{name}': schema must be a JSON Schema "
                "of 'type: \"object\"'.",
                f"{param}.parameters",
                "invalid_function_parameters",
            )
    return list(tools)


@dataclass(frozen=True, slots=True)
class Request:
    model: str
    instructions: str
    items: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    stream: bool
    store: bool


def check_request(body: Any) -> Request:
    """The request as the API reads it; ApiError for anything it refuses."""
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely "
            "means you aren't using your HTTP library correctly. The OpenAI API "
            "expects a JSON payload, but what was sent was not valid JSON.)",
        )
    for key in body:
        if key not in PARAMETERS:
            raise _invalid(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    model = body.get("model")
    if model is None:
        raise ApiError(
            400,
            "Missing required parameter: 'model'.",
            param="model",
            code="missing_required_parameter",
        )
    _check_type(model, str, "model")
    if model not in TEXT_MODELS:
        raise ApiError(
            400,
            f"The requested model '{model}' does not exist.",
            param="model",
            code="model_not_found",
        )
    instructions = body.get("instructions") or ""
    _check_type(instructions, str, "instructions")
    previous = body.get("previous_response_id")
    items = _check_input(body.get("input", []), previous)
    tools = _check_tools(body["tools"]) if "tools" in body else []
    stream, store = body.get("stream", False), body.get("store", True)
    _check_type(stream, bool, "stream")
    _check_type(store, bool, "store")
    return Request(model, instructions, items, tools, stream, store)


@dataclass(frozen=True, slots=True)
class OutputItem:
    """One output item: a message (``text``) or a function call."""

    text: str | None = None
    name: str | None = None
    arguments: str | None = None

    def shape(self, *, done: bool = True) -> dict[str, Any]:
        status = "completed" if done else "in_progress"
        if self.text is not None:
            return {
                "id": new_id("msg"),
                "type": "message",
                "role": "assistant",
                "status": status,
                "content": [
                    {
                        "type": "output_text",
                        "text": self.text if done else "",
                        "annotations": [],
                        "logprobs": [],
                    }
                ]
                if done
                else [],
            }
        return {
            "id": new_id("fc"),
            "type": "function_call",
            "status": status,
            "call_id": new_id("call")[:29],
            "name": self.name,
            "arguments": self.arguments if done else "",
        }


def usage_for(request: Request, output: list[OutputItem]) -> dict[str, Any]:
    """Token counts the way the fake estimates them (two characters a token)."""
    chars = len(request.instructions) + sum(len(str(i)) for i in request.items)
    chars += sum(len(str(t)) for t in request.tools)
    out = sum(len(o.text or "") + len(o.arguments or "") for o in output)
    input_tokens, output_tokens = chars // 2 + 1, out // 2 + 1
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def response_object(
    request: Request,
    output: list[dict[str, Any]],
    *,
    response_id: str,
    status: str = "completed",
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": request.instructions or None,
        "max_output_tokens": None,
        "model": request.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": request.store,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": request.tools,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def stream_events(
    request: Request, output: list[OutputItem], *, chunk: int = 8
) -> list[dict[str, Any]]:
    """The events of a streamed response, in order."""
    response_id = new_id("resp")
    events: list[dict[str, Any]] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    emit(
        "response.created",
        response=response_object(
            request, [], response_id=response_id, status="in_progress"
        ),
    )
    emit(
        "response.in_progress",
        response=response_object(
            request, [], response_id=response_id, status="in_progress"
        ),
    )
    done_items: list[dict[str, Any]] = []
    for index, out in enumerate(output):
        item = out.shape()
        pending = {**item, "status": "in_progress"}
        if out.text is not None:
            pending["content"] = []
        else:
            pending["arguments"] = ""
        emit("response.output_item.added", output_index=index, item=pending)
        if out.text is not None:
            part = {
                "type": "output_text",
                "text": "",
                "annotations": [],
                "logprobs": [],
            }
            emit(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
            for start in range(0, len(out.text), chunk):
                emit(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=out.text[start : start + chunk],
                    logprobs=[],
                )
            emit(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=out.text,
                logprobs=[],
            )
            emit(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part={**part, "text": out.text},
            )
        else:
            arguments = out.arguments or ""
            for start in range(0, len(arguments), chunk):
                emit(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=arguments[start : start + chunk],
                )
            emit(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=out.name,
                arguments=arguments,
            )
        emit("response.output_item.done", output_index=index, item=item)
        done_items.append(item)
    emit(
        "response.completed",
        response=response_object(
            request,
            done_items,
            response_id=response_id,
            usage=usage_for(request, output),
        ),
    )
    return events
