"""Pooled MCP client sessions, one per server per process (issue 18).

Calls on a busy line reuse one streamable-HTTP session per MCP server (keyed by URL
and headers) and its tool list for `ttl_s`, so a call neither reconnects nor lists
again. Each session lives in a task of its own: the SDK's transport holds anyio
cancel scopes that must be left by the task that entered them, while requests from
any call's task go through the session's streams.

A connection that fails (refused, reset, the session gone) is dropped and the next
request connects again; a server found down is not tried again for `retry_s` (a
burst of calls does not hammer it), after which a call's background retry sees it
back. Header values (tokens) go to the server only: they are never logged, and
errors name the server by its name and host, never the headers.

Every connect resolves the server's name once, checks the addresses (the SSRF
guard) and pins the session's HTTP connections to the checked address
(realtime/pinned_http.py), so a later DNS answer cannot point it elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import ssl
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, CallToolResult, TextContent
from mcp_types import Tool as McpTool

from agents.mcp_config import SSE, STREAMABLE_HTTP
from notifications.urlsafety import Target, UnsafeURL, resolve_target
from realtime.pinned_http import PinnedTransport

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 300.0
DEFAULT_RETRY_S = 2.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
MAX_OUTPUT_CHARS = 8000
MAX_DESCRIPTION_CHARS = 1000
# Above httpx2's 20: a burst of concurrent tool calls on one session would otherwise
# close its connections beyond 20 after each answer and connect anew on the next.
MAX_KEEPALIVE_CONNECTIONS = 64

TransportFactory = Callable[[], httpx2.AsyncBaseTransport]


class McpUnavailable(Exception):
    """The server cannot be used now; the message says why, in words."""


class McpToolFailed(Exception):
    """The server answered a tool call with a protocol error (not a tool result)."""


@dataclass(frozen=True, slots=True)
class McpServer:
    """One configured server (an `AgentProfile.mcp_servers` entry)."""

    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    allowed_tools: tuple[str, ...] = ()
    timeout_s: float = 10.0
    transport: str = STREAMABLE_HTTP  # or SSE

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> McpServer:
        return cls(
            name=str(entry.get("name") or ""),
            url=str(entry["url"]),
            headers=tuple(sorted((entry.get("headers") or {}).items())),
            allowed_tools=tuple(entry.get("allowed_tools") or ()),
            timeout_s=float(entry.get("timeout_s") or 10.0),
            transport=str(entry.get("transport") or STREAMABLE_HTTP),
        )

    @property
    def key(self) -> str:
        """The pool key: transport, URL and a digest of the headers (never the
        headers)."""
        digest = hashlib.sha256(json.dumps(self.headers).encode()).hexdigest()[:16]
        return f"{self.transport}:{self.url}#{digest}"

    @property
    def label(self) -> str:
        """The server as errors and events name it: name and host."""
        host = urlsplit(self.url).hostname or "?"
        return f"{self.name} ({host})" if self.name else host


@dataclass(slots=True)
class _Connection:
    """One client session, held open by its own task until closed or broken."""

    server: McpServer
    client: Client | None = None
    task: asyncio.Task[None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    listing: asyncio.Lock = field(default_factory=asyncio.Lock)
    error: BaseException | None = None
    tools: list[McpTool] | None = None
    tools_at: float = 0.0

    @property
    def alive(self) -> bool:
        return (
            self.client is not None
            and self.error is None
            and self.task is not None
            and not self.task.done()
        )

    async def hold(
        self, connect_timeout_s: float, target: Target, transport: TransportFactory
    ) -> None:
        timeout = httpx2.Timeout(connect_timeout_s, read=300.0)

        def pinned_client(
            headers: dict[str, str] | None = None,
            timeout: httpx2.Timeout | None = timeout,
            auth: httpx2.Auth | None = None,
        ) -> httpx2.AsyncClient:
            return httpx2.AsyncClient(
                headers=headers,
                timeout=timeout,
                auth=auth,
                transport=PinnedTransport(target, transport()),
                trust_env=False,  # no proxy from the environment: pinned
            )

        headers = dict(self.server.headers)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.server.transport == SSE:
                    streams = sse_client(
                        self.server.url,
                        headers=headers,
                        timeout=connect_timeout_s,
                        httpx_client_factory=pinned_client,
                    )
                else:
                    http = await stack.enter_async_context(pinned_client(headers))
                    streams = streamable_http_client(self.server.url, http_client=http)
                self.client = await stack.enter_async_context(
                    Client(
                        streams,
                        read_timeout_seconds=max(
                            self.server.timeout_s, connect_timeout_s
                        ),
                    )
                )
                self.ready.set()
                await self.stop.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # an ExceptionGroup from the transport too
            self.error = exc
        finally:
            self.client = None
            self.ready.set()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every session (loading the CA bundle costs CPU)."""
    return httpx2.create_ssl_context()


