"""Tools an agent gets beyond the built-in registry: the provider protocol (issue 18).

A `ToolProvider` serves the tools of one configured source for one call — an MCP
server (realtime/mcp_tools.py) or an agent profile's HTTP tools (realtime/http_tools.py).
The per-call dispatcher (realtime/call_tools.py) asks each provider for its
`definitions()` in the background after the call started, adds them to the model
session with one `session.update`, and routes the model's function calls by name to
the provider that defined it.

Contract:
- `definitions()` may be slow or fail (connect, list): it runs off the greeting's path;
  an exception means "no tools from this provider for now" and is logged by the caller.
- `run()` gets the parsed arguments (a JSON object) and the call's `ToolContext`; it
  returns a `ToolResult` whose `output` is the JSON the model reads. Expected failures
  (the remote said no, bad arguments) are `{"ok": False, "error": "..."}` outputs. The
  dispatcher wraps `run()` in `asyncio.wait_for(…, FunctionTool.timeout_s)` and turns a
  time-out or an exception into such an error output, so a provider need not.
- Names: built-in tools win; between providers the first definition of a name wins and
  the later one is dropped (logged). Providers never see secrets in events: the event
  names `FunctionTool.server` (a server name or URL host), never headers or secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from realtime.tools import ToolContext, ToolResult


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """One function the model may call, as a provider defines it."""

    name: str
    description: str
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    # Where it runs, for events and the monitor: an MCP server's name, an HTTP tool's host.
    server: str = ""
    # The dispatcher's time-out for one call of this tool, in seconds.
    timeout_s: float = 10.0

    def schema(self) -> dict[str, Any]:
        """The tool as the Realtime session's `tools` entry (PROTOCOL.md)."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


@runtime_checkable
class ToolProvider(Protocol):
    """A source of function tools for one call (MCP server, HTTP tools)."""

    # "mcp" or "http": the event's `source`.
    kind: str

    async def definitions(self) -> list[FunctionTool]:
        """The tools this provider offers now; may raise (then: none for now)."""
        ...

    async def run(
        self, name: str, arguments: dict[str, Any], context: ToolContext
    ) -> ToolResult:
        """Run tool `name` (one of `definitions()`) with parsed `arguments`."""
        ...

    async def aclose(self) -> None:
        """Release what the provider holds for this call (pooled resources stay)."""
        ...
