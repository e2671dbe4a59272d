"""The legacy path's text model: one call of OpenAI's Responses API (F-72).

Through the `openai` package (`AsyncOpenAI`, base URL from `OPENAI_BASE_URL`, so
the fake in `realtime.emulators.fake_responses` can serve it), never retried and
bounded by the time the turn has left, so the whole webhook stays inside Twilio's
15 s. Failures come back as `TextModelError` with a kind the turn can act on:
`timeout`, `error` (the API refused or broke), `malformed` (an answer we cannot use:
a tool call whose arguments are not a JSON object, say).
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

import openai
from django.conf import settings
from openai import AsyncOpenAI

from realtime.call_setup import DEMO_API_KEY

ErrorKind = Literal["timeout", "error", "malformed"]


class TextModelError(Exception):
    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail[:500]


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class TextUsage:
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: TextUsage) -> TextUsage:
        return TextUsage(
            self.input_tokens + other.input_tokens,
            self.cached_tokens + other.cached_tokens,
            self.output_tokens + other.output_tokens,
        )


@dataclass(frozen=True, slots=True)
class ModelReply:
    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: TextUsage
    ms: int
    # The function_call items as input items, to send back with their outputs.
    call_items: tuple[dict[str, Any], ...] = field(default=())


# One client (one connection pool) per event loop, base URL and key: a client's
# connections belong to the loop that opened them.
_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], AsyncOpenAI]
] = weakref.WeakKeyDictionary()


def text_client() -> AsyncOpenAI:
    """The `AsyncOpenAI` client for the current loop and settings."""
    key = settings.OPENAI_API_KEY or DEMO_API_KEY
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    ident = (settings.OPENAI_BASE_URL, key)
    client = per_loop.get(ident)
    if client is None:
        client = per_loop[ident] = AsyncOpenAI(
            api_key=key, base_url=settings.OPENAI_BASE_URL, max_retries=0
        )
    return client


def _arguments_ok(arguments: str) -> bool:
    try:
        return isinstance(json.loads(arguments or "{}"), dict)
    except ValueError:
        return False


async def text_respond(
    *,
    model: str,
    instructions: str,
    input_items: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    timeout_s: float,
) -> ModelReply:
    """Ask the model for the next reply; TextModelError if it cannot give one."""
    if timeout_s <= 0.05:
        raise TextModelError("timeout", "no time left in this turn")
    started = time.perf_counter()
    body: dict[str, Any] = {"instructions": instructions, "input": input_items}
    if tools:
        body["tools"] = tools
    try:
        response = await asyncio.wait_for(
            text_client().responses.create(
                model=model,
                store=False,
                timeout=timeout_s,
                # The body as the API takes it, already in its JSON shape: passed as
                # the SDK's `extra_body`, it skips the SDK's recursive TypedDict
                # transform of every input item and tool schema (3+ ms of the
                # event loop per request, measured; bench/legacy_turns.py).
                extra_body=body,
            ),
            timeout_s + 0.05,
        )
    except (TimeoutError, openai.APITimeoutError) as exc:
        raise TextModelError("timeout", f"no answer within {timeout_s:.1f} s") from exc
    except openai.APIStatusError as exc:
        raise TextModelError("error", f"HTTP {exc.status_code}: {exc.message}") from exc
    except openai.APIError as exc:
        raise TextModelError("error", f"{type(exc).__name__}: {exc}") from exc
    ms = int((time.perf_counter() - started) * 1000)
    if response.status not in (None, "completed"):
        raise TextModelError("error", f"response {response.status}")
    texts: list[str] = []
    calls: list[ToolCall] = []
    items: list[dict[str, Any]] = []
    for item in response.output:
        if item.type == "message":
            for part in item.content:
                if part.type == "output_text":
                    texts.append(part.text)
        elif item.type == "function_call":
            if not item.name or not item.call_id or not _arguments_ok(item.arguments):
                raise TextModelError(
                    "malformed",
                    f"tool call {item.name!r} with arguments {item.arguments[:200]!r}",
                )
            calls.append(ToolCall(item.call_id, item.name, item.arguments))
            items.append(
                {
                    "type": "function_call",
                    "call_id": item.call_id,
                    "name": item.name,
                    "arguments": item.arguments,
                }
            )
    text = "".join(texts).strip()
    if not text and not calls:
        raise TextModelError("malformed", "neither text nor a tool call")
    usage = response.usage
    return ModelReply(
        text=text,
        tool_calls=tuple(calls),
        usage=TextUsage(
            input_tokens=usage.input_tokens if usage else 0,
            cached_tokens=(usage.input_tokens_details.cached_tokens or 0)
            if usage
            else 0,
            output_tokens=usage.output_tokens if usage else 0,
        ),
        ms=ms,
        call_items=tuple(items),
    )
