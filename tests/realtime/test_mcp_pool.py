"""The MCP pool, provider and per-call dispatcher against a real SDK server on
loopback (issue 18)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from realtime.call_tools import CallTools
from realtime.emulators.demo_mcp import DemoMcpServer, serve_mcp
from realtime.mcp_pool import McpPool, McpServer, McpUnavailable, mcp_tools_list
from realtime.mcp_tools import McpToolProvider
from realtime.tool_providers import FunctionTool, ToolProvider
from realtime.tools import ToolContext
from tests.realtime.mcp_servers import (
    SECRET,
    HeaderSpy,
    booking_server,
    entry,
    free_port,
)

pytestmark = pytest.mark.timeout(30)

CTX = ToolContext(call_id=1, organization_id=1, caller_number="+819012345678")


@pytest.fixture
async def url():
    async with serve_mcp(booking_server(hang_s=20)) as served:
        yield served


@pytest.fixture
async def pool():
    pool = McpPool(allow_private=True, retry_s=0.0, connect_timeout_s=3.0)
    yield pool
    await pool.aclose()


async def test_tools_are_listed_as_function_tools(url, pool):
    provider = McpToolProvider(entry(url, timeout_s=3.0), pool=pool)
    assert isinstance(provider, ToolProvider)
    tools = {t.name: t for t in await provider.definitions()}
    # "bad.name" is no Realtime function name: left out, the others offered.
    assert set(tools) == {"lookup_booking", "greet", "broken", "hang"}
    lookup = tools["lookup_booking"]
    assert lookup.server == "booking" and lookup.timeout_s == 3.0
    assert lookup.description == "予約を調べる"
    assert lookup.parameters["type"] == "object"
    assert "booking_id" in lookup.parameters["properties"]
    assert lookup.schema()["type"] == "function"


async def test_allowed_tools_filter_what_is_offered_and_run(url, pool):
    provider = McpToolProvider(entry(url, allowed_tools=["greet"]), pool=pool)
    assert [t.name for t in await provider.definitions()] == ["greet"]
    refused = await provider.run("lookup_booking", {"booking_id": "B-1"}, CTX)
    assert refused.output == {"ok": False, "error": "unknown tool: lookup_booking"}


async def test_a_round_trip_gives_structured_and_text_results(url, pool):
    tools = CallTools(enabled=(), providers=[McpToolProvider(entry(url), pool=pool)])
    await tools.discover(_ignore)
    outcome = await tools.run("lookup_booking", '{"booking_id": "B-1001"}', CTX)
    assert outcome.ok and outcome.source == "mcp" and outcome.server == "booking"
    assert outcome.result.output == {
        "ok": True,
        "result": {"booking_id": "B-1001", "name": "山田 太郎", "people": 2},
    }
    assert json.loads(outcome.output_json) == outcome.result.output
    text = await tools.run("greet", '{"name": "花子"}', CTX)
    assert text.result.output == {"ok": True, "result": "こんにちは 花子"}
    event = text.event("greet", '{"name": "花子"}')
    assert event["source"] == "mcp" and event["server"] == "booking"
    assert event["ok"] is True and event["output_bytes"] == len(
        text.output_json.encode()
    )
    # One session served all of it.
    assert pool.connects == 1


async def test_an_error_result_is_a_short_error_output(url, pool):
    tools = CallTools(enabled=(), providers=[McpToolProvider(entry(url), pool=pool)])
    await tools.discover(_ignore)
    outcome = await tools.run("broken", '{"reason": "E42"}', CTX)
    assert not outcome.ok
    assert "予約システムの障害です E42" in outcome.result.output["error"]
    assert "予約システムの障害" in outcome.event("broken", "{}")["error"]
    bad = await tools.run("lookup_booking", "[1, 2]", CTX)
    assert bad.result.output == {
        "ok": False,
        "error": "arguments must be a JSON object",
    }


async def test_a_hanging_server_times_out_and_the_next_call_still_works(url, pool):
    tools = CallTools(
        enabled=(),
        providers=[McpToolProvider(entry(url, timeout_s=0.5), pool=pool)],
    )
    await tools.discover(_ignore)
    started = asyncio.get_running_loop().time()
    outcome = await tools.run("hang", "{}", CTX)
    assert asyncio.get_running_loop().time() - started < 2.0
    assert outcome.result.output == {
        "ok": False,
        "error": "booking did not answer within 0.5 s",
    }
    after = await tools.run("lookup_booking", '{"booking_id": "B-2"}', CTX)
    assert after.ok


async def test_a_server_down_at_the_start_is_found_back_by_the_retry(pool):
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    tools = CallTools(enabled=(), providers=[McpToolProvider(entry(url), pool=pool)])
    published: list[list[FunctionTool]] = []

    async def publish(new: list[FunctionTool]) -> None:
        published.append(new)

    with pytest.raises(McpUnavailable, match="connection refused"):
        await pool.tools(McpServer.from_entry(entry(url)))
    discovery = asyncio.create_task(
        tools.discover(publish, first_retry_s=0.2, max_retry_s=0.2)
    )
    await asyncio.sleep(0.5)
    assert published == [] and not discovery.done()
    async with serve_mcp(booking_server(), port=port):
        await asyncio.wait_for(discovery, 5)
        assert len(published) == 1
        assert {t.name for t in published[0]} == {
            "lookup_booking",
            "greet",
            "broken",
            "hang",
        }
        assert (await tools.run("greet", '{"name": "x"}', CTX)).ok


async def test_a_broken_session_is_replaced_on_the_next_request(pool):
    port = free_port()
    server = McpServer.from_entry(entry(f"http://127.0.0.1:{port}/mcp"))
    async with serve_mcp(booking_server(), port=port):
        await pool.tools(server)
    # The server went away with our session: the call fails in words...
    with pytest.raises(McpUnavailable):
        await pool.call(server, "greet", {"name": "x"})
    async with serve_mcp(booking_server(), port=port):
        # ... and the next one connects again.
        result = await pool.call(server, "greet", {"name": "x"})
        assert not result.is_error
    assert pool.connects == 2


def sse_cut(cut: list[bool]) -> Any:
    """A `serve_mcp` wrap: while `cut[0]`, the SSE GET is answered with an event
    stream that ends at once, before the SDK's `endpoint` event (a server shutting
    down; sse-starlette does this on its exit signal)."""

    def wrap(app: Any) -> Any:
        async def maybe_cut(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["method"] == "GET" and cut[0]:
                headers = [(b"content-type", b"text/event-stream")]
                await send(
                    {"type": "http.response.start", "status": 200, "headers": headers}
                )
                await send({"type": "http.response.body", "body": b""})
                return
            await app(scope, receive, send)

        return maybe_cut

    return wrap


async def test_an_sse_stream_ended_before_its_endpoint_is_unavailable_then_retried():
    """No `endpoint` event, no session: McpUnavailable in words, the server not
    tried again within `retry_s`, and found back after it."""
    cut = [True]
    pool = McpPool(allow_private=True, retry_s=0.5, connect_timeout_s=3.0)
    try:
        async with serve_mcp(booking_server(), sse=True, wrap=sse_cut(cut)) as url:
            server = McpServer.from_entry(entry(url, transport="sse"))
            with pytest.raises(McpUnavailable, match="ended before its endpoint"):
                await pool.tools(server)
            cut[0] = False
            with pytest.raises(McpUnavailable, match="ended before its endpoint"):
                await pool.tools(server)
            assert pool.connects == 1
            await asyncio.sleep(0.5)
            assert "greet" in {t.name for t in await pool.tools(server)}
            assert pool.connects == 2
    finally:
        await pool.aclose()


async def test_twenty_calls_share_one_session_and_one_tool_list(url, pool):
    server = McpServer.from_entry(entry(url))
    lists = await asyncio.gather(*(pool.tools(server) for _ in range(20)))
    assert pool.connects == 1
    assert all(tools is lists[0] for tools in lists)


async def test_the_tool_list_is_asked_again_after_the_ttl(url):
    pool = McpPool(allow_private=True, ttl_s=0.0)
    try:
        server = McpServer.from_entry(entry(url))
        first = await pool.tools(server)
        second = await pool.tools(server)
        assert first is not second and [t.name for t in first] == [
            t.name for t in second
        ]
        assert pool.connects == 1
    finally:
        await pool.aclose()


async def test_private_urls_are_refused_at_call_time(url):
    pool = McpPool(allow_private=False)
    with pytest.raises(McpUnavailable, match="private, loopback or reserved"):
        await pool.tools(McpServer.from_entry(entry(url)))
    assert pool.connects == 0


async def test_header_secrets_reach_the_server_and_are_never_logged(caplog):
    spy = HeaderSpy()
    caplog.set_level(logging.DEBUG)
    pool = McpPool(allow_private=True, retry_s=0.0)
    try:
        async with serve_mcp(booking_server(), wrap=spy) as url:
            good = entry(url, headers={"Authorization": SECRET}, timeout_s=0.5)
            tools = CallTools(enabled=(), providers=[McpToolProvider(good, pool=pool)])
            await tools.discover(_ignore)
            events = [
                (await tools.run(name, args, CTX)).event(name, args)
                for name, args in (
                    ("greet", '{"name": "x"}'),
                    ("broken", "{}"),
                    ("hang", "{}"),
                )
            ]
        # The server is gone: the pooled session's next call fails, in words.
        down = McpServer.from_entry(good)
        with pytest.raises(McpUnavailable) as failed:
            await pool.call(down, "greet", {"name": "x"})
    finally:
        await pool.aclose()
    assert spy.seen and set(spy.seen) == {SECRET}
    token = SECRET.split()[1]
    assert token not in caplog.text
    assert token not in json.dumps(events, ensure_ascii=False)
    assert token not in str(failed.value)
    assert token not in down.key


async def test_mcp_tools_list_for_the_settings_page(settings):
    """The test button's function: the tools in the page's shape, or the reason in
    words; a fresh connection each time."""
    settings.ALLOW_PRIVATE_URLS = True
    async with DemoMcpServer() as demo:
        listed = await mcp_tools_list(entry(demo.url, allowed_tools=["lookup_booking"]))
    assert [t["name"] for t in listed] == ["lookup_booking"]
    assert set(listed[0]) == {"name", "description", "parameters"}
    assert "phone_number" in listed[0]["parameters"]["properties"]
    with pytest.raises(McpUnavailable, match=r"booking .*connection refused"):
        await mcp_tools_list(entry(f"http://127.0.0.1:{free_port()}/mcp"))


async def test_the_demo_booking_system_looks_up_and_creates(pool):
    async with DemoMcpServer() as demo:
        provider = McpToolProvider(entry(demo.url), pool=pool)
        assert {t.name for t in await provider.definitions()} == {
            "lookup_booking",
            "create_booking",
        }
        found = await provider.run(
            "lookup_booking", {"phone_number": "090-1234-5678"}, CTX
        )
        assert found.output["ok"] and found.output["result"]["found"] is True
        assert found.output["result"]["bookings"][0]["name"] == "山田 太郎"
        made = await provider.run(
            "create_booking",
            {
                "name": "鈴木",
                "phone_number": "+819011112222",
                "date": "2099-01-02",
                "time": "10:00",
                "people": 3,
            },
            CTX,
        )
        assert made.output["ok"] and made.output["result"]["booking_id"] == "B-1003"
        past = await provider.run(
            "create_booking",
            {
                "name": "鈴木",
                "phone_number": "1",
                "date": "2000-01-01",
                "time": "10:00",
            },
            CTX,
        )
        assert (
            not past.output["ok"]
            and "過去の日付は予約できません" in past.output["error"]
        )


async def _ignore(tools: list[FunctionTool]) -> None:
    return None
