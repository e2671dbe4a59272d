"""The legacy path's turns use the agent's MCP tools too (issue 18)."""

from __future__ import annotations

import json
import time as clock

import pytest
from asgiref.sync import sync_to_async

from calls.legacy import turns
from calls.legacy.text_model import ModelReply, TextUsage, ToolCall
from calls.legacy.writes import writes_idle
from calls.models import CallEvent, CallSession
from calls.status import CallStatus
from realtime.emulators.demo_mcp import serve_mcp
from realtime.mcp_pool import mcp_pool
from tests.calls.factories import CallSessionFactory
from tests.realtime.mcp_servers import booking_server, entry, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


@pytest.fixture(autouse=True)
async def legacy_settings(settings):
    settings.PUBLIC_BASE_URL = "https://cc.example.com"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # never the real API
    settings.ALLOW_PRIVATE_URLS = True
    settings.MCP_RETRY_S = 0.0
    yield settings
    await mcp_pool().aclose()


def _reply(text: str = "", call: ToolCall | None = None) -> ModelReply:
    items = (
        (
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
        )
        if call
        else ()
    )
    return ModelReply(
        text=text,
        tool_calls=(call,) if call else (),
        usage=TextUsage(10, 0, 5),
        ms=1,
        call_items=items,
    )


async def _turn(monkeypatch, url: str) -> tuple[CallSession, str, list[dict]]:
    call = await sync_to_async(CallSessionFactory)(
        path=CallSession.Path.LEGACY, status=CallStatus.AI_RESPONDING
    )
    agent = await sync_to_async(lambda: call.agent)()
    agent.mcp_servers = [entry(url, allowed_tools=["lookup_booking"])]
    await agent.asave(update_fields=["mcp_servers"])
    asked: list[dict] = []
    lookup = ToolCall("call_1", "lookup_booking", '{"booking_id": "B-7"}')

    async def model(**kwargs):
        asked.append(kwargs)
        if len(asked) == 1:
            return _reply(call=lookup)
        return _reply(text="ご予約を確認しました。")

    monkeypatch.setattr(turns, "text_respond", model)
    reply = await turns.legacy_turn_twiml(
        call_id=call.pk,
        event="gather",
        speech="予約を確認したいです",
        confidence="0.9",
        received=clock.perf_counter(),
    )
    await writes_idle()
    return call, reply, asked


async def test_a_legacy_turn_offers_and_runs_the_mcp_tools(monkeypatch):
    async with serve_mcp(booking_server()) as url:
        call, reply, asked = await _turn(monkeypatch, url)
    names = [t["name"] for t in asked[0]["tools"]]
    assert "lookup_booking" in names and "greet" not in names
    output = next(
        json.loads(i["output"])
        for i in asked[1]["input_items"]
        if i.get("type") == "function_call_output"
    )
    assert output == {
        "ok": True,
        "result": {"booking_id": "B-7", "name": "山田 太郎", "people": 2},
    }
    assert "ご予約を確認しました。" in reply
    (event,) = [
        e.payload async for e in CallEvent.objects.filter(call=call, type="tool-call")
    ]
    assert event["source"] == "mcp" and event["server"] == "booking" and event["ok"]


async def test_a_legacy_turn_goes_on_without_a_down_server(monkeypatch):
    """The server is down: the turn offers the built-ins only and still answers;
    the model's call of the missing tool gets an error output."""
    _call, reply, asked = await _turn(
        monkeypatch, f"http://127.0.0.1:{free_port()}/mcp"
    )
    assert "lookup_booking" not in [t["name"] for t in asked[0]["tools"]]
    output = next(
        json.loads(i["output"])
        for i in asked[1]["input_items"]
        if i.get("type") == "function_call_output"
    )
    assert output == {"ok": False, "error": "unknown tool: lookup_booking"}
    assert "ご予約を確認しました。" in reply
