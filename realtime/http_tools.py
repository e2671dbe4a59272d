"""HTTP tools (F-78): an agent profile's own endpoints as function tools of a call.

A call of tool `name` checks the model's arguments against the tool's JSON Schema,
then POSTs `{"arguments": {...}, "call_id": <id>, "caller": "+81…"}` to the tool's URL,
signed like the webhooks (`X-Callcenter-Signature: t=…,v1=…`, notifications.signing;
docs/WEBHOOKS.md has the receiver's recipe). The host is resolved and checked again at
call time (notifications.urlsafety) and the request goes to that pinned address, so a
second DNS answer cannot slip a private address in. The JSON reply (at most
MAX_REPLY_BYTES) is the function output; a refused URL, time-out, non-JSON or oversized
reply, redirect or 4xx/5xx gives the model a short `{"ok": false, "error": …}` instead,
and the call goes on. No Django here: the caller passes `allow_private`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from notifications.signing import signature_header
from notifications.urlsafety import UnsafeURL, resolve_target, url_parts
from realtime.tool_providers import FunctionTool
from realtime.tools import ToolContext, ToolResult

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 16 * 1024
USER_AGENT = "callcenter-http-tools/1"
# TLS verification of the tools' servers; tests trust their own CA here.
VERIFY: ssl.SSLContext | bool = True


@dataclass(frozen=True, slots=True)
class Reply:
    """What one POST to a tool's URL came to."""

    ok: bool
    output: dict[str, Any]
    status: int | None = None
    size: int = 0  # bytes of the reply read
    error: str = ""


def _fail(message: str, **extra: Any) -> Reply:
    return Reply(ok=False, output={"ok": False, "error": message}, **extra)


def host_of(url: str) -> str:
    """The URL's host, for events and the monitor (never the secret)."""
    try:
        return url_parts(url)[1]
    except UnsafeURL:
        return ""


def arguments_problem(schema: dict[str, Any], arguments: dict[str, Any]) -> str:
    """Why `arguments` do not match `schema` (the first few problems), or ""."""
    validator = Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(arguments), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.path)
        problems.append(f"{where}: {error.message}" if where else error.message)
        if len(problems) == 3:
            break
    return "; ".join(problems)[:300]


async def signed_post(
    *,
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    payload: dict[str, Any],
    timeout_s: float,
    allow_private: bool,
    extra_headers: dict[str, str] | None = None,
) -> Reply:
    """POST `payload` signed to `url` (pinned address) and read a bounded JSON reply."""
    try:
        target = await asyncio.to_thread(
            resolve_target, url, allow_private=allow_private
        )
    except UnsafeURL as exc:
        return _fail(f"URL refused: {exc}"[:300])
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    original = httpx.URL(url)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": original.netloc.decode("ascii"),
        "X-Callcenter-Signature": signature_header(secret, int(time.time()), body),
        **(extra_headers or {}),
    }
    pinned = original.copy_with(host=target.addresses[0])
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream(
                "POST",
                pinned,
                content=body,
                headers=headers,
                extensions=extensions,
                timeout=httpx.Timeout(timeout_s),
            ) as response:
                data = b""
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_REPLY_BYTES:
                        return _fail(
                            f"the tool's reply is larger than {MAX_REPLY_BYTES} bytes",
                            status=response.status_code,
                            size=len(data),
                        )
                status = response.status_code
    except (TimeoutError, httpx.TimeoutException):
        return _fail(f"the tool did not answer within {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return _fail(f"the tool could not be reached ({type(exc).__name__})")
    if 300 <= status < 400:
        return _fail(
            f"the tool answered a redirect (HTTP {status}), not followed",
            status=status,
            size=len(data),
        )
    if status >= 400:
        return _fail(f"the tool answered HTTP {status}", status=status, size=len(data))
    if not data.strip():
        return Reply(ok=True, output={"ok": True}, status=status)
    try:
        reply = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _fail("the tool's reply is not JSON", status=status, size=len(data))
    if isinstance(reply, dict):
        output = reply if "ok" in reply else {"ok": True, **reply}
    else:
        output = {"ok": True, "result": reply}
    return Reply(ok=True, output=output, status=status, size=len(data))


class HttpToolProvider:
    """The HTTP tools of one agent profile for one call (a `ToolProvider`)."""

    kind = "http"

    def __init__(
        self,
        tools: list[dict[str, Any]],
        *,
        allow_private: bool,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._tools = {t["name"]: t for t in tools}
        self._allow_private = allow_private
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the address is pinned
            verify=VERIFY,
        )

    async def definitions(self) -> list[FunctionTool]:
        return [
            FunctionTool(
                name=t["name"],
                description=t["description"],
                parameters=t["parameters"],
                server=host_of(t["url"]),
                timeout_s=float(t["timeout_s"]),
            )
            for t in self._tools.values()
        ]

    async def run(
        self, name: str, arguments: dict[str, Any], context: ToolContext
    ) -> ToolResult:
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult(output={"ok": False, "error": f"unknown tool: {name}"})
        problem = arguments_problem(tool["parameters"], arguments)
        if problem:
            # Nothing is sent: the model reads why and can ask the caller again.
            return ToolResult(
                output={"ok": False, "error": f"invalid arguments: {problem}"}
            )
        reply = await signed_post(
            client=self._client,
            url=tool["url"],
            secret=tool["secret"],
            payload={
                "arguments": arguments,
                "call_id": context.call_id,
                "caller": context.caller_number,
            },
            timeout_s=float(tool["timeout_s"]),
            allow_private=self._allow_private,
            extra_headers={"X-Callcenter-Tool": name},
        )
        if not reply.ok:
            log.info(
                "http tool %s on %s failed: %s",
                name,
                host_of(tool["url"]),
                reply.output.get("error"),
                extra={"call_id": context.call_id},
            )
        return ToolResult(output=reply.output)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


async def http_tool_test(
    tool: dict[str, Any], *, allow_private: bool
) -> tuple[bool, str]:
    """The settings page's test button: one signed test POST, its answer in words.

    The body is `{"arguments": {}, "call_id": null, "caller": "", "test": true}` with
    `X-Callcenter-Test: 1`, so the receiver can answer without acting.
    """
    started = time.monotonic()
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, verify=VERIFY
    ) as client:
        reply = await signed_post(
            client=client,
            url=tool["url"],
            secret=tool["secret"],
            payload={"arguments": {}, "call_id": None, "caller": "", "test": True},
            timeout_s=float(tool.get("timeout_s") or 10.0),
            allow_private=allow_private,
            extra_headers={"X-Callcenter-Tool": tool["name"], "X-Callcenter-Test": "1"},
        )
    ms = int((time.monotonic() - started) * 1000)
    if reply.ok:
        return (
            True,
            f"HTTP {reply.status}, JSON reply of {reply.size} bytes in {ms} ms.",
        )
    return False, str(reply.output.get("error", "failed"))
