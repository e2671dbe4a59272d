"""bench/mcp_shares.py: the split of a tool call's time between us and the MCP server."""

from __future__ import annotations

import pytest

from bench.mcp_shares import (
    ServerTiming,
    StampedTransport,
    monotonic_ms,
    pair_shares,
    timing_wrap,
)
from realtime.emulators.demo_mcp import Bookings, demo_mcp_server, serve_mcp
from realtime.mcp_pool import McpPool, McpServer

pytestmark = pytest.mark.timeout(30)


def test_the_server_share_runs_from_our_request_out_to_its_answer_out():
    """Its wait before its app runs (a busy loop, a GC pass) is the server's."""
    [call] = pair_shares(
        {"B-1": 20.0, "B-2": 5.0},
        {"B-1": 1000.0},
        {"B-1": ServerTiming(app_in=1012.0, answer_out=1014.0)},
    )
    assert call.server == 14.0 and call.ours == 6.0
    assert call.server_queue == 12.0 and call.server_app == 2.0
    assert call.ours_asgi == 18.0  # the earlier attribution, for comparison


async def test_the_stamps_bracket_the_server_work():
    """Request out before answer out, both inside the call's time. (The app may
    start on the headers, before the body is written: its start is not ordered.)"""
    timings: dict[str, ServerTiming] = {}
    sent: dict[str, float] = {}
    pool = McpPool(allow_private=True, transport=lambda: StampedTransport(sent))
    try:
        async with serve_mcp(
            demo_mcp_server(Bookings.demo()), wrap=timing_wrap(timings)
        ) as url:
            server = McpServer.from_entry({"name": "booking", "url": url})
            await pool.tools(server)
            began = monotonic_ms()
            result = await pool.call(server, "lookup_booking", {"booking_id": "B-1"})
            ended = monotonic_ms()
    finally:
        await pool.aclose()
    assert not result.is_error
    at_server = timings["B-1"]
    assert began < sent["B-1"] < at_server.answer_out < ended
    assert began < at_server.app_in < at_server.answer_out
