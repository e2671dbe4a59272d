"""The operators' pages in headless Chromium against the service under Daphne.

Skipped only when no Chromium (or Playwright) is available; the live monitor test
also needs REDIS_URL, because its broadcasts are made in another process. The real call
path (a simulated call through the emulators, a handoff that reaches the Twilio
emulator) is test_browser_call.py's. Screenshots of every page go to
artifacts/screenshots/ (printed; `pytest -s` shows the paths).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.browser import (
    SCREENSHOT_DIR,
    ServiceProcess,
    chromium_context,
    chromium_missing_reason,
    free_port,
    login,
    screenshot,
)

MISSING = chromium_missing_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(MISSING is not None, reason=f"browser tests: {MISSING}"),
]
needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason=(
        "monitor browser test needs a Redis channel layer (set REDIS_URL) so that "
        "broadcasts made outside the Daphne process reach its sockets"
    ),
)

AI_BLUE = "rgb(29, 95, 209)"
CALLER_GREEN = "rgb(46, 125, 50)"

SEED_PAST_CALLS = """
import io, random, wave
from datetime import timedelta
from django.core.files.base import ContentFile
from django.utils import timezone
from agents.models import AgentProfile
from calls.models import CallEvent, CallSession, Recording, TranscriptEntry
agent = AgentProfile.objects.get(organization__name="Demo", name="受付デモ")
now = timezone.now()
rng = random.Random(5)
first = None
for i in range(8):
    call = CallSession.objects.create(
        organization=agent.organization, agent=agent, direction="inbound",
        from_number="+8190123400%02d" % i, to_number="+815012345678",
        status="completed", answered_at=now - timedelta(minutes=20 * i + 5),
        ended_at=now - timedelta(minutes=20 * i), cost_usd="0.0312",
        turn_latencies_ms=[rng.randint(350, 1900) for _ in range(6)],
        handoff_trigger="operator" if i % 3 == 0 else "",
    )
    first = first or call
