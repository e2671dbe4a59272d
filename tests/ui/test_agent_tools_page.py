"""The settings page's MCPサーバー and HTTPツール sections and their test button (F-78)."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse

from agents.models import AgentProfile
from tests.realtime.tool_receiver import ToolServer
from tests.ui.test_agent_pages import _form_data

pytestmark = pytest.mark.django_db

SECRET = "page-tool-secret-0123456"


def http_tool(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "lookup_order",
        "description": "注文を番号で調べる",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
        },
        "url": url,
        "secret": SECRET,
        "timeout_s": 3.0,
        **overrides,
    }


MCP_SERVER = {
    "name": "booking",
    "url": "http://127.0.0.1:9/mcp",
    "headers": {"Authorization": "Bearer very-secret"},
    "allowed_tools": [],
    "timeout_s": 10.0,
}


@pytest.fixture
def tool_server() -> Iterator[ToolServer]:
    server = ToolServer(secret=SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def fake_pool(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """realtime.mcp_pool as h18-mcp defines it (mcp_tools_list, McpUnavailable)."""
    module = types.ModuleType("realtime.mcp_pool")

    class McpUnavailable(Exception):
        pass

    module.McpUnavailable = McpUnavailable  # type: ignore[attr-defined]
    module.seen = []  # type: ignore[attr-defined]

    async def mcp_tools_list(server: dict[str, Any]) -> list[dict[str, Any]]:
        module.seen.append(server)  # type: ignore[attr-defined]
        if server["name"] == "down":
            raise McpUnavailable("接続できません (connection refused)")
        return [
            {"name": "lookup_booking", "description": "予約を調べる", "parameters": {}},
            {"name": "create_booking", "description": "予約を作る", "parameters": {}},
        ]

    module.mcp_tools_list = mcp_tools_list  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "realtime.mcp_pool", module)
    return module


def test_sections_show_secrets_masked_and_one_list_of_tools(
    logged_in: Any, agent: AgentProfile, settings: Any
) -> None:
    settings.ALLOW_PRIVATE_URLS = True
    agent.enabled_tools = ["end_call"]
    agent.http_tools = [http_tool("http://127.0.0.1:9/tool")]
    agent.mcp_servers = [MCP_SERVER]
    agent.save()
    html = logged_in.get(reverse("agents:detail", args=[agent.pk])).content.decode()
    assert "MCPサーバー" in html and "HTTPツール" in html and "接続テスト" in html
    assert SECRET not in html and "very-secret" not in html
    assert "********" in html
    assert 'data-tool-kind="built-in"' in html and "<code>end_call</code>" in html
    assert 'data-tool-kind="mcp"' in html and "すべてのツール" in html
    assert 'data-tool-kind="http"' in html and "<code>lookup_order</code>" in html


def test_saving_keeps_masked_secrets_and_takes_new_ones(
    logged_in: Any, agent: AgentProfile, settings: Any
) -> None:
    settings.ALLOW_PRIVATE_URLS = True
    url = reverse("agents:detail", args=[agent.pk])
    tools = [http_tool("http://127.0.0.1:9/tool")]
    response = logged_in.post(
        url,
        _form_data(
            agent,
            http_tools=json.dumps(tools),
            mcp_servers=json.dumps([MCP_SERVER]),
        ),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    agent.refresh_from_db()
    assert agent.http_tools[0]["secret"] == SECRET
    # Edit the description, post the page's masked values back: secrets stay.
    masked = [{**tools[0], "secret": "********", "description": "注文を調べる"}]
    masked_server = [{**MCP_SERVER, "headers": {"Authorization": "********"}}]
    response = logged_in.post(
        url,
        _form_data(
            agent,
            http_tools=json.dumps(masked),
            mcp_servers=json.dumps(masked_server),
        ),
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.http_tools[0]["secret"] == SECRET
    assert agent.http_tools[0]["description"] == "注文を調べる"
    assert agent.mcp_servers[0]["headers"] == {"Authorization": "Bearer very-secret"}
    # Remove both.
    response = logged_in.post(url, _form_data(agent, http_tools="[]", mcp_servers="[]"))
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.http_tools == [] and agent.mcp_servers == []


def test_private_url_refused_at_save_on_the_page(
    logged_in: Any, agent: AgentProfile, settings: Any
) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]),
        _form_data(agent, http_tools=json.dumps([http_tool("http://127.0.0.1:9/x")])),
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "127.0.0.1 resolves to 127.0.0.1, a private, loopback" in html
    agent.refresh_from_db()
    assert agent.http_tools == []


def test_builtin_name_refused_on_the_page(
    logged_in: Any, agent: AgentProfile, settings: Any
) -> None:
    settings.ALLOW_PRIVATE_URLS = True
    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]),
        _form_data(
            agent,
            http_tools=json.dumps(
                [http_tool("http://127.0.0.1:9/x", name="schedule_appointment")]
            ),
        ),
    )
    assert response.status_code == 400
    assert "schedule_appointment is a built-in tool" in response.content.decode()


def test_http_test_button_posts_signed_and_says_the_answer(
    logged_in: Any, agent: AgentProfile, settings: Any, tool_server: ToolServer
) -> None:
    settings.ALLOW_PRIVATE_URLS = True
    agent.http_tools = [http_tool(tool_server.url)]
    agent.save()
    masked = [{**http_tool(tool_server.url), "secret": "********"}]
    response = logged_in.post(
        reverse("agents:tools-test", args=[agent.pk]),
        {"kind": "http", "config": json.dumps(masked)},
    )
    body = response.json()
    assert response.status_code == 200 and body["ok"] is True
    [result] = body["results"]
    assert result["name"] == "lookup_order"
    assert result["message"].startswith("接続できました: HTTP 200")
    assert [c.verified for c in tool_server.calls] == [True]

    tool_server.status = 503
    body = logged_in.post(
        reverse("agents:tools-test", args=[agent.pk]),
        {"kind": "http", "config": json.dumps(masked)},
    ).json()
    assert body["ok"] is False
    assert body["results"][0]["message"] == "失敗しました: the tool answered HTTP 503"


def test_test_button_refuses_a_private_url_before_sending(
    logged_in: Any, agent: AgentProfile, settings: Any, tool_server: ToolServer
) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    response = logged_in.post(
        reverse("agents:tools-test", args=[agent.pk]),
        {"kind": "http", "config": json.dumps([http_tool(tool_server.url)])},
    )
    assert response.status_code == 400
    assert "private, loopback or reserved" in response.json()["error"]
    assert tool_server.calls == []


def test_mcp_test_button_lists_the_discovered_tools_or_the_error(
    logged_in: Any, agent: AgentProfile, settings: Any, fake_pool: types.ModuleType
) -> None:
    settings.ALLOW_PRIVATE_URLS = True
    agent.mcp_servers = [MCP_SERVER]
    agent.save()
    servers = [
        {
            **MCP_SERVER,
            "headers": {"Authorization": "********"},
            "allowed_tools": ["lookup_booking", "cancel_booking"],
        },
        {**MCP_SERVER, "name": "down", "headers": {}},
    ]
    response = logged_in.post(
        reverse("agents:tools-test", args=[agent.pk]),
        {"kind": "mcp", "config": json.dumps(servers)},
    )
    body = response.json()
    assert body["ok"] is False
    booking, down = body["results"]
    assert booking["ok"] is True
    assert [t["name"] for t in booking["tools"]] == ["lookup_booking"]
    assert "使えるツール: 1 個" in booking["message"]
    assert "サーバーにないツール: cancel_booking" in booking["message"]
    assert down == {
        "name": "down",
        "ok": False,
        "message": "失敗しました: 接続できません (connection refused)",
        "tools": [],
    }
    # The pool got the stored header value, not the mask.
    assert fake_pool.seen[0]["headers"] == {"Authorization": "Bearer very-secret"}


def test_test_button_says_bad_json_and_other_agents_are_404(
    logged_in: Any, agent: AgentProfile, foreign_agent: AgentProfile
) -> None:
    url = reverse("agents:tools-test", args=[agent.pk])
    response = logged_in.post(url, {"kind": "http", "config": "[{"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("JSON として読めません")
    assert logged_in.post(url, {"kind": "http", "config": "[]"}).json()["error"] == (
        "テストする項目がありません。"
    )
    foreign = reverse("agents:tools-test", args=[foreign_agent.pk])
    assert logged_in.post(foreign, {"kind": "http", "config": "[]"}).status_code == 404
