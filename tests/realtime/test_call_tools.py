"""A call's dispatcher of provider tools (issue 18): the model's arguments are
checked against the tool's schema before anything is called."""

from __future__ import annotations

from typing import Any

from realtime.call_tools import CallTools
from realtime.tool_providers import FunctionTool
from realtime.tools import ToolContext, ToolResult

BOOKING = FunctionTool(
    name="lookup_booking",
    description="予約を探す",
    parameters={
        "type": "object",
        "properties": {"booking_id": {"type": "string", "pattern": "^B-[0-9]+$"}},
        "required": ["booking_id"],
    },
    server="booking",
)


class RecordingProvider:
    kind = "mcp"

    def __init__(self, tools: list[FunctionTool]) -> None:
        self.tools = tools
        self.ran: list[dict[str, Any]] = []

    async def definitions(self) -> list[FunctionTool]:
        return self.tools

    async def run(self, name: str, arguments: dict[str, Any], ctx: Any) -> ToolResult:
        self.ran.append(arguments)
        return ToolResult(output={"ok": True, "found": arguments["booking_id"]})

    async def aclose(self) -> None:
        return None


async def _tools(provider: RecordingProvider) -> CallTools:
    tools = CallTools(enabled=(), providers=[provider])
    await tools.ask_once(within_s=1.0)
    assert [t.name for t in tools.dynamic] == ["lookup_booking"]
    return tools


CTX = ToolContext(call_id=1, organization_id=1)


async def test_arguments_that_fail_the_schema_call_nothing():
    provider = RecordingProvider([BOOKING])
    tools = await _tools(provider)
    missing = await tools.run("lookup_booking", "{}", CTX)
    wrong = await tools.run("lookup_booking", '{"booking_id": "X"}', CTX)
    assert provider.ran == []
    assert missing.result.output["ok"] is False
    assert "booking_id" in missing.result.output["error"]
    assert wrong.result.output["error"].startswith("invalid arguments: booking_id:")
    assert missing.event("lookup_booking", "{}")["source"] == "mcp"


async def test_arguments_that_pass_reach_the_provider():
    provider = RecordingProvider([BOOKING])
    tools = await _tools(provider)
    outcome = await tools.run("lookup_booking", '{"booking_id": "B-12"}', CTX)
    assert provider.ran == [{"booking_id": "B-12"}]
    assert outcome.result.output == {"ok": True, "found": "B-12"}


async def test_a_schema_that_is_not_one_leaves_the_check_to_the_server():
    odd = FunctionTool(
        name="lookup_booking",
        description="",
        parameters={"type": "object", "properties": {"x": {"type": 7}}},
        server="booking",
    )
    provider = RecordingProvider([odd])
    tools = await _tools(provider)
    await tools.run("lookup_booking", '{"booking_id": "B-1"}', CTX)
    assert provider.ran == [{"booking_id": "B-1"}]


async def test_the_schema_is_looked_up_when_the_tool_is_added_not_per_call(
    monkeypatch,
):
    """A tool call does no schema work beyond the check itself (issue 18's
    tool-call overhead): the validator is found once, at discovery."""
    import realtime.call_tools as call_tools

    found: list[str] = []
    real = call_tools._arguments_validator

    def counting(tool: FunctionTool) -> Any:
        found.append(tool.name)
        return real(tool)

    monkeypatch.setattr(call_tools, "_arguments_validator", counting)
    provider = RecordingProvider([BOOKING])
    tools = await _tools(provider)
    for n in range(3):
        await tools.run("lookup_booking", f'{{"booking_id": "B-{n}"}}', CTX)
    bad = await tools.run("lookup_booking", '{"booking_id": "X"}', CTX)
    assert found == ["lookup_booking"]
    assert len(provider.ran) == 3 and bad.result.output["ok"] is False
