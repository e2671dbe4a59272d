"""One call's tools beyond the built-ins: discovery in the background, dispatch by name.

The bridge opens the model session with the built-in tools and greets at once; in
the background `CallTools.discover` asks every provider (MCP servers, HTTP tools) for
its tools, and hands the new ones to the bridge once, to add with one
`session.update`. A provider that failed is asked again with a growing pause while
the call lives, and its tools follow in another update when it comes back.

`CallTools.run` routes the model's function call by name: a built-in tool goes to
`realtime.tools.tool_run`, another to its provider under the tool's time-out. An
unknown name, bad arguments, a time-out or an exception all become a short
`{"ok": false, "error": …}` output: the response goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

# Imported with the bridge at the server's start, not at a call's: the MCP SDK takes
# ~0.4 s of CPU to import, which would stall every call on the event loop.
from realtime.http_tools import HttpToolProvider
from realtime.mcp_tools import McpToolProvider
from realtime.tool_providers import FunctionTool, ToolProvider
from realtime.tools import REGISTRY, ToolContext, ToolResult, tool_run

log = logging.getLogger(__name__)

FIRST_RETRY_S = 2.0
MAX_RETRY_S = 30.0
# Asks still running after `ask_once` stopped waiting (they fill the pool).
_LATE_ASKS: set[asyncio.Future[list[FunctionTool] | None]] = set()


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """A finished tool call, with what its call event records (never secrets)."""

    result: ToolResult
    source: str  # "builtin", "mcp", "http"
    server: str  # the MCP server's name / the HTTP tool's host; "" for built-ins
    ms: int
    output_json: str

    @property
    def ok(self) -> bool:
        return bool(self.result.output.get("ok"))

    def event(self, name: str, arguments_json: str) -> dict[str, Any]:
        """The `tool-call` event's payload."""
        return {
            "name": name,
            "source": self.source,
            "server": self.server,
            "arguments": arguments_json[:1000],
            "ok": self.ok,
            "error": "" if self.ok else str(self.result.output.get("error", ""))[:300],
            "output": self.result.output,
            "output_bytes": len(self.output_json.encode()),
            "ms": self.ms,
        }


def _error(message: str) -> ToolResult:
    return ToolResult(output={"ok": False, "error": message})


@functools.lru_cache(maxsize=512)
def _validator(parameters_json: str) -> Draft202012Validator | None:
    """A validator of a tool's argument schema; None if the schema itself is not
    one (a server's odd schema: its own checks then decide)."""
    schema = json.loads(parameters_json)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return None
    return Draft202012Validator(schema)


def _arguments_validator(tool: FunctionTool) -> Draft202012Validator | None:
    """The tool's argument validator (one per distinct schema in the process)."""
    return _validator(json.dumps(tool.parameters, sort_keys=True))


