"""A fake OpenAI Responses API (``POST /v1/responses``) on a real socket.

What the legacy path (F-72) talks to in tests, the benchmark and the demo,
through the real ``openai`` package (``AsyncOpenAI(base_url=server.base_url)``)::

    async with FakeResponsesServer(api_key="sk-test") as fake:
        settings.OPENAI_BASE_URL = fake.base_url        # http://127.0.0.1:PORT/v1
        ...
    fake.assert_complete()

Requests are checked as the API checks them (``responses_shapes.check_request``:
unknown parameters, models, input items, tools, tool outputs without their call),
the key as ``Authorization: Bearer`` (401 ``invalid_api_key`` otherwise), and
answered as one ``response`` object or, with ``"stream": true``, as server-sent
events. What the model says is scripted by ``reply_for`` (a few Japanese
phrases call the matching tool when it is offered; a tool's output gets a short
sentence; anything else an acknowledgement). Faults for tests: ``delay_s`` (a
slow model), ``fail_next(status)`` (an API error), ``malformed_next()`` (a tool
call whose arguments are not JSON).

Standalone: ``python -m realtime.emulators.fake_responses --port 8767``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from realtime.emulators.asgi_server import EmbeddedServer, send_json
from realtime.emulators.responses_shapes import (
    ApiError,
    OutputItem,
    Request,
    check_request,
    new_id,
    response_object,
    stream_events,
    usage_for,
)

__all__ = ["FakeResponsesServer", "RecordedRequest", "main", "reply_for"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_SERVER_ERROR = (
    "The server had an error while processing your request. Sorry about that!"
)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    body: dict[str, Any]
    status: int
    error: str | None = None


def _last_user_text(items: list[dict[str, Any]]) -> str:
    """The caller's words if the input ends with them ("" if it ends with a
    developer or system note, say)."""
    if not items:
        return ""
    last = items[-1]
    if last.get("type", "message") != "message" or last.get("role") != "user":
        return ""
    content = last.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [])


def _tool_outputs(items: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(tool name, output) of the tool outputs that end the input."""
    names = {i["call_id"]: i["name"] for i in items if i.get("type") == "function_call"}
    outputs: list[tuple[str, dict[str, Any]]] = []
    for item in reversed(items):
        if item.get("type") != "function_call_output":
            break
        try:
            output = json.loads(item["output"])
        except ValueError:
            output = {"raw": item["output"]}
        outputs.append((names.get(item["call_id"], ""), output))
    return list(reversed(outputs))


# (phrases, tool, arguments from the caller's words)
_RULES: tuple[tuple[tuple[str, ...], str, Callable[[str], dict[str, Any]]], ...] = (
    (
        ("担当者", "人と話"),
        "request_operator_handoff",
        lambda text: {"reason": text[:100]},
    ),
    (
        ("もう電話しないで", "二度とかけないで", "電話しないでください"),
        "record_opt_out",
        lambda text: {"customer_words": text},
    ),
    (
        ("予約",),
        "schedule_appointment",
        lambda text: {
            "date": (dt.date.today() + dt.timedelta(days=1)).isoformat(),
            "time": "15:00",
            "name": "山田太郎",
        },
    ),
    (
        ("さようなら", "失礼します", "以上です"),
        "end_call",
        lambda text: {"reason": "the caller said goodbye"},
    ),
)


def _after_tool(name: str, output: dict[str, Any]) -> str:
    if not output.get("ok", True):
        return f"申し訳ございません。{output.get('error', '')}".strip()
    if name == "schedule_appointment":
        return f"{output.get('date')} {output.get('time')}にご予約を承りました。"
    if name == "end_call":
        return "お電話ありがとうございました。失礼いたします。"
    if name == "record_opt_out":
        return "承知いたしました。今後お電話はいたしません。失礼いたします。"
    if name == "get_customer_info":
        return f"{output.get('name') or 'お客'}様ですね。"
    return "承知いたしました。"


def reply_for(request: Request) -> list[OutputItem]:
    """What the scripted model answers to ``request``."""
    outputs = _tool_outputs(request.items)
    if outputs:
        return [OutputItem(text=" ".join(_after_tool(n, o) for n, o in outputs))]
    text = _last_user_text(request.items)
    offered = {t["name"] for t in request.tools}
    for phrases, tool, arguments in _RULES:
        if tool in offered and any(p in text for p in phrases):
            return [
                OutputItem(
                    name=tool,
                    arguments=json.dumps(arguments(text), ensure_ascii=False),
                )
            ]
    if not text:
        return [OutputItem(text="お待たせいたしました。引き続きご用件を伺います。")]
    return [
        OutputItem(
            text=f"かしこまりました。「{text[:40]}」ですね。ほかにご用件はございますか。"
        )
    ]


