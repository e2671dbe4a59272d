"""A phone call whose agent has MCP servers, end to end (issue 18): the service, the
Twilio emulator, the fake Realtime server and real SDK MCP servers on loopback."""

from __future__ import annotations

import json

import pytest

from realtime.emulators import scenarios
from realtime.emulators.caller import Pause, Speak, WaitForAudio, WaitUntilQuiet
from realtime.emulators.demo_mcp import serve_mcp, slow_start
from realtime.mcp_pool import mcp_pool
from tests.realtime.flow.test_call_behaviour import (
    _call,
    _events,
    _hang_up_after_the_tool_answer,
)
from tests.realtime.mcp_servers import SECRET, HeaderSpy, booking_server, entry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

# The caller waits for the greeting, then asks: the model calls the MCP tool.
ASK = [
    WaitForAudio(ms=100, timeout_s=40),
    WaitUntilQuiet(quiet_ms=300, timeout_s=40),
    Pause(ms=300),
    Speak(ms=1000),
    Pause(ms=120000),
]


@pytest.fixture
async def mcp_settings(flow_settings):
    flow_settings.ALLOW_PRIVATE_URLS = True
    flow_settings.MCP_RETRY_S = 0.0
    yield flow_settings
    await mcp_pool().aclose()


def _tool_names(update: dict) -> list[str]:
    return [t["name"] for t in update["session"].get("tools", [])]


async def test_mcp_tools_join_the_session_and_a_call_round_trips(
    mcp_settings, service, start_fake_realtime, twilio, inbound_agent
):
    spy = HeaderSpy()
    scenario = scenarios.ToolCall(
        tool_name="lookup_booking", arguments='{"booking_id": "B-1001"}', preamble=None
    )
    async with serve_mcp(booking_server(), wrap=spy) as url:
        inbound_agent.mcp_servers = [
            entry(
                url, headers={"Authorization": SECRET}, allowed_tools=["lookup_booking"]
            )
        ]
        await inbound_agent.asave(update_fields=["mcp_servers"])
        async with start_fake_realtime(scenario) as fake:
            handle, call = await _call(twilio, service, ASK)
            await _hang_up_after_the_tool_answer(handle, fake)
            connection = fake.connections[0]
            fake.assert_complete()
    received = connection.received
    updates = [e for e in received if e.get("type") == "session.update"]
    # The MCP tool joins the session once: by one more session.update, or in the
    # socket's first one if it was found before the model socket opened.
    with_tool = [u for u in updates if "lookup_booking" in _tool_names(u)]
    assert with_tool and with_tool[0] is updates[-1]
    if len(updates) == 2:
        assert "lookup_booking" not in _tool_names(updates[0])
        assert set(_tool_names(updates[0])) < set(_tool_names(updates[1]))
    else:
        assert len(updates) == 1
    outputs = [
        json.loads(e["item"]["output"])
        for e in received
        if e.get("type") == "conversation.item.create"
        and e["item"].get("type") == "function_call_output"
    ]
    assert outputs == [
        {
            "ok": True,
            "result": {"booking_id": "B-1001", "name": "山田 太郎", "people": 2},
        }
    ]
    (added,) = await _events(call, "tools-added")
    # The tools' session.update is confirmed too, but it is no new model session.
    assert len(await _events(call, "model-connected")) == 1
    assert added.payload["servers"] == ["booking"]
    assert added.payload["tools"] == ["lookup_booking"]
    (event,) = await _events(call, "tool-call")
    assert event.payload["name"] == "lookup_booking"
    assert event.payload["source"] == "mcp" and event.payload["server"] == "booking"
    assert event.payload["ok"] is True and event.payload["output_bytes"] > 0
    assert set(spy.seen) == {SECRET}
    token = SECRET.split()[1]
    for row in await _events(call):
        assert token not in json.dumps(row.payload, ensure_ascii=False)


async def test_a_slow_and_a_down_server_never_hold_the_greeting(
    mcp_settings, service, start_fake_realtime, twilio, inbound_agent
):
    """Two servers, one 2 s slow to connect: the greeting plays at once (its first
    audio well before the slow server answers); both servers' tools reach the
    session; the model's call gets an output either way (the tool, or "unknown"
    if it came before the slow server's tools)."""
    scenario = scenarios.ToolCall(
        tool_name="lookup_booking", arguments='{"booking_id": "B-1"}', preamble=None
    )
    async with (
        serve_mcp(booking_server()) as fast_url,
        serve_mcp(booking_server(), wrap=slow_start(2.0)) as slow_url,
    ):
        inbound_agent.mcp_servers = [
            entry(fast_url, name="fast", allowed_tools=["greet"]),
            entry(slow_url, name="slow", allowed_tools=["lookup_booking"], timeout_s=5),
        ]
        await inbound_agent.asave(update_fields=["mcp_servers"])
        async with start_fake_realtime(scenario) as fake:
            handle, call = await _call(twilio, service, ASK)
            await _hang_up_after_the_tool_answer(handle, fake)
            connection = fake.connections[0]
    received = connection.received
    updates = [e for e in received if e.get("type") == "session.update"]
    added = [e.payload for e in await _events(call, "tools-added")]
    names = [t for payload in added for t in payload["tools"]]
    assert sorted(names) == ["greet", "lookup_booking"]
    assert "lookup_booking" in _tool_names(updates[-1])
    (event,) = await _events(call, "tool-call")
    # Called before or after the slow server's tools arrived: an answer either way.
    assert event.payload["name"] == "lookup_booking"
    if event.payload["ok"]:
        assert event.payload["server"] == "slow"
    else:
        assert "unknown tool" in event.payload["error"]
    await call.arefresh_from_db()
    assert call.first_audio_ms is not None and call.first_audio_ms < 2000