TranscriptEntry.objects.create(call=first, speaker="ai", text="お電話ありがとうございます。デモ商事でございます。", offset_ms=600)
TranscriptEntry.objects.create(call=first, speaker="customer", text="営業時間を教えてください。", offset_ms=4200)
TranscriptEntry.objects.create(call=first, speaker="ai", text="平日の9時から18時まででございます。", offset_ms=6900, interrupted=True)
CallEvent.objects.create(call=first, type="status", payload={"from": "ai-responding", "to": "completed", "reason": "hangup"})
audio = io.BytesIO()
with wave.open(audio, "wb") as w:  # 1.5 s of a 400 Hz square wave, 8 kHz mono
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    w.writeframes(b"".join((5000 if i % 20 < 10 else -5000).to_bytes(2, "little", signed=True) for i in range(12000)))
rec = Recording(call=first, source="bridge", duration_s=2)
rec.file.save("demo.wav", ContentFile(audio.getvalue()))
first.outcome = "info-given"
first.save()
print(first.pk, rec.pk)
"""

NEW_LIVE_CALL = """
from agents.models import AgentProfile
from calls.models import CallSession
from calls.services import call_session_transition
agent = AgentProfile.objects.get(organization__name="Demo", name="受付デモ")
call = CallSession.objects.create(
    organization=agent.organization, agent=agent, direction="inbound",
    from_number="+819087654321", to_number="+815012345678",
)
call_session_transition(call=call, to="ai-responding")
print(call.pk)
"""


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    # Twilio is unreachable here (a closed port): a handoff is refused for real.
    closed = f"http://127.0.0.1:{free_port()}"
    with ServiceProcess(env={"TWILIO_API_BASE_URL": closed}) as svc:
        print(f"\nservice: {svc.base_url}  screenshots: {SCREENSHOT_DIR}")
        yield svc


@pytest.fixture
def page(service: ServiceProcess) -> Iterator[Any]:
    with chromium_context() as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        assert not errors, f"JavaScript errors: {errors}\n{service.log()}"


def test_login_dashboard_calls_and_language(service: ServiceProcess, page: Any) -> None:
    """Log in as demo, see the live dashboard with figures and charts, list, detail."""
    from playwright.sync_api import expect

    past_call, recording = service.django(SEED_PAST_CALLS).split()
    page.goto(f"{service.base_url}/")
    expect(page).to_have_url(f"{service.base_url}/accounts/login/?next=/")
    screenshot(page, "01-login")
    login(page, service.base_url)

    expect(page.get_by_role("heading", name="ダッシュボード")).to_be_visible()
    expect(page.get_by_test_id("demo-banner")).to_contain_text("デモモード")
    expect(page.locator("[data-socket-state]")).to_have_attribute("data-state", "open")
    expect(page.locator('[data-figure="calls"]')).to_have_text("8")
    # Chart.js (vendored, no CDN) drew the three charts.
    assert page.evaluate("() => typeof window.Chart") == "function"
    for chart in ("chart-per-hour", "chart-latency", "chart-outcome"):
        assert page.evaluate(f"() => !!Chart.getChart('{chart}')"), chart
    screenshot(page, "02-dashboard")

    page.get_by_role("link", name="通話", exact=True).click()
    expect(page.get_by_role("heading", name="通話一覧")).to_be_visible()
    page.get_by_label("状態").select_option("completed")
    page.get_by_role("button", name="絞り込む").click()
    expect(page.locator("tbody tr")).to_have_count(8)
    screenshot(page, "03-call-list")

    page.get_by_role("link", name=f"#{past_call}", exact=True).click()
    expect(page.locator(".utterance.speaker-ai").first).to_contain_text("デモ商事")
    audio = page.locator(".recording audio")
    expect(audio).to_have_attribute(
        "src", f"/calls/{past_call}/recordings/{recording}/audio"
    )
    # Playable: Chromium loads the WAV through the view and knows its length.
    duration = audio.evaluate(
        """el => new Promise((resolve, reject) => {
             el.addEventListener("canplaythrough", () => resolve(el.duration), {once: true});
             el.addEventListener("error", () => reject(new Error("audio error " +
               (el.error && el.error.code))), {once: true});
             el.preload = "auto";
             el.load();
           })"""
    )
    assert duration == pytest.approx(1.5, abs=0.05)
    expect(page.get_by_test_id("outcome")).to_contain_text("info-given")
    expect(page.get_by_role("button", name="切断する")).to_have_count(0)
    screenshot(page, "04-call-detail")

    page.get_by_label("表示言語").select_option("en")
    expect(page.get_by_role("heading", name="Call #")).to_be_visible()
    expect(page.get_by_role("link", name="Dashboard")).to_be_visible()
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    screenshot(page, "05-dashboard-english")
    page.get_by_label("Display language").select_option("ja")
    expect(page.get_by_role("heading", name="ダッシュボード")).to_be_visible()


class ControlListener:
    """Joins the call's control group over Redis, as the bridge would, in a thread."""

    def __init__(self, redis_url: str, group: str) -> None:
        self.redis_url, self.group = redis_url, group
        self.joined = threading.Event()
        self.message: dict[str, Any] | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._listen()))

    async def _listen(self) -> None:
        from channels_redis.core import RedisChannelLayer

        layer = RedisChannelLayer(hosts=[self.redis_url])
        channel = await layer.new_channel()
        await layer.group_add(self.group, channel)
        self.joined.set()
        try:
            self.message = await asyncio.wait_for(layer.receive(channel), 10)
        finally:
            await layer.group_discard(self.group, channel)
            await layer.close_pools()

    def __enter__(self) -> ControlListener:
        self.thread.start()
        assert self.joined.wait(10), "could not join the control group"
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(15)


