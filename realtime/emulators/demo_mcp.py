"""The demo's own MCP server: a small 予約システム (booking system), issue 18.

Served over streamable HTTP by the official `mcp` SDK's server side, so the demo
agent calls a real MCP tool: `lookup_booking` (by booking number or phone number)
and `create_booking`, over demo bookings held in memory (a restart starts over).
`make run` starts it with the other emulators on DEMO_MCP_PORT; `serve_mcp` runs any
SDK server on loopback (the tests' servers too). No Django here.

    async with DemoMcpServer(port=8769) as server:
        print(server.url)  # http://127.0.0.1:8769/mcp
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

SERVER_NAME = "予約システム"
MCP_PATH = "/mcp"
SSE_PATH = "/sse"
# The demo customer's number (agents/management/commands/seed_demo.py).
DEMO_PHONE = "+819012345678"


@dataclass(slots=True)
class Bookings:
    """The demo's bookings, in memory."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))

    @classmethod
    def demo(cls, today: dt.date | None = None) -> Bookings:
        day = today or dt.date.today()
        bookings = cls()
        bookings.add("山田 太郎", DEMO_PHONE, day + dt.timedelta(days=3), "14:00", 2)
        bookings.add(
            "佐藤 花子", "+819098765432", day + dt.timedelta(days=7), "11:30", 4
        )
        return bookings

    def add(
        self, name: str, phone: str, date: dt.date, time: str, people: int
    ) -> dict[str, Any]:
        booking_id = f"B-{next(self._ids)}"
        row = {
            "booking_id": booking_id,
            "name": name,
            "phone_number": phone,
            "date": date.isoformat(),
            "time": time,
            "people": people,
        }
        self.rows[booking_id] = row
        return row


def _digits(phone: str) -> str:
    digits = "".join(c for c in phone if c.isdigit())
    return "81" + digits[1:] if digits.startswith("0") else digits


def demo_mcp_server(bookings: Bookings | None = None) -> MCPServer:
    """The 予約システム as an SDK server with its two tools."""
    data = bookings if bookings is not None else Bookings.demo()
    server = MCPServer(SERVER_NAME, instructions="予約の確認と登録ができます。")

    @server.tool(description="予約番号(B-1001など)または電話番号で予約を調べる。")
    def lookup_booking(booking_id: str = "", phone_number: str = "") -> dict[str, Any]:
        if not booking_id and not phone_number:
            raise ToolError("予約番号か電話番号を指定してください。")
        if booking_id:
            row = data.rows.get(booking_id.strip().upper())
            found = [row] if row else []
        else:
            wanted = _digits(phone_number)
            found = [
                r for r in data.rows.values() if _digits(r["phone_number"]) == wanted
            ]
        return {"found": bool(found), "bookings": found}

    @server.tool(
        description="予約を登録する。日付はYYYY-MM-DD、時刻はHH:MM(24時間)、人数は1〜20。"
    )
    def create_booking(
        name: str, phone_number: str, date: str, time: str, people: int = 1
    ) -> dict[str, Any]:
        try:
            day = dt.date.fromisoformat(date)
            at = dt.time.fromisoformat(time)
        except ValueError as exc:
            raise ToolError(
                f"日付か時刻の形式が正しくありません: {date} {time}"
            ) from exc
        if day < dt.date.today():
            raise ToolError("過去の日付は予約できません。")
        if not name.strip() or not 1 <= people <= 20:
            raise ToolError("お名前と1〜20名の人数が必要です。")
        row = data.add(name.strip(), phone_number, day, at.strftime("%H:%M"), people)
        return {"created": True, **row}

    return server


def slow_start(delay_s: float) -> Callable[[Any], Any]:
    """A `serve_mcp` wrap that holds every request for `delay_s` until the first
    one has been answered: a server slow to connect (benchmarks, tests)."""

    def wrap(app: Any) -> Any:
        answered = asyncio.Event()

        async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and not answered.is_set():
                await asyncio.sleep(delay_s)
                await app(scope, receive, send)
                answered.set()
                return
            await app(scope, receive, send)

        return slow

    return wrap


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_mcp(
    server: MCPServer,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    wrap: Callable[[Any], Any] | None = None,
    sse: bool = False,
    tls: tuple[str, str] | None = None,
) -> AsyncIterator[str]:
    """Serve `server` over streamable HTTP (`sse`: the older HTTP+SSE transport) on
    `host:port` (0: a free port); yields its URL and stops it on exit. `wrap` wraps
    the ASGI app (a test's middleware); `tls` (certificate and key files) serves
    https."""
    port = port or _free_port(host)
    app: Any = (
        server.sse_app(sse_path=SSE_PATH, host=host)
        if sse
        else server.streamable_http_app(streamable_http_path=MCP_PATH, host=host)
    )
    if wrap is not None:
        app = wrap(app)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        ws="none",
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    web = uvicorn.Server(config)
    task = asyncio.create_task(web.serve(), name=f"mcp-server-{port}")
    try:
        while not web.started:
            if task.done():
                task.result()  # raises why it could not start
                raise RuntimeError(f"the MCP server on port {port} did not start")
            await asyncio.sleep(0.02)
        scheme = "https" if tls else "http"
        yield f"{scheme}://{host}:{port}{SSE_PATH if sse else MCP_PATH}"
    finally:
        web.should_exit = True
        try:
            await asyncio.wait_for(task, 5)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


class DemoMcpServer:
    """The 予約システム on `host:port` as an async context manager."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.bookings = Bookings.demo()
        self.url = ""
        self._cm: contextlib.AbstractAsyncContextManager[str] | None = None

    async def __aenter__(self) -> DemoMcpServer:
        self._cm = serve_mcp(
            demo_mcp_server(self.bookings), host=self.host, port=self.port
        )
        self.url = await self._cm.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._cm is not None:
            await self._cm.__aexit__(None, None, None)