def _arguments_problem(
    validator: Draft202012Validator | None, args: dict[str, Any]
) -> str | None:
    """Why ``args`` fail the tool's schema, in a line; None when they pass."""
    if validator is None:
        return None
    error = next(iter(validator.iter_errors(args)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}"[:200] if where else error.message[:200]


class CallTools:
    """The tools of one call: the enabled built-ins and the providers' tools."""

    def __init__(
        self,
        *,
        enabled: Sequence[str],
        providers: Sequence[ToolProvider] = (),
        builtin_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.enabled = tuple(enabled)
        self.providers = tuple(providers)
        self.builtin_timeout_s = builtin_timeout_s
        self._clock = clock
        self._routes: dict[str, tuple[ToolProvider, FunctionTool]] = {}
        # Found when a tool is added (discovery, off the call's path), not per call.
        self._validators: dict[str, Draft202012Validator | None] = {}

    @property
    def dynamic(self) -> list[FunctionTool]:
        """The providers' tools known so far."""
        return [tool for _, tool in self._routes.values()]

    def _add(
        self, provider: ToolProvider, tools: Iterable[FunctionTool]
    ) -> list[FunctionTool]:
        added: list[FunctionTool] = []
        for tool in tools:
            if tool.name in REGISTRY:
                log.warning(
                    "%s tool %s (%s) shadows a built-in tool: left out",
                    provider.kind,
                    tool.name,
                    tool.server,
                )
                continue
            taken = self._routes.get(tool.name)
            if taken is not None and taken[0] is not provider:
                log.warning(
                    "%s tool %s (%s) has the name of a tool of %s: left out",
                    provider.kind,
                    tool.name,
                    tool.server,
                    taken[1].server,
                )
                continue
            if taken is None:
                added.append(tool)
            self._routes[tool.name] = (provider, tool)
            self._validators[tool.name] = _arguments_validator(tool)
        return added

    async def _ask(self, provider: ToolProvider) -> list[FunctionTool] | None:
        """The provider's new tools; None if it failed (logged, no secrets)."""
        try:
            return self._add(provider, await provider.definitions())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s tools unavailable: %s", provider.kind, str(exc)[:300])
            return None

    async def discover(
        self,
        publish: Callable[[list[FunctionTool]], Awaitable[None]],
        *,
        first_retry_s: float = FIRST_RETRY_S,
        max_retry_s: float = MAX_RETRY_S,
    ) -> None:
        """Ask every provider at once, `publish` what they gave in one batch, then
        ask the failed ones again (2 s, 4 s, … up to 30 s apart) and publish each
        comeback. Runs until every provider answered or it is cancelled."""
        if not self.providers:
            return
        answers = await asyncio.gather(*(self._ask(p) for p in self.providers))
        new = [tool for tools in answers if tools for tool in tools]
        if new:
            await publish(new)
        failed = [
            p for p, tools in zip(self.providers, answers, strict=True) if tools is None
        ]
        pause = first_retry_s
        while failed:
            await asyncio.sleep(pause)
            pause = min(pause * 2, max_retry_s)
            retry = await asyncio.gather(*(self._ask(p) for p in failed))
            new = [tool for tools in retry if tools for tool in tools]
            if new:
                await publish(new)
            failed = [
                p for p, tools in zip(failed, retry, strict=True) if tools is None
            ]

    async def ask_once(self, *, within_s: float) -> list[FunctionTool]:
        """Ask every provider once and wait at most `within_s` (a legacy turn has a
        budget); the providers' tools known then. An ask still running goes on in
        the background: it warms the pool for the next turn."""
        if not self.providers:
            return []
        asks = [asyncio.ensure_future(self._ask(p)) for p in self.providers]
        _done, late = await asyncio.wait(asks, timeout=within_s)
        for ask in late:
            _LATE_ASKS.add(ask)
            ask.add_done_callback(_LATE_ASKS.discard)
        return self.dynamic

    async def run(
        self,
        name: str,
        arguments_json: str,
        ctx: ToolContext,
        *,
        timeout_s: float | None = None,
    ) -> ToolOutcome:
        """Run one function call the model made; never raises (but cancellation).
        `timeout_s` caps the tool's own time-out (a legacy turn's time left)."""
        started = self._clock()
        route = self._routes.get(name)
        if route is None or name in REGISTRY:
            limit = self.builtin_timeout_s
            result = await tool_run(
                name=name,
                arguments_json=arguments_json,
                enabled=self.enabled,
                ctx=ctx,
                timeout_s=limit if timeout_s is None else min(limit, timeout_s),
            )
            return self._outcome(result, "builtin", "", started)
        provider, tool = route
        if timeout_s is not None and timeout_s < tool.timeout_s:
            tool = dataclasses.replace(tool, timeout_s=timeout_s)
        result = await self._run_dynamic(provider, tool, arguments_json, ctx)
        return self._outcome(result, provider.kind, tool.server, started)

    async def _run_dynamic(
        self,
        provider: ToolProvider,
        tool: FunctionTool,
        arguments_json: str,
        ctx: ToolContext,
    ) -> ToolResult:
        try:
            args = json.loads(arguments_json or "{}")
        except ValueError:
            return _error("arguments are not valid JSON")
        if not isinstance(args, dict):
            return _error("arguments must be a JSON object")
        problem = _arguments_problem(self._validators[tool.name], args)
        if problem is not None:  # nothing is called with arguments its schema refuses
            return _error(f"invalid arguments: {problem}")
        try:
            return await asyncio.wait_for(
                provider.run(tool.name, args, ctx), tool.timeout_s
            )
        except TimeoutError:
            return _error(
                f"{tool.server or tool.name} did not answer within {tool.timeout_s:g} s"
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "%s tool %s (%s) failed: %s",
                provider.kind,
                tool.name,
                tool.server,
                type(exc).__name__,
                extra={"call_id": ctx.call_id},
            )
            return _error(f"tool failed: {type(exc).__name__}")

    def _outcome(
        self, result: ToolResult, source: str, server: str, started: float
    ) -> ToolOutcome:
        output_json = json.dumps(result.output, ensure_ascii=False, default=str)
        ms = int((self._clock() - started) * 1000)
        return ToolOutcome(result, source, server, ms, output_json)

    async def aclose(self) -> None:
        for provider in self.providers:
            try:
                await provider.aclose()
            except Exception:
                log.exception("closing a %s tool provider failed", provider.kind)


def providers_for(
    *,
    mcp_servers: Sequence[dict[str, Any]],
    http_tools: Sequence[dict[str, Any]] = (),
    allow_private: bool = False,
) -> list[ToolProvider]:
    """The call's providers from the agent profile's configuration: one per MCP
    server, and one for all its HTTP tools."""
    providers: list[ToolProvider] = [McpToolProvider(entry) for entry in mcp_servers]
    if http_tools:
        providers.append(
            HttpToolProvider(list(http_tools), allow_private=allow_private)
        )
    return providers
