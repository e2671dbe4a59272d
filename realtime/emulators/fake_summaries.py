"""A fake OpenAI Responses API for after-call summaries (F-76), on a real socket.

Serves ``POST {PREFIX}/responses`` (``PREFIX`` = ``/summaries/v1``; the ``openai``
client's ``base_url`` is ``http://host:port/summaries/v1``) as a plain ASGI app, so it
runs in-process or beside the other emulators (``realtime.emulators.run``)::

    async with FakeSummariesServer() as fake:
        settings.SUMMARY_OPENAI_BASE_URL = fake.base_url
        ...
    assert fake.requests[0].body["text"]["format"]["type"] == "json_schema"

It checks requests strictly, as the API does (HTTP 400 with the API's error body):
bearer key, JSON body, known top-level parameters only, ``model``, ``input`` (a
string or a list of messages), and ``text.format`` — ``json_schema`` with a valid
``name``, a valid JSON Schema whose top level is an object, and under ``strict: true``
the strict-mode rules (every property required, ``additionalProperties: false``).

The answer is deterministic from the transcript in ``input`` (lines ``[customer] …``
and ``[ai] …``): a summary in the transcript's language (Japanese stays Japanese)
and a value for every field of the schema (names, numbers, dates and whether a job
is needed are read from what the caller said). Faults for tests: ``fail_next(n,
status)`` answers with an API error, ``invalid_next(n)`` with JSON that fails the
schema, ``delay_s`` holds each answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from realtime.emulators.asgi_server import EmbeddedServer, read_body, send_json

__all__ = ["PREFIX", "FakeSummariesServer", "RecordedRequest", "answer_for"]

PREFIX: Final = "/summaries/v1"
KNOWN_PARAMS: Final = frozenset(
    {
        "model",
        "input",
        "instructions",
        "text",
        "store",
        "metadata",
        "max_output_tokens",
        "temperature",
        "top_p",
        "truncation",
        "user",
        "safety_identifier",
    }
)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
_PHONE = re.compile(r"(\+?\d[\d-]{8,}\d)")
_NAME_JA = re.compile(r"([\u3040-\u30ff\u4e00-\u9fffA-Za-z]{1,10})と申します")
_NAME_EN = re.compile(r"[Mm]y name is ([A-Z][a-z]+(?: [A-Z][a-z]+)?)")
_WHEN = re.compile(
    r"((?:明日|明後日|今日|\d{1,2}月\d{1,2}日)(?:の?(?:午前|午後)?\d{1,2}時(?:半|\d{1,2}分)?)?"
    r"|(?:tomorrow|today|on \w+day)(?: at \d{1,2}(?::\d{2})? ?(?:am|pm)?)?)"
)
_JOB_WORDS: Final = (
    "修理",
    "見積",
    "依頼",
    "予約",
    "来て",
    "工事",
    "点検",
    "交換",
    "repair",
    "quote",
    "book",
    "appointment",
    "fix",
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


# -- the deterministic answer ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transcript:
    caller: tuple[str, ...]
    ai: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join((*self.caller, *self.ai))

    @property
    def japanese(self) -> bool:
        return bool(_JAPANESE.search(self.text))


def read_transcript(input_: object) -> Transcript:
    """The ``[customer]`` and ``[ai]`` lines of the request's input."""
    if isinstance(input_, list):
        parts: list[str] = []
        for item in input_:
            content = item.get("content") if isinstance(item, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [
                    str(c.get("text", "")) for c in content if isinstance(c, dict)
                ]
        text = "\n".join(parts)
    else:
        text = str(input_)
    caller, ai = [], []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[customer]"):
            caller.append(line[len("[customer]") :].strip())
        elif line.startswith("[ai]"):
            ai.append(line[len("[ai]") :].strip())
    return Transcript(tuple(caller), tuple(ai))


def summarize(t: Transcript) -> str:
    """A short summary in the transcript's language."""
    if not t.caller:
        return "発言なし。" if t.japanese else "Nothing was said."
    first = t.caller[0]
    if t.japanese:
        text = f"お客様の用件: {first}"
        if len(t.caller) > 1:
            text += f"（ほか{len(t.caller) - 1}件の発言）"
        if t.ai:
            text += f"。AIの最後の応答: {t.ai[-1]}"
        return text
    text = f"The caller said: {first}"
    if len(t.caller) > 1:
        text += f" (and {len(t.caller) - 1} more lines)"
    if t.ai:
        text += f". The AI last said: {t.ai[-1]}"
    return text


def _job_needed(t: Transcript) -> bool:
    said = " ".join(t.caller).lower()
    return any(word in said for word in _JOB_WORDS)


def _string_for(name: str, t: Transcript, nullable: bool) -> str | None:
    said = " ".join(t.caller)
    none: str | None = None if nullable else ""
    if name == "name":
        match = _NAME_JA.search(said) or _NAME_EN.search(said)
        return match.group(1) if match else none
    if name in {"callback_number", "phone", "phone_number"}:
        match = _PHONE.search(said)
        return match.group(1) if match else none
    if name == "appointment":
        match = _WHEN.search(said)
        return match.group(1) if match else none
    if name in {"job_title", "title"}:
        if not _job_needed(t):
            return none
        return t.caller[0][:40] if t.caller else none
    if name in {"job_details", "details"}:
        if not _job_needed(t):
            return none
        return " ".join(t.caller) or none
    if name == "summary":
        return summarize(t)
    if name == "request":
        return t.caller[0] if t.caller else ""
    if name == "next_action":
        if t.japanese:
            return "担当者が折り返し連絡する" if _job_needed(t) else "対応不要"
        return "call the customer back" if _job_needed(t) else "nothing to do"
    return t.caller[-1] if t.caller else ("" if not nullable else None)


def value_for(name: str, schema: Any, t: Transcript) -> Any:
    """A value for one schema node, read from the transcript where the name says how."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        choices = list(schema["enum"])
        return "neutral" if "neutral" in choices else choices[0]
    if "const" in schema:
        return schema["const"]
    kinds = schema.get("type", "string")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    nullable = "null" in kinds
    kind = next((k for k in kinds if k != "null"), "null")
    if kind == "string":
        return _string_for(name, t, nullable)
    if kind == "boolean":
        return _job_needed(t) if name in {"job_required", "job_needed"} else False
    if kind in {"integer", "number"}:
        return 0
    if kind == "array":
        return []
    if kind == "object":
        props = schema.get("properties", {})
        return {key: value_for(key, sub, t) for key, sub in props.items()}
    return None


def answer_for(schema: dict[str, Any], input_: object) -> dict[str, Any]:
    """The structured answer to a request: one value per property of `schema`."""
    return dict(value_for("", schema, read_transcript(input_)))


# -- strict request checks --------------------------------------------------------


def _strict_problem(schema: Any, where: str = "()") -> str | None:
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            props = schema.get("properties", {})
            if schema.get("additionalProperties") is not False:
                return (
                    f"In context={where}, 'additionalProperties' is required to be "
                    "supplied and to be false."
                )
            missing = [k for k in props if k not in schema.get("required", [])]
            if missing:
                return (
                    f"In context={where}, 'required' is required to be supplied and "
                    "to be an array including every key in properties. Missing "
                    f"'{missing[0]}'."
                )
            for key, sub in props.items():
                problem = _strict_problem(sub, f"{where[:-1]}'properties', '{key}')")
                if problem:
                    return problem
        if "items" in schema:
            return _strict_problem(schema["items"], where)
    return None


def check_request(body: object, headers: dict[str, str], api_key: str | None) -> None:
    """Raise BadRequest (or 401) unless the request is one the API would accept."""
    auth = headers.get("authorization", "")
    key = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
    if not key or (api_key is not None and key != api_key):
        raise BadRequest("Incorrect API key provided.", status=401)
    if not headers.get("content-type", "").startswith("application/json"):
        raise BadRequest("Content-Type must be application/json.")
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    unknown = sorted(set(body) - KNOWN_PARAMS)
    if unknown:
        raise BadRequest(f"Unknown parameter: '{unknown[0]}'.", param=unknown[0])
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("Missing required parameter: 'model'.", param="model")
    input_ = body.get("input")
    if not (isinstance(input_, str) and input_) and not (
        isinstance(input_, list)
        and input_
        and all(isinstance(i, dict) and "role" in i for i in input_)
    ):
        raise BadRequest("Invalid 'input': a string or a list of messages.", "input")
    fmt = (
        (body.get("text") or {}).get("format")
        if isinstance(body.get("text"), dict)
        else None
    )
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise BadRequest(
            "Expected 'text.format' of type 'json_schema'.", param="text.format"
        )
    name, schema = fmt.get("name"), fmt.get("schema")
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest("Invalid 'text.format.name'.", param="text.format.name")
    if not isinstance(schema, dict):
        raise BadRequest("Missing 'text.format.schema'.", param="text.format.schema")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise BadRequest(
            f"Invalid schema for response_format '{name}': {exc.message}",
            param="text.format.schema",
        ) from None
    if schema.get("type") != "object":
        raise BadRequest(
            f"Invalid schema for response_format '{name}': schema must be a JSON "
            "Schema of 'type: \"object\"'.",
            param="text.format.schema",
        )
    strict = fmt.get("strict", False)
    if strict not in (True, False, None):
        raise BadRequest("Invalid 'text.format.strict'.", param="text.format.strict")
    if strict:
        problem = _strict_problem(schema)
        if problem:
            raise BadRequest(
                f"Invalid schema for response_format '{name}': {problem}",
                param="text.format.schema",
            )


# -- the server ---------------------------------------------------------------------


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


@dataclass
class FakeSummariesServer:
    """The fake on ``host:port`` (0: a free port); an async context manager."""

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None
    delay_s: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list)
    _faults: list[int] = field(default_factory=list)
    _invalid: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: EmbeddedServer | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        """What the ``openai`` client takes as ``base_url``."""
        return f"http://{self.host}:{self.port}{PREFIX}"

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """Answer the next `count` requests with an API error of `status`."""
        self._faults += [status] * count

    def invalid_next(self, count: int = 1) -> None:
        """Answer the next `count` requests with JSON that fails their schema."""
        self._invalid += count

    async def __aenter__(self) -> FakeSummariesServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        self._server, self._task, self.port = await EmbeddedServer.start(
            self.app, host=self.host, port=self.port, what="the fake Responses server"
        )

    async def aclose(self) -> None:
        if self._server is not None and self._task is not None:
            await self._server.stop(self._task)
            self._server = None

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app: ``POST {PREFIX}/responses``; 404 elsewhere."""
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope.get("headers", [])
        }
        path = str(scope.get("path", ""))
        if path != f"{PREFIX}/responses" or scope.get("method") != "POST":
            await send_json(send, 404, _error("Not found.", "invalid_request_error"))
            return
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        status, reply = await self._answer(body, headers)
        self.requests.append(
            RecordedRequest(
                path, headers, body if isinstance(body, dict) else {}, status
            )
        )
        await send_json(send, status, reply)

    async def _answer(
        self, body: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        try:
            check_request(body, headers, self.api_key)
        except BadRequest as exc:
            kind = "invalid_request_error"
            return exc.status, _error(exc.message, kind, exc.param)
        if self._faults:
            status = self._faults.pop(0)
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            return status, _error("The server had an error.", kind)
        fmt = body["text"]["format"]
        answer = answer_for(fmt["schema"], body["input"])
        if self._invalid:
            self._invalid -= 1
            answer = {"unexpected": True}  # fails any schema with required fields
        text = json.dumps(answer, ensure_ascii=False)
        prompt = json.dumps(body["input"], ensure_ascii=False) + str(
            body.get("instructions", "")
        )
        n = next(self._ids)
        usage_in, usage_out = _tokens(prompt), _tokens(text)
        return 200, {
            "id": f"resp_fake{n:06d}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "model": body["model"],
            "output": [
                {
                    "type": "message",
                    "id": f"msg_fake{n:06d}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": text, "annotations": []}
                    ],
                }
            ],
            "parallel_tool_calls": True,
            "temperature": body.get("temperature", 1.0),
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "text": body["text"],
            "metadata": body.get("metadata") or {},
            "usage": {
                "input_tokens": usage_in,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": usage_out,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage_in + usage_out,
            },
        }


def _error(message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the fake alone until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m realtime.emulators.fake_summaries")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)

    async def serve() -> None:
        async with FakeSummariesServer(args.host, args.port, delay_s=args.delay) as f:
            print(f"fake Responses API at {f.base_url}", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