_tls_context()  # at the server's start, not in a call's first connect


def http_transport() -> httpx2.AsyncBaseTransport:
    """The HTTP transport under a session's pinning."""
    return httpx2.AsyncHTTPTransport(
        verify=_tls_context(),
        trust_env=False,
        limits=httpx2.Limits(max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS),
    )


def _words(exc: BaseException) -> str:
    """A short reason in words for an exception from the transport."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, httpx2.ConnectError):
        return "connection refused or host unreachable"
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return "no answer in time"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, MCPError):
        return f"MCP error: {exc}"[:200]
    if isinstance(exc, RuntimeError) and "task_status.started" in str(exc):
        # anyio's words when the SDK's SSE reader ends before the `endpoint` event:
        # the server closed the stream (shutting down, or no MCP SSE server there).
        return "the SSE stream ended before its endpoint event"
    text = str(exc).strip()
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:200]


class McpPool:
    """The process's MCP sessions and tool lists."""

    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        retry_s: float = DEFAULT_RETRY_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        allow_private: bool = False,
        trusted_urls: frozenset[str] = frozenset(),
        transport: TransportFactory = http_transport,
    ) -> None:
        """`transport` (the HTTP transport under the pinning) is the benchmark's
        seam: it stamps when requests go out."""
        self.ttl_s = ttl_s
        self.retry_s = retry_s
        self.connect_timeout_s = connect_timeout_s
        self.allow_private = allow_private
        self.trusted_urls = trusted_urls
        self.transport = transport
        self._conns: dict[str, _Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._down: dict[str, tuple[float, str]] = {}  # key → (until, reason)
        self.connects = 0  # sessions opened, for tests and the bench

    def _target(self, server: McpServer) -> Target:
        """The address to connect to: the name resolved once and checked (F-77's
        SSRF rule, ALLOW_PRIVATE_URLS; the demo's own server is trusted)."""
        allow_private = self.allow_private or server.url in self.trusted_urls
        try:
            return resolve_target(server.url, allow_private=allow_private)
        except UnsafeURL as exc:
            raise McpUnavailable(f"{server.label}: {exc}") from exc

    async def _connection(self, server: McpServer) -> _Connection:
        key = server.key
        conn = self._conns.get(key)
        if conn is not None and conn.alive:
            return conn
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            conn = self._conns.get(key)
            if conn is not None and conn.alive:
                return conn
            down = self._down.get(key)
            if down is not None and down[0] > time.monotonic():
                raise McpUnavailable(f"{server.label}: {down[1]}")
            if conn is not None:
                await self._close(conn)
            target = await asyncio.to_thread(self._target, server)
            conn = _Connection(server)
            self.connects += 1
            conn.task = asyncio.create_task(
                conn.hold(self.connect_timeout_s, target, self.transport),
                name=f"mcp-{server.name}",
            )
            try:
                await asyncio.wait_for(conn.ready.wait(), self.connect_timeout_s)
            except TimeoutError:
                await self._close(conn)
                conn.error = TimeoutError()
            if not conn.alive:
                reason = _words(conn.error or RuntimeError("closed"))
                self._down[key] = (time.monotonic() + self.retry_s, reason)
                self._conns.pop(key, None)
                log.warning("MCP server %s unavailable: %s", server.label, reason)
                raise McpUnavailable(f"{server.label}: {reason}")
            self._down.pop(key, None)
            self._conns[key] = conn
            return conn

    async def tools(self, server: McpServer) -> list[McpTool]:
        """The server's tools (all of them), from the pool within the TTL."""
        conn = await self._connection(server)
        if self._fresh(conn):
            assert conn.tools is not None
            return conn.tools
        async with conn.listing:  # one listing for the calls that ask at once
            if self._fresh(conn):
                assert conn.tools is not None
                return conn.tools
            return await self._list(conn, server)

    def _fresh(self, conn: _Connection) -> bool:
        return conn.tools is not None and time.monotonic() - conn.tools_at < self.ttl_s

    async def _list(self, conn: _Connection, server: McpServer) -> list[McpTool]:
        try:
            tools: list[McpTool] = []
            cursor: str | None = None
            for _ in range(20):  # pages
                assert conn.client is not None
                page = await asyncio.wait_for(
                    conn.client.list_tools(cursor=cursor), server.timeout_s
                )
                tools += page.tools
                cursor = page.next_cursor
                if not cursor:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._drop(conn)
            raise McpUnavailable(f"{server.label}: {_words(exc)}") from exc
        conn.tools, conn.tools_at = tools, time.monotonic()
        return tools

    async def call(
        self, server: McpServer, name: str, arguments: dict[str, Any]
    ) -> CallToolResult:
        """Call tool `name`; McpUnavailable if the server cannot be reached,
        McpToolFailed for a protocol error. The caller bounds the time."""
        conn = await self._connection(server)
        assert conn.client is not None
        try:
            return await conn.client.call_tool(name, arguments)
        except asyncio.CancelledError:
            raise
        except MCPError as exc:
            await asyncio.sleep(0)  # let a broken transport's task finish first
            if exc.code != CONNECTION_CLOSED and conn.alive:
                raise McpToolFailed(str(exc)[:300]) from exc
            await self._drop(conn)
            raise McpUnavailable(f"{server.label}: the connection was lost") from exc
        except Exception as exc:
            await self._drop(conn)
            raise McpUnavailable(f"{server.label}: {_words(exc)}") from exc

    async def _drop(self, conn: _Connection) -> None:
        if self._conns.get(conn.server.key) is conn:
            del self._conns[conn.server.key]
        await self._close(conn)

    async def _close(self, conn: _Connection) -> None:
        conn.stop.set()
        task = conn.task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), 2.0)
            except (TimeoutError, Exception):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def aclose(self) -> None:
        """Close every session (tests, shutdown)."""
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            await self._close(conn)
        self._down.clear()