@needs_redis
def test_monitor_shows_live_transcript_and_hangs_up(
    service: ServiceProcess, page: Any
) -> None:
    """A call appears live on the dashboard; its monitor types partial text, shows
    each saved line within 1 s in its speaker's colour, follows the status, and
    the hang-up button reaches the call's control group across processes."""
    from playwright.sync_api import expect

    login(page, service.base_url)
    expect(page.locator("[data-socket-state]")).to_have_attribute("data-state", "open")
    call_id = service.django(NEW_LIVE_CALL)
    row = page.locator(f'tr[data-call-id="{call_id}"]')
    expect(row).to_be_visible(timeout=3000)
    expect(row.locator("[data-status]")).to_have_text("AI対応中")

    row.get_by_role("link").click()
    expect(page.locator("[data-socket-state]")).to_have_attribute("data-state", "open")
    service.django(
        "from asgiref.sync import async_to_sync\n"
        "from channels.layers import get_channel_layer\n"
        "for delta in ('お電話', 'ありがとう'):\n"
        "    async_to_sync(get_channel_layer().group_send)("
        f"'monitor.call.{call_id}', {{'type': 'transcript.partial', 'call_id': {call_id},"
        " 'speaker': 'ai', 'item_id': 'item_ai_1', 'delta': delta})\n"
    )
    partial = page.locator('li.partial[data-item-id="item_ai_1"]')
    expect(partial.locator(".text")).to_have_text("お電話ありがとう", timeout=1000)

    service.django(
        "from calls.models import CallSession\n"
        "from calls.services import transcript_entry_add\n"
        f"call = CallSession.objects.get(pk={call_id})\n"
        "transcript_entry_add(call=call, speaker='ai', text='お電話ありがとうございます。"
        "デモ商事でございます。', item_id='item_ai_1', offset_ms=700)\n"
        "transcript_entry_add(call=call, speaker='customer', text='予約をお願いします。',"
        " item_id='item_c_1', offset_ms=5200)\n"
    )
    ai_line = page.locator('li.speaker-ai[data-item-id="item_ai_1"]')
    caller_line = page.locator("li.speaker-customer", has_text="予約をお願いします。")
    # Saved by the time the command returned: the line must be there within 1 s.
    expect(caller_line).to_be_visible(timeout=1000)
    expect(ai_line.locator(".text")).to_have_text(
        "お電話ありがとうございます。デモ商事でございます。"
    )
    expect(page.locator("li.partial")).to_have_count(0)
    assert ai_line.evaluate("el => getComputedStyle(el).borderLeftColor") == AI_BLUE
    assert caller_line.evaluate("el => getComputedStyle(el).borderLeftColor") == (
        CALLER_GREEN
    )

    # A refused handoff (Twilio unreachable: the human's leg cannot be dialled) shows
    # why, and the call stays with the AI. The handoff that reaches Twilio is
    # test_browser_call.py's.
    page.get_by_role("button", name="担当者に引き継ぐ").click()
    result = page.locator("[data-control-result]")
    expect(result).to_have_text(
        "担当者に引き継げませんでした: 電話回線 (Twilio) に接続できませんでした。"
        "しばらくしてからもう一度お試しください。"
    )
    # The API's own (technical) message is the tooltip.
    expect(result).to_have_attribute("title", re.compile("Twilio could not be reached"))
    expect(result).to_have_attribute("role", "alert")
    expect(page.get_by_test_id("call-status")).to_have_text("AI対応中")
    expect(page.locator("#timeline")).to_contain_text("handoff-failed")
    expect(page.get_by_role("button", name="担当者に引き継ぐ")).to_be_enabled()
    page.get_by_label("AIへの指示").fill("料金は担当者から折り返すと伝えてください")
    screenshot(page, "06-monitor-live")

    with ControlListener(service.redis_url, f"call.{call_id}") as listener:
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="切断する").click()
        expect(page.locator("[data-control-result]")).to_have_text(
            "切断を指示しました。"
        )
    assert listener.message == {"type": "call.control", "command": "hangup"}

    # The bridge ends the call; the page follows the status.
    service.django(
        "from calls.models import CallSession\n"
        "from calls.services import call_session_end\n"
        f"call_session_end(call=CallSession.objects.get(pk={call_id}), reason='operator hangup')\n"
    )
    expect(page.get_by_test_id("call-status")).to_have_text("完了")
    expect(page.locator("[data-ended-notice]")).to_be_visible()
    expect(page.get_by_role("button", name="切断する")).to_be_disabled()
    expect(page.locator("#timeline")).to_contain_text("ai-responding → completed")
    screenshot(page, "07-monitor-ended")

    page.set_viewport_size({"width": 820, "height": 1180})  # a tablet
    page.reload()
    expect(page.locator(".utterance")).to_have_count(2)
    screenshot(page, "08-call-detail-tablet")


