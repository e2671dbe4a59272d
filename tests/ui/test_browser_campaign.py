"""The campaign page in headless Chromium against the service under Daphne (F-48).

The progress bar and counts move without a reload when contacts change in the
database and `campaign_broadcast` runs, as the dialer does. That broadcast is made
in another process (`manage.py shell`), so the service and the shell share a Redis
channel layer: REDIS_URL when set, else a private `redis-server` this module starts
on a free port (and stops). Skipped when no Chromium, Playwright or Redis is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.browser import (
    ServiceProcess,
    chromium_context,
    chromium_missing_reason,
    free_port,
    login,
    screenshot,
    wait_for,
)

MISSING = chromium_missing_reason()
REDIS_SERVER = shutil.which("redis-server")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(MISSING is not None, reason=f"browser tests: {MISSING}"),
    pytest.mark.skipif(
        not (os.environ.get("REDIS_URL") or REDIS_SERVER),
        reason="campaign browser test needs REDIS_URL or a redis-server to start",
    ),
]

NEW_CAMPAIGN = """
from agents.models import AgentProfile
from calls.campaigns.models import Campaign, Contact
agent = AgentProfile.objects.filter(organization__name="Demo").first()
campaign = Campaign.objects.create(
    organization=agent.organization, agent=agent, name="春の光回線ご案内",
    from_number="+815012345678", business_name="デモ商事", caller_name="山田",
    product="光回線", status="running",
)
for i in range(4):
    Contact.objects.create(campaign=campaign, phone="+8190123456%02d" % i, name="顧客%d" % i)
