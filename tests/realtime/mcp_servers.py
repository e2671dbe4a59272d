"""Real MCP servers for the tests: the official SDK's server side on loopback."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

SECRET = "Bearer s3cr3t-token-do-not-log"


def booking_server(*, hang_s: float = 30.0) -> MCPServer:
    """A booking-like server with a good, a failing and a hanging tool."""
    server = MCPServer("テスト予約")

    @server.tool(description="予約を調べる")
    def lookup_booking(booking_id: str) -> dict[str, Any]:
        return {"booking_id": booking_id, "name": "山田 太郎", "people": 2}

    @server.tool(description="文字だけ返す", structured_output=False)
    def greet(name: str) -> str:
        return f"こんにちは {name}"

    @server.tool(description="いつも失敗する")
    def broken(reason: str = "") -> str:
        raise ToolError(f"予約システムの障害です {reason}".strip())

    @server.tool(name="bad.name", description="関数名にできない名前")
    def bad_name() -> str:
        return "never offered"

    @server.tool(description="答えない")
    async def hang() -> str:
        await asyncio.sleep(hang_s)
        return "late"

    return server


class HeaderSpy:
    """ASGI middleware that keeps the Authorization header of every request."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, app: Any) -> Any:
        async def spy(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                for key, value in scope.get("headers") or ():
                    if key.lower() == b"authorization":
                        self.seen.append(value.decode())
            await app(scope, receive, send)

        return spy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def entry(url: str, **overrides: Any) -> dict[str, Any]:
    """An `mcp_servers` entry for `url`."""
    return {
        "name": "booking",
        "url": url,
        "headers": {},
        "allowed_tools": [],
        "timeout_s": 2.0,
        **overrides,
    }
