"""The settings page's "接続テスト" button for HTTP tools in headless Chromium (F-78).

The service runs under Daphne with private URLs allowed; the tool's endpoint is a
loopback server in this process that verifies the signature with the documented recipe.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.realtime.tool_receiver import ToolServer
from tests.ui.browser import (
    ServiceProcess,
    chromium_context,
    chromium_missing_reason,
    login,
    screenshot,
)

MISSING = chromium_missing_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(MISSING is not None, reason=f"browser tests: {MISSING}"),
]

SECRET = "browser-tool-secret-0123"
ADD_TOOL = """
from agents.models import AgentProfile
agent = AgentProfile.objects.get(organization__name="Demo", name="受付デモ")
agent.http_tools = [{
    "name": "lookup_order", "description": "注文を番号で調べる",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    "url": %r, "secret": %r, "timeout_s": 3.0,
}]
agent.save()
print(agent.pk)
"""


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess(env={"ALLOW_PRIVATE_URLS": "true"}) as svc:
        yield svc


@pytest.fixture
def tool_server() -> Iterator[ToolServer]:
    server = ToolServer(secret=SECRET, reply=b'{"ok": true, "pong": 1}').start()
    yield server
    server.stop()


@pytest.fixture
def page(service: ServiceProcess) -> Iterator[Any]:
    with chromium_context() as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        assert not errors, f"JavaScript errors: {errors}\n{service.log()}"


def test_http_tool_test_button_reports_the_signed_answer(
    service: ServiceProcess, page: Any, tool_server: ToolServer
) -> None:
    from playwright.sync_api import expect

    agent_id = service.django(ADD_TOOL % (tool_server.url, SECRET))
    login(page, service.base_url)
    page.goto(f"{service.base_url}/agents/{agent_id}/")
    area = page.locator("#id_http_tools")
    shown = json.loads(area.input_value())
    assert shown[0]["secret"] == "********"
    assert SECRET not in page.content()
    expect(page.locator("#enabled-tools tr[data-tool-kind=http]")).to_contain_text(
        "lookup_order"
    )

    page.get_by_test_id("tool-test-http_tools").click()
    result = page.get_by_test_id("tool-test-result-http_tools")
    expect(result).to_contain_text("lookup_order: 接続できました: HTTP 200")
    assert [c.verified for c in tool_server.calls] == [True]
    assert tool_server.calls[0].payload["test"] is True
    screenshot(page, "40-agent-http-tool-test")

    # The answer in words when the endpoint fails.
    tool_server.status = 500
    page.get_by_test_id("tool-test-http_tools").click()
    expect(result).to_contain_text(
        "lookup_order: 失敗しました: the tool answered HTTP 500"
    )

    # Add an entry with the button, remove it with its own button.
    page.get_by_role("button", name="項目を追加").nth(1).click()
    assert len(json.loads(area.input_value())) == 2
    page.locator("[data-tool-config=http] .tool-entry button").nth(1).click()
    assert len(json.loads(area.input_value())) == 1
