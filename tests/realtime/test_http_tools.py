"""HTTP tools (F-78): the signed POST, argument checks, and every way a tool can fail.

A real HTTP server on loopback plays the business's endpoint; it verifies each
request with the recipe of docs/WEBHOOKS.md.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from realtime.http_tools import MAX_REPLY_BYTES, HttpToolProvider, http_tool_test
from realtime.tool_providers import ToolProvider
from realtime.tools import ToolContext
from tests.realtime.tool_receiver import ToolServer

SECRET = "tool-secret-0123456789"
CTX = ToolContext(call_id=42, organization_id=1, caller_number="+819012345678")
SCHEMA = {
    "type": "object",
    "properties": {
        "booking_id": {"type": "string", "pattern": "^B-[0-9]+$"},
        "people": {"type": "integer", "minimum": 1, "maximum": 8},
    },
    "required": ["booking_id"],
    "additionalProperties": False,
}


@pytest.fixture
def server() -> Iterator[ToolServer]:
    tool_server = ToolServer(secret=SECRET).start()
    yield tool_server
    tool_server.stop()


def tool_entry(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "lookup_booking",
        "description": "予約を番号で調べる",
        "parameters": SCHEMA,
        "url": url,
        "secret": SECRET,
        "timeout_s": 2.0,
        **overrides,
    }


async def run(
    url: str, arguments: dict[str, Any], *, allow_private: bool = True, **tool: Any
) -> dict[str, Any]:
    provider = HttpToolProvider([tool_entry(url, **tool)], allow_private=allow_private)
    try:
        result = await provider.run("lookup_booking", arguments, CTX)
    finally:
        await provider.aclose()
    return result.output


async def test_provider_defines_its_tools_with_the_host_never_the_secret(
    server: ToolServer,
) -> None:
    provider = HttpToolProvider([tool_entry(server.url)], allow_private=True)
    assert isinstance(provider, ToolProvider)
    [tool] = await provider.definitions()
    await provider.aclose()
    assert tool.name == "lookup_booking"
    assert tool.parameters == SCHEMA
    assert tool.server == "127.0.0.1"
    assert tool.timeout_s == 2.0
    assert SECRET not in json.dumps(tool.schema())
    assert tool.schema()["type"] == "function"


async def test_call_posts_signed_arguments_call_id_and_caller(
    server: ToolServer,
) -> None:
    output = await run(server.url, {"booking_id": "B-7", "people": 2})
    assert output == {"ok": True, "booking": "B-1"}
    [call] = server.calls
    assert call.verified, "the documented recipe must verify the signature"
    assert call.payload == {
        "arguments": {"booking_id": "B-7", "people": 2},
        "call_id": 42,
        "caller": "+819012345678",
    }
    assert call.headers["X-Callcenter-Tool"] == "lookup_booking"
    assert call.headers["Content-Type"] == "application/json"


async def test_a_wrong_secret_fails_the_documented_check(server: ToolServer) -> None:
    await run(server.url, {"booking_id": "B-7"}, secret="another-secret-abcdefgh")
    assert [c.verified for c in server.calls] == [False]


async def test_reply_without_ok_gets_ok_and_non_objects_are_wrapped(
    server: ToolServer,
) -> None:
    server.reply = b'{"status": "confirmed"}'
    assert await run(server.url, {"booking_id": "B-7"}) == {
        "ok": True,
        "status": "confirmed",
    }
    server.reply = b'["a", 1]'
    assert await run(server.url, {"booking_id": "B-7"}) == {
        "ok": True,
        "result": ["a", 1],
    }
    server.reply = b'{"ok": false, "error": "no such booking"}'
    assert await run(server.url, {"booking_id": "B-7"}) == {
        "ok": False,
        "error": "no such booking",
    }


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "'booking_id' is a required property"),
        ({"booking_id": "X"}, "booking_id: 'X' does not match"),
        ({"booking_id": "B-1", "people": 0}, "people: 0 is less than the minimum"),
        ({"booking_id": "B-1", "extra": 1}, "Additional properties are not allowed"),
    ],
)
async def test_arguments_off_the_schema_are_refused_before_any_request(
    server: ToolServer, arguments: dict[str, Any], problem: str
) -> None:
    output = await run(server.url, arguments)
    assert output["ok"] is False
    assert output["error"].startswith("invalid arguments: ")
    assert problem in output["error"]
    assert server.calls == []


async def test_time_out_is_an_error_output_in_time(server: ToolServer) -> None:
    server.delay_s = 3.0
    started = time.monotonic()
    output = await run(server.url, {"booking_id": "B-7"}, timeout_s=0.5)
    assert time.monotonic() - started < 2.0
    assert output == {"ok": False, "error": "the tool did not answer within 0.5 s"}


async def test_non_json_reply_is_an_error(server: ToolServer) -> None:
    server.reply, server.content_type = b"<html>hello</html>", "text/html"
    output = await run(server.url, {"booking_id": "B-7"})
    assert output == {"ok": False, "error": "the tool's reply is not JSON"}


async def test_oversized_reply_is_an_error(server: ToolServer) -> None:
    server.reply = json.dumps({"ok": True, "blob": "x" * MAX_REPLY_BYTES}).encode()
    output = await run(server.url, {"booking_id": "B-7"})
    assert output["ok"] is False
    assert f"larger than {MAX_REPLY_BYTES} bytes" in output["error"]


async def test_a_reply_at_the_bound_is_accepted(server: ToolServer) -> None:
    blob = "x" * (MAX_REPLY_BYTES - len(b'{"ok":true,"blob":""}'))
    server.reply = json.dumps(
        {"ok": True, "blob": blob}, separators=(",", ":")
    ).encode()
    assert len(server.reply) == MAX_REPLY_BYTES
    output = await run(server.url, {"booking_id": "B-7"})
    assert output == {"ok": True, "blob": blob}


@pytest.mark.parametrize("status", [400, 404, 500, 503])
async def test_4xx_and_5xx_are_errors(server: ToolServer, status: int) -> None:
    server.status = status
    output = await run(server.url, {"booking_id": "B-7"})
    assert output == {"ok": False, "error": f"the tool answered HTTP {status}"}


async def test_a_redirect_is_not_followed(server: ToolServer) -> None:
    server.status = 302
    output = await run(server.url, {"booking_id": "B-7"})
    assert output["ok"] is False
    assert "redirect (HTTP 302), not followed" in output["error"]
    assert len(server.calls) == 1


async def test_an_empty_2xx_reply_is_ok(server: ToolServer) -> None:
    server.status, server.reply = 204, b""
    assert await run(server.url, {"booking_id": "B-7"}) == {"ok": True}


async def test_unreachable_tool_is_an_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    output = await run(f"http://127.0.0.1:{port}/tool", {"booking_id": "B-7"})
    assert output == {
        "ok": False,
        "error": "the tool could not be reached (ConnectError)",
    }


async def test_private_address_refused_at_call_time_after_dns(
    server: ToolServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name resolved to a public address at save; now it answers loopback.
    def rebinding(host: str, port: int, *_a: Any, **_: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr("socket.getaddrinfo", rebinding)
    port = server.url.split(":")[2].split("/")[0]
    output = await run(
        f"http://tools.example.com:{port}/tool",
        {"booking_id": "B-7"},
        allow_private=False,
    )
    assert output["ok"] is False
    assert output["error"].startswith("URL refused: tools.example.com resolves to ")
    assert "127.0.0.1" in output["error"]
    assert server.calls == []


async def test_the_request_goes_to_the_pinned_address_with_the_host_kept(
    server: ToolServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[str] = []

    def resolver(host: str, port: int, *_a: Any, **_: Any) -> list[Any]:
        answers.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr("socket.getaddrinfo", resolver)
    port = server.url.split(":")[2].split("/")[0]
    output = await run(f"http://tools.example.com:{port}/tool", {"booking_id": "B-7"})
    assert output["ok"] is True
    # Resolved once, by the guard; the connection then goes to the address it gave.
    assert answers.count("tools.example.com") == 1
    assert server.calls[0].headers["Host"] == f"tools.example.com:{port}"


async def test_unknown_tool_name_is_an_error(server: ToolServer) -> None:
    provider = HttpToolProvider([tool_entry(server.url)], allow_private=True)
    result = await provider.run("nope", {}, CTX)
    await provider.aclose()
    assert result.output == {"ok": False, "error": "unknown tool: nope"}


async def test_the_test_button_posts_a_signed_test_request(server: ToolServer) -> None:
    ok, message = await http_tool_test(tool_entry(server.url), allow_private=True)
    assert ok
    assert message.startswith("HTTP 200, JSON reply of ")
    [call] = server.calls
    assert call.verified
    assert call.headers["X-Callcenter-Test"] == "1"
    assert call.payload == {
        "arguments": {},
        "call_id": None,
        "caller": "",
        "test": True,
    }


async def test_the_test_button_says_why_it_failed(server: ToolServer) -> None:
    server.status = 401
    ok, message = await http_tool_test(tool_entry(server.url), allow_private=True)
    assert (ok, message) == (False, "the tool answered HTTP 401")


async def test_failures_are_logged_with_the_host_never_the_secret(
    server: ToolServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.status = 500
    with caplog.at_level("DEBUG"):
        output = await run(server.url, {"booking_id": "B-7"})
    assert output["ok"] is False
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "lookup_booking on 127.0.0.1 failed: the tool answered HTTP 500" in logged
    assert SECRET not in logged
    assert all(SECRET not in str(r.__dict__) for r in caplog.records)
