"""The monitor's "do not call again" button in headless Chromium (F-65)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

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

NEW_LIVE_CALL = """
from agents.models import AgentProfile
from calls.models import CallSession
from calls.services import call_session_transition
agent = AgentProfile.objects.get(organization__name="Demo", name="受付デモ")
call = CallSession.objects.create(
    organization=agent.organization, agent=agent, direction="outbound",
    from_number="+815012345678", to_number="+819087654321",
)
call_session_transition(call=call, to="ai-responding")
print(call.pk)
"""


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess() as svc:
        yield svc


@pytest.fixture
def page(service: ServiceProcess) -> Iterator[Any]:
    with chromium_context() as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        assert not errors, f"JavaScript errors: {errors}\n{service.log()}"


def test_operator_stops_future_calls_from_the_monitor(
    service: ServiceProcess, page: Any
) -> None:
    """Confirmed, the button lists the dialled number (source operator) and says so."""
    from playwright.sync_api import expect

    login(page, service.base_url)
    call_id = service.django(NEW_LIVE_CALL)
    page.goto(f"{service.base_url}/calls/{call_id}/")
    button = page.get_by_role("button", name="今後の電話を停止")
    expect(button).to_be_enabled()
    page.once("dialog", lambda dialog: dialog.accept())
    button.click()
    expect(page.locator("[data-control-result]")).to_have_text(
        "090****4321 を今後の発信停止リストに登録しました。"
    )
    rows = service.query("SELECT phone, source, call_id FROM calls_donotcall")
    assert rows == [("+819087654321", "operator", int(call_id))]
    screenshot(page, "30-monitor-do-not-call")