class FakeResponsesServer:
    """``POST /v1/responses`` on 127.0.0.1 (``port=0``: a free port)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        delay_s: float = 0.0,
        record: bool = True,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.delay_s = delay_s
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.request_count = 0
        self._fail: list[int] = []
        self._malformed = 0
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    # lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        self._server, self._task, self.port = await EmbeddedServer.start(
            self.app, host=self.host, port=self.port, what="the fake Responses server"
        )

    async def close(self) -> None:
        if self._server is not None and self._task is not None:
            await self._server.stop(self._task)
            self._server = None

    async def __aenter__(self) -> FakeResponsesServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """The SDK's ``base_url``: ``http://host:port/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    # faults and assertions ------------------------------------------------------

    def fail_next(self, status: int = 500, count: int = 1) -> None:
        """The next ``count`` requests get an API error with ``status``."""
        self._fail.extend([status] * count)

    def malformed_next(self, count: int = 1) -> None:
        """The next ``count`` answers call a tool with arguments that are not JSON."""
        self._malformed += count

    def problems(self) -> list[str]:
        """Requests the API would have refused for what they were (not faults)."""
        return [
            f"{r.status}: {r.error}"
            for r in self.requests
            if r.status == 400 or (r.status == 401 and self.api_key is not None)
        ]

    def assert_complete(self) -> None:
        problems = self.problems()
        if problems:
            raise AssertionError("refused requests: " + "; ".join(problems))

    # the API ---------------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope["headers"]
        }
        self.request_count += 1
        parsed: Any = None
        try:
            if scope["method"] != "POST" or scope["path"] != "/v1/responses":
                raise ApiError(404, f"Invalid URL ({scope['method']} {scope['path']})")
            self._authorize(headers.get("authorization", ""))
            try:
                parsed = json.loads(body or b"null")
            except ValueError:
                parsed = None
            request = check_request(parsed)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self._fail:
                status = self._fail.pop(0)
                raise ApiError(
                    status,
                    _SERVER_ERROR if status >= 500 else "Rate limit reached.",
                    type="server_error" if status >= 500 else "requests",
                    code=None if status >= 500 else "rate_limit_exceeded",
                )
            output = reply_for(request)
            if self._malformed:
                self._malformed -= 1
                output = [OutputItem(name="end_call", arguments='{"reason": ')]
        except ApiError as exc:
            self._remember(parsed, exc.status, exc.body["error"]["message"])
            await send_json(send, exc.status, exc.body)
            return
        self._remember(parsed, 200, None)
        if request.stream:
            await self._send_stream(send, request, output)
            return
        shaped = [o.shape() for o in output]
        payload = response_object(
            request,
            shaped,
            response_id=new_id("resp"),
            usage=usage_for(request, output),
        )
        await send_json(send, 200, payload)

    def _authorize(self, authorization: str) -> None:
        key = authorization.removeprefix("Bearer ").strip()
        if not authorization.startswith("Bearer ") or not key:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in "
                "an Authorization header using Bearer auth.",
            )
        if self.api_key is not None and key != self.api_key:
            shown = key if len(key) < 8 else f"{key[:3]}***{key[-4:]}"
            raise ApiError(
                401,
                f"Incorrect API key provided: {shown}.",
                code="invalid_api_key",
            )

    def _remember(self, body: Any, status: int, error: str | None) -> None:
        if self.record:
            kept = body if isinstance(body, dict) else {"raw": body}
            self.requests.append(RecordedRequest(kept, status, error))

    async def _send_stream(
        self, send: Send, request: Request, output: list[OutputItem]
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        for event in stream_events(request, output):
            data = json.dumps(event, ensure_ascii=False)
            chunk = f"event: {event['type']}\ndata: {data}\n\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--api-key", default=None)
    parser.add_argument(
        "--delay-ms", type=float, default=0.0, help="answer each request this late"
    )
    args = parser.parse_args(argv)

    async def serve() -> None:
        async with FakeResponsesServer(
            api_key=args.api_key,
            host=args.host,
            port=args.port,
            delay_s=args.delay_ms / 1000,
            record=False,
        ) as fake:
            print(f"fake OpenAI Responses API on {fake.base_url}", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