print(campaign.pk)
"""

CONTACTS_DONE = """
from calls.campaigns.models import Contact
from calls.campaigns.services import campaign_broadcast
ids = list(Contact.objects.filter(campaign_id={pk}).order_by("pk").values_list("pk", flat=True))
Contact.objects.filter(pk__in=ids[:{n}]).update(status="done", outcome="appointment")
campaign_broadcast(campaign_id={pk})
"""

PAUSE_ELSEWHERE = """
from calls.campaigns.models import Campaign
from calls.campaigns.services import campaign_pause
campaign_pause(campaign=Campaign.objects.get(pk={pk}))
"""


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    assert REDIS_SERVER
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="redis-")
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import socket

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for("redis-server", listening, timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def service(redis_url: str) -> Iterator[ServiceProcess]:
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


def test_progress_moves_live_and_buttons_pause_resume(
    service: ServiceProcess, page: Any
) -> None:
    """Contacts finishing move the bar without a reload; pause and resume work."""
    from playwright.sync_api import expect

    pk = service.django(NEW_CAMPAIGN)
    login(page, service.base_url)
    page.get_by_role("link", name="一斉コール").click()
    expect(page.get_by_role("heading", name="一斉コール")).to_be_visible()
    page.get_by_role("link", name="春の光回線ご案内").click()
    expect(page).to_have_url(f"{service.base_url}/campaigns/{pk}/")
    bar = page.locator("#campaign-progress")
    expect(page.locator("[data-socket-state]")).to_have_attribute("data-state", "open")
    expect(bar).to_have_attribute("value", "0")
    expect(page.locator("[data-progress-text]")).to_have_text("0%")
    # Anything the page keeps in memory is lost on a reload: this proves there is none.
    page.evaluate("() => { window.__sameDocument = true; }")

    service.django(CONTACTS_DONE.format(pk=pk, n=2))
    started = time.monotonic()
    expect(page.locator("[data-progress-text]")).to_have_text("50%")
    assert (
        page.evaluate("() => document.getElementById('campaign-progress').value") == 50
    )
    print(f"progress shown {time.monotonic() - started:.2f} s after the broadcast")
    expect(page.locator('[data-count="done"]')).to_have_text("2")
    expect(page.locator('[data-count="pending"]')).to_have_text("2")
    expect(page.locator('#outcomes [data-outcome="appointment"]')).to_contain_text("2")
    # The contacts table follows (fetched again after the message).
    expect(page.locator("#contacts .contact-status-done")).to_have_count(2)

    service.django(CONTACTS_DONE.format(pk=pk, n=3))
    expect(page.locator("[data-progress-text]")).to_have_text("75%")
    assert page.evaluate("() => window.__sameDocument") is True
    screenshot(page, "10-campaign-live-progress")

    # Pause and resume with the page's buttons (POST + CSRF, back to the page).
    pause = page.get_by_role("button", name="一時停止")
    resume = page.get_by_role("button", name="再開")
    expect(resume).to_be_hidden()
    pause.click()
    expect(page.locator(".message")).to_contain_text("一時停止中")
    expect(page.locator("[data-campaign-status]")).to_have_text("一時停止中")
    expect(pause).to_be_hidden()
    resume.click()
    expect(page.locator("[data-campaign-status]")).to_have_text("実行中")
    expect(page.get_by_role("button", name="一時停止")).to_be_visible()
    rows = service.query("SELECT status FROM calls_campaign WHERE id = ?", int(pk))
    assert rows == [("running",)]

    # A pause made elsewhere (the API, another operator) shows without a reload.
    page.evaluate("() => { window.__sameDocument = true; }")
    expect(page.locator("[data-socket-state]")).to_have_attribute("data-state", "open")
    service.django(PAUSE_ELSEWHERE.format(pk=pk))
    expect(page.locator("[data-campaign-status]")).to_have_text("一時停止中")
    expect(page.get_by_role("button", name="再開")).to_be_visible()
    assert page.evaluate("() => window.__sameDocument") is True
    screenshot(page, "11-campaign-paused")


def test_start_refused_names_missing_disclosure(
    service: ServiceProcess, page: Any
) -> None:
    """A draft whose opening lacks the caller's name cannot start; the page says so."""
    from playwright.sync_api import expect

    pk = service.django(
        NEW_CAMPAIGN.replace('status="running"', 'status="draft"').replace(
            'caller_name="山田"', 'caller_name=""'
        )
    )
    login(page, service.base_url)
    page.goto(f"{service.base_url}/campaigns/{pk}/")
    page.get_by_role("button", name="開始").click()
    expect(page.locator(".message-error")).to_contain_text("担当者名")
    expect(page.locator("[data-campaign-status]")).to_have_text("下書き")
    screenshot(page, "12-campaign-disclosure-refused")

    # Import: every rejected line is listed with why; the accepted ones join the table.
    csv_text = "phone,name\n090-2222-3333,佐藤\nabc,鈴木\n090-2222-3333,佐藤\n"
    page.get_by_label("連絡先CSV").set_input_files(
        files=[
            {
                "name": "contacts.csv",
                "mimeType": "text/csv",
                "buffer": csv_text.encode("cp932"),
            }
        ]
    )
    page.get_by_role("button", name="取り込む").click()
    report = page.locator("[data-import-report]")
    expect(report).to_contain_text("1 件を取り込みました。2 件は取り込めませんでした。")
    expect(report.locator("[data-rejected-line]")).to_have_count(2)
    expect(report.locator('[data-rejected-line="3"]')).to_contain_text("番号が不正")
    expect(report.locator('[data-rejected-line="4"]')).to_contain_text("重複")
    expect(page.locator("#contacts")).to_contain_text("+819022223333")
    screenshot(page, "14-campaign-import-report")

    # The form shows the default opening; filling the caller's name lets it start.
    page.get_by_role("link", name="編集").click()
    expect(page.get_by_label("冒頭の名乗り")).to_have_value(
        "{{business_name}}の{{caller_name}}と申します。"
        "{{product}}のご案内でお電話いたしました。"
    )
    screenshot(page, "13-campaign-form")
    page.get_by_label("担当者名").fill("山田")
    page.get_by_role("button", name="保存").click()
    page.get_by_role("button", name="開始").click()
    expect(page.locator("[data-campaign-status]")).to_have_text("実行中")
