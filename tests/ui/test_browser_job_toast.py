"""The job toast (F-77) in headless Chromium against the service under Daphne.

A job card is made in another process (`manage.py shell`, as a Celery worker makes
it after a call's summary): the dashboard and the jobs page show a toast without a
reload, and the jobs page's list gains the row. The service and the shell share a
Redis channel layer (REDIS_URL, else a private `redis-server`, as the campaign
browser test does). Skipped when no Chromium, Playwright or Redis is there.
"""

from __future__ import annotations

import os
import shutil
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
from tests.ui.test_browser_campaign import redis_url  # noqa: F401 (a fixture)

MISSING = chromium_missing_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(MISSING is not None, reason=f"browser tests: {MISSING}"),
    pytest.mark.skipif(
        not (os.environ.get("REDIS_URL") or shutil.which("redis-server")),
        reason="the toast test needs REDIS_URL or a redis-server to start",
    ),
]

JOB_FROM_A_CALL = """
from agents.models import Organization
from calls.models import CallSession
from jobs.services import job_create_from_call
org = Organization.objects.get(name="Demo")
call = CallSession.objects.create(
    organization=org, direction="inbound", status="completed",
    from_number="+819011112222", to_number="+815012345678",
    summary="お客様はエアコンの修理を希望。", extraction_status="done",
    extraction={{"job_required": True, "job_title": "{title}"}},
)
print(job_create_from_call(call=call).pk)
"""


@pytest.fixture(scope="module")
def service(redis_url: str) -> Iterator[ServiceProcess]:  # noqa: F811
    with ServiceProcess(env={"REDIS_URL": redis_url}) as svc:
        yield svc


@pytest.fixture
def page(service: ServiceProcess) -> Iterator[Any]:
    with chromium_context() as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        assert not errors, f"JavaScript errors: {errors}\n{service.log()}"


def test_a_new_job_shows_a_toast_on_the_dashboard_and_the_jobs_page(
    service: ServiceProcess, page: Any
) -> None:
    from playwright.sync_api import expect

    login(page, service.base_url)
    page.goto(f"{service.base_url}/")
    toasts = page.locator("[data-job-toasts]")
    expect(toasts).to_have_attribute("data-socket", "open")
    pk = service.django(JOB_FROM_A_CALL.format(title="エアコン修理")).strip()
    toast = page.get_by_test_id("job-toast")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("新しい案件")
    expect(toast.get_by_role("link", name="エアコン修理")).to_have_attribute(
        "href", f"/jobs/{pk}/"
    )
    screenshot(page, "70-job-toast-dashboard")

    page.get_by_role("link", name="案件", exact=True).click()
    expect(page.get_by_role("heading", name="案件")).to_be_visible()
    expect(page.locator("[data-socket-state]")).to_have_attribute("data-state", "open")
    page.evaluate("() => { window.__sameDocument = true; }")
    pk2 = service.django(JOB_FROM_A_CALL.format(title="給湯器の点検")).strip()
    expect(page.locator(f'[data-job-toasts] [data-job-id="{pk2}"]')).to_be_visible()
    expect(page.locator(f'#jobs tr[data-job-id="{pk2}"]')).to_contain_text(
        "給湯器の点検"
    )
    assert page.evaluate("() => window.__sameDocument") is True
    screenshot(page, "71-job-toast-jobs-page")

    # The toast's link opens the card; accepting it is one click.
    page.locator(f'[data-job-toasts] [data-job-id="{pk2}"] a').click()
    expect(page).to_have_url(f"{service.base_url}/jobs/{pk2}/")
    page.get_by_role("button", name="受け付ける").click()
    expect(page.get_by_test_id("job-status")).to_have_text("受付済み")


@pytest.fixture(scope="module")
def lone_service() -> Iterator[ServiceProcess]:
    """The service with its in-memory channel layer, as `make run` has it: a job a
    worker (here a shell) makes cannot reach its sockets."""
    with ServiceProcess(env={"REDIS_URL": ""}) as svc:
        yield svc


def test_without_a_shared_layer_the_toast_still_comes_by_polling(
    lone_service: ServiceProcess,
) -> None:
    from playwright.sync_api import expect

    with chromium_context() as context:
        page = context.new_page()
        login(page, lone_service.base_url)
        page.goto(f"{lone_service.base_url}/")
        expect(page.locator("[data-job-toasts]")).to_have_attribute(
            "data-socket", "open"
        )
        pk = lone_service.django(JOB_FROM_A_CALL.format(title="屋根の点検")).strip()
        toast = page.locator(f'[data-job-toasts] [data-job-id="{pk}"]')
        expect(toast).to_be_visible(timeout=10_000)
        expect(toast).to_contain_text("屋根の点検")
        expect(page.get_by_test_id("job-toast")).to_have_count(1)  # once, not twice
