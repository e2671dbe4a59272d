"""A phone call whose agent has an HTTP tool, end to end (issue 18): the service, the
Twilio emulator, the fake Realtime server and a signed-request receiver on loopback."""

from __future__ import annotations

import json

import pytest

from realtime.emulators import scenarios
from tests.realtime.flow.test_call_behaviour import (
    _call,
    _events,
    _hang_up_after_the_tool_answer,
)
from tests.realtime.flow.test_mcp_call import ASK
from tests.realtime.tool_receiver import ToolServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

SECRET = "tool-secret-0123456789abcdef"


@pytest.fixture
def tool_server():
    server = ToolServer(
        secret=SECRET, reply='{"in_stock": 3, "item": "エアコン"}'.encode()
    ).start()
    yield server
    server.stop()


async def test_an_http_tool_joins_the_session_and_its_signed_call_round_trips(
    flow_settings, service, start_fake_realtime, twilio, inbound_agent, tool_server
):
    flow_settings.ALLOW_PRIVATE_URLS = True  # the receiver is on loopback
    inbound_agent.http_tools = [
        {
            "name": "check_stock",
            "description": "在庫を調べる",
            "parameters": {
                "type": "object",
                "properties": {"item": {"type": "string"}},
                "required": ["item"],
            },
            "url": tool_server.url,
            "secret": SECRET,
            "timeout_s": 5,
        }
    ]
    await inbound_agent.asave(update_fields=["http_tools"])
    scenario = scenarios.ToolCall(
        tool_name="check_stock", arguments='{"item": "エアコン"}', preamble=None
    )
    async with start_fake_realtime(scenario) as fake:
        handle, call = await _call(twilio, service, ASK)
        await _hang_up_after_the_tool_answer(handle, fake)
        connection = fake.connections[0]
        fake.assert_complete()
    updates = [e for e in connection.received if e.get("type") == "session.update"]
    assert "check_stock" in [t["name"] for t in updates[-1]["session"]["tools"]]
    outputs = [
        json.loads(e["item"]["output"])
        for e in connection.received
        if e.get("type") == "conversation.item.create"
        and e["item"].get("type") == "function_call_output"
    ]
    assert outputs == [{"in_stock": 3, "item": "エアコン", "ok": True}]
    (request,) = tool_server.calls
    assert request.verified  # signed like the webhooks, checked by the recipe
    assert request.payload["arguments"] == {"item": "エアコン"}
    assert request.payload["call_id"] == call.pk
    assert request.payload["caller"] == call.from_number
    (event,) = await _events(call, "tool-call")
    assert event.payload["name"] == "check_stock"
    assert event.payload["source"] == "http" and event.payload["ok"] is True
    for row in await _events(call):
        assert SECRET not in json.dumps(row.payload, ensure_ascii=False)
