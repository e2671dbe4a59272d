"""An MCP server's tools for one call: the `ToolProvider` over the process pool."""

from __future__ import annotations

import logging
from typing import Any

from agents.mcp_config import TOOL_NAME_RE
from realtime.mcp_pool import (
    McpPool,
    McpServer,
    McpToolFailed,
    McpUnavailable,
    allowed,
    mcp_pool,
    result_output,
    tool_definition,
)
from realtime.tool_providers import FunctionTool
from realtime.tools import ToolContext, ToolResult

log = logging.getLogger(__name__)


class McpToolProvider:
    """The allowed tools of one configured MCP server (an `mcp_servers` entry)."""

    kind = "mcp"

    def __init__(self, entry: dict[str, Any], *, pool: McpPool | None = None) -> None:
        self.server = McpServer.from_entry(entry)
        self._pool = pool
        self._names: set[str] = set()

    @property
    def pool(self) -> McpPool:
        if self._pool is None:
            self._pool = mcp_pool()
        return self._pool

    async def definitions(self) -> list[FunctionTool]:
        listed = allowed(self.server, await self.pool.tools(self.server))
        # A name the Realtime API would refuse would fail the whole session.update.
        tools = [t for t in listed if TOOL_NAME_RE.match(t.name)]
        for t in listed:
            if t not in tools:
                log.warning(
                    "MCP server %s: tool name %r is not a function name: left out",
                    self.server.label,
                    t.name[:100],
                )
        self._names = {t.name for t in tools}
        return [
            FunctionTool(
                **tool_definition(t),
                server=self.server.name,
                timeout_s=self.server.timeout_s,
            )
            for t in tools
        ]

    async def run(
        self, name: str, arguments: dict[str, Any], context: ToolContext
    ) -> ToolResult:
        if name not in self._names:
            return ToolResult(output={"ok": False, "error": f"unknown tool: {name}"})
        try:
            result = await self.pool.call(self.server, name, arguments)
        except McpUnavailable as exc:
            return ToolResult(
                output={"ok": False, "error": f"the system is unavailable: {exc}"}
            )
        except McpToolFailed as exc:
            return ToolResult(output={"ok": False, "error": f"tool failed: {exc}"})
        return ToolResult(output=result_output(result))

    async def aclose(self) -> None:
        """Nothing per call: the session stays in the pool for the next call."""
