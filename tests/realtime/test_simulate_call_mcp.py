"""`simulate_call` shows the demo agent's MCP tool call (issue 18): the 予約システム
on loopback, the fake model's receptionist persona that looks the booking up."""

from __future__ import annotations

import pytest

from calls.models import CallEvent, CallSession
from realtime.emulators.demo_mcp import DemoMcpServer
from realtime.mcp_pool import mcp_pool
from tests.realtime import test_simulate_call as sim
from tests.realtime.flow import conftest as flow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

flow_settings = flow.flow_settings
service = flow.service
start_fake_realtime = flow.start_fake_realtime
controlled_twilio = flow.controlled_twilio
inbound_agent = flow.inbound_agent


async def test_simulated_call_shows_the_mcp_tool_call(
    flow_settings, service, start_fake_realtime, controlled_twilio, inbound_agent
):
    flow_settings.ALLOW_PRIVATE_URLS = True
    async with DemoMcpServer() as booking:
        inbound_agent.instructions_template += "\n既存の予約の確認は予約システムの lookup_booking を、電話番号でお調べください。"
        inbound_agent.mcp_servers = [
            {
                "name": "booking",
                "url": booking.url,
                "headers": {},
                "allowed_tools": ["lookup_booking", "create_booking"],
                "timeout_s": 5.0,
            }
        ]
        await inbound_agent.asave()
        try:
            async with start_fake_realtime() as fake:
                output, error = await sim.simulate(
                    url=service,
                    emulator=controlled_twilio.base_url,
                    to=flow.INBOUND_NUMBER,
                    from_=flow.CALLER_NUMBER,
                    turns=2,
                    timeout=60,
                )
                fake.assert_complete()
        finally:
            await mcp_pool().aclose()
    assert error is None, f"{error}\n{output}"
    assert "tools-added booking: lookup_booking, create_booking" in output
    assert "tool-call lookup_booking @booking (mcp) ok" in output
    assert "予約システムで確認が取れました。" in output
    call = await CallSession.objects.aget()
    event = await CallEvent.objects.aget(call=call, type="tool-call")
    assert event.payload["ok"] is True
    assert event.payload["output"]["result"]["found"] is True
    assert event.payload["output"]["result"]["bookings"][0]["name"] == "山田 太郎"