def test_monitor_catches_up_on_what_it_missed_while_reconnecting(
    service: ServiceProcess, page: Any
) -> None:
    """A line saved and a status changed while the monitor's socket was away show
    when it is back: the socket asks `?after=<newest line shown>` and gets a
    call.snapshot. No Redis needed: nothing here can arrive live."""
    from playwright.sync_api import expect

    routes: list[Any] = []  # the page's sockets, in the order it opened them
    servers: list[Any] = []

    def hold_second_socket(ws: Any) -> None:
        routes.append(ws)
        if len(routes) == 1:
            servers.append(ws.connect_to_server())

    page.route_web_socket(re.compile(r"/ws/calls/\d+/"), hold_second_socket)
    call_id, first_id = service.django(
        NEW_LIVE_CALL.replace("print(call.pk)", "")
        + "from calls.services import transcript_entry_add\n"
        "entry = transcript_entry_add(call=call, speaker='ai', text='一行目です。')\n"
        "print(call.pk, entry.pk)\n"
    ).split()
    login(page, service.base_url)
    page.goto(f"{service.base_url}/calls/{call_id}/")
    state = page.locator("[data-socket-state]")
    expect(state).to_have_attribute("data-state", "open")
    expect(page.locator(".utterance")).to_have_count(1)
    assert routes[0].url.endswith(f"/ws/calls/{call_id}/?after={first_id}")

    # The socket drops; the page reconnects to a socket held back from the server.
    servers[0].close()
    routes[0].close()
    while len(routes) < 2:
        page.wait_for_timeout(50)
    expect(state).to_have_attribute("data-state", "open")
    assert routes[1].url.endswith(f"/ws/calls/{call_id}/?after={first_id}")
    service.django(
        "from calls.models import CallSession\n"
        "from calls.services import call_session_end, transcript_entry_add\n"
        f"call = CallSession.objects.get(pk={call_id})\n"
        "transcript_entry_add(call=call, speaker='customer', text='二行目です。',"
        " offset_ms=3000)\n"
        "call_session_end(call=call, reason='hangup')\n"
    )
    page.wait_for_timeout(300)
    expect(page.locator(".utterance")).to_have_count(1)  # nothing arrives live

    routes[1].connect_to_server()
    caller_line = page.locator("li.speaker-customer", has_text="二行目です。")
    expect(caller_line).to_be_visible()
    expect(page.locator(".utterance")).to_have_count(2)
    expect(page.get_by_test_id("call-status")).to_have_text("完了")
    expect(page.locator("[data-ended-notice]")).to_be_visible()
    expect(page.get_by_role("button", name="切断する")).to_be_disabled()


def test_dashboard_catches_up_on_calls_started_while_reconnecting(
    service: ServiceProcess, page: Any
) -> None:
    """A call that started while the dashboard's socket was away is in the table once
    the socket is back (the page fetches the table on every open)."""
    from playwright.sync_api import expect

    servers: list[Any] = []
    refused = [0]
    reachable = [True]

    def route(ws: Any) -> None:
        if reachable[0]:
            servers.append(ws.connect_to_server())
        else:
            refused[0] += 1
            ws.close()

    page.route_web_socket(re.compile(r"/ws/dashboard/"), route)
    login(page, service.base_url)
    state = page.locator("[data-socket-state]")
    expect(state).to_have_attribute("data-state", "open")

    reachable[0] = False
    servers[0].close()
    call_id = service.django(NEW_LIVE_CALL)
    while not refused[0]:  # the page tried while the server was out of reach
        page.wait_for_timeout(50)
    row = page.locator(f'tr[data-call-id="{call_id}"]')
    expect(row).to_have_count(0)

    reachable[0] = True
    expect(row).to_be_visible(timeout=10_000)
    expect(row.locator("[data-status]")).to_have_text("AI対応中")
    expect(state).to_have_attribute("data-state", "open")