def tool_definition(tool: McpTool) -> dict[str, Any]:
    """`{"name","description","parameters"}` of an MCP tool (the Realtime shape)."""
    schema = dict(tool.input_schema or {})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return {
        "name": tool.name,
        "description": (tool.description or tool.title or tool.name)[
            :MAX_DESCRIPTION_CHARS
        ],
        "parameters": schema,
    }


def allowed(server: McpServer, tools: list[McpTool]) -> list[McpTool]:
    """The tools the entry allows (all when `allowed_tools` is empty)."""
    if not server.allowed_tools:
        return tools
    return [t for t in tools if t.name in server.allowed_tools]


def result_output(result: CallToolResult) -> dict[str, Any]:
    """The function output for a tool result: structured content as JSON, else the
    text content; an error result as `{"ok": false, "error": …}`. Bounded."""
    texts = [c.text for c in result.content if isinstance(c, TextContent)]
    text = "\n".join(texts)
    if result.is_error:
        return {"ok": False, "error": (text or "the tool reported an error")[:500]}
    if result.structured_content is not None:
        encoded = json.dumps(result.structured_content, ensure_ascii=False, default=str)
        if len(encoded) <= MAX_OUTPUT_CHARS:
            return {"ok": True, "result": result.structured_content}
        return {"ok": True, "result": encoded[:MAX_OUTPUT_CHARS], "truncated": True}
    if len(text) > MAX_OUTPUT_CHARS:
        return {"ok": True, "result": text[:MAX_OUTPUT_CHARS], "truncated": True}
    return {"ok": True, "result": text}


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, McpPool] = (
    weakref.WeakKeyDictionary()
)


def _settings_pool() -> McpPool:
    from django.conf import settings

    from agents.mcp_config import demo_mcp_urls

    return McpPool(
        ttl_s=float(settings.MCP_TOOLS_TTL_S),
        retry_s=float(settings.MCP_RETRY_S),
        connect_timeout_s=float(settings.MCP_CONNECT_TIMEOUT_S),
        allow_private=bool(settings.ALLOW_PRIVATE_URLS),
        trusted_urls=demo_mcp_urls(),
    )


def mcp_pool() -> McpPool:
    """The running event loop's pool (one per process in the servers), configured
    from the settings on first use. Sessions are bound to the loop they run on."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = _settings_pool()
    return pool


async def mcp_tools_list(server: dict[str, Any]) -> list[dict[str, Any]]:
    """The tools `server` (a profile entry) offers, allowed-tools filter applied:
    `[{"name","description","parameters"}]`; McpUnavailable in words (the settings
    page's test button). Always a fresh connection, closed after: a test of the
    server as configured now, not of a pooled session."""
    spec = McpServer.from_entry(server)
    pool = _settings_pool()
    pool.retry_s = 0.0
    try:
        return [tool_definition(t) for t in allowed(spec, await pool.tools(spec))]
    finally:
        await pool.aclose()