def test_agent_settings_edit_preview_and_save(
    service: ServiceProcess, page: Any
) -> None:
    """Edit voice, speed and instructions: unknown variable refused, valid one saved."""
    from playwright.sync_api import expect

    login(page, service.base_url)
    page.get_by_role("link", name="エージェント", exact=True).click()
    page.get_by_role("link", name="受付デモ", exact=True).click()
    expect(
        page.get_by_role("heading", name="エージェント設定: 受付デモ")
    ).to_be_visible()

    page.get_by_label("音声", exact=True).select_option("cedar")
    speed = page.get_by_label("話す速さ")
    speed.focus()
    for _ in range(5):  # keyboard use: 1.00 → 1.25 in steps of 0.05
        speed.press("ArrowRight")
    expect(page.locator('output[data-range-output="id_speed"]')).to_have_text("1.25")

    eagerness = page.get_by_label("応答の積極性 (eagerness)")
    threshold = page.get_by_label("しきい値")
    expect(eagerness).to_be_hidden()
    page.get_by_label("ターン検出", exact=True).select_option("semantic_vad")
    expect(eagerness).to_be_visible()
    expect(threshold).to_be_hidden()
    page.get_by_label("ターン検出", exact=True).select_option("server_vad")

    instructions = page.get_by_label("指示 (instructions)")
    instructions.fill("こんにちは、{{nickname}}さん。")
    preview_error = page.locator('[data-preview-error-for="id_instructions_template"]')
    expect(preview_error).to_contain_text("{{nickname}}")
    page.get_by_role("button", name="保存").click()
    field_error = page.locator('[data-field-error="instructions_template"]')
    expect(field_error).to_contain_text("{{nickname}}")
    expect(page.get_by_test_id("form-errors")).to_be_visible()
    field_error.scroll_into_view_if_needed()
    screenshot(page, "09-agent-unknown-variable", full_page=False)

    instructions.fill("{{company_name}}の{{representative_name}}です。")
    instructions.press("End")
    page.get_by_role("button", name="{{customer_name}}").click()
    expect(instructions).to_have_value(
        "{{company_name}}の{{representative_name}}です。{{customer_name}}"
    )
    preview = page.locator('[data-preview-for="id_instructions_template"]')
    expect(preview).to_have_text("デモ商事のAI受付です。山田様")
    expect(preview_error).to_be_hidden()
    expect(field_error).to_be_hidden()  # the server's message was about the old text
    preview.scroll_into_view_if_needed()
    screenshot(page, "10-agent-preview", full_page=False)

    page.get_by_role("button", name="保存").click()
    expect(page.get_by_text("設定を保存しました。")).to_be_visible()
    saved = service.django(
        "from agents.models import AgentProfile\n"
        "a = AgentProfile.objects.get(name='受付デモ')\n"
        "print(a.voice, a.speed, a.instructions_template, sep='|')"
    )
    assert saved == (
        "cedar|1.25|{{company_name}}の{{representative_name}}です。{{customer_name}}"
    )
    # The viewport (the top, with the message): in a full-page shot the sticky save
    # bar would be drawn over the middle of the form.
    screenshot(page, "11-agent-saved", full_page=False)

    page.get_by_text("既存設定から生成", exact=True).click()
    page.get_by_label("冒頭のあいさつ").fill("お忙しいところ失礼いたします。")
    page.get_by_label("締めくくり").fill("資料をお送りしてもよろしいでしょうか。")
    page.get_by_role("button", name="変換結果をプレビュー").click()
    expect(page.get_by_test_id("after")).to_contain_text(
        "お忙しいところ失礼いたします。"
    )
    expect(page.get_by_test_id("before")).to_contain_text("{{customer_name}}")
    screenshot(page, "12-legacy-preview")
    page.get_by_role("button", name="適用する").click()
    expect(page.get_by_text("既存設定から生成した指示を適用しました。")).to_be_visible()
    expect(page.get_by_label("指示 (instructions)")).to_contain_text(
        "お忙しいところ失礼いたします。"
    )
