"""The supervisor console (F-75) in Debian's Chromium, on a simulated phone call.

The service runs under its ASGI server (a subprocess, its own SQLite) against a fake
OpenAI Realtime server and the Twilio emulator, both in this process (a thread with
its own loop), so the test can see what the model received and what the simulated
caller heard. The caller speaks every few seconds (1.2 s of speech, 2.5 s quiet),
whoever holds the call. The supervisor's microphone is Chromium's fake device
playing a 16-bit PCM WAV in a loop (1 s bursts of a 300 Hz tone: a 24-bit or μ-law file
would play silence without an error, so the tests check the energy that arrives).
WebRTC stays on loopback: --allow-loopback-in-peer-connection in Chromium,
WEBRTC_HOST_ADDRESSES=127.0.0.1 for aiortc.

Covered: listening (the page's AnalyserNode meters measure the caller's and the AI's
audio), barge and take over (the caller receives media frames with energy while the
AI's responses stop), hand back (the AI answers again and its note reaches the
model), an operator without the permission (no buttons; the offer endpoint answers
403 and nothing starts), two supervisors at once, and a supervisor's page closing
mid-take-over (the call is the AI's again after SUPERVISOR_GRACE_S).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import time
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from realtime.emulators import scenarios
from realtime.emulators.audio import decode_ulaw
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.run import Options, build_twilio
from tests.ui.browser import (
    CHROMIUM_ARGS,
    ServiceProcess,
    chromium_context,
    chromium_missing_reason,
    find_chromium,
    free_port,
    login,
    screenshot,
    wait_for,
)

MISSING = chromium_missing_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(MISSING is not None, reason=f"browser tests: {MISSING}"),
]

API_KEY = "sk-ui-supervise"
ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "supervise-emulator-token"
GRACE_S = 2
LISTEN = re.compile("聴く|Listen")
STOP_LISTENING = re.compile("聴くのをやめる|Stop listening")
WHISPER = re.compile("ささやく|Whisper")
BARGE = re.compile("割り込む|Barge")
END_BARGE = re.compile("割り込みを終える|End barge")
TAKE_OVER = re.compile("代わる|Take over")
HAND_BACK = re.compile("AIに戻す|Hand back")
PASSWORDS = {"demo": "demo", "sup2": "pw-sup2", "plain": "pw-plain"}
PLAIN = ("plain", "pw-plain")
# The caller: hears the greeting, then speaks every 3.7 s for about two minutes.
CALLER_SCRIPT: list[dict[str, Any]] = [
    {"wait_audio": True, "ms": 200, "timeout_s": 20},
    {"wait_quiet_ms": 600, "timeout_s": 30},
    *[step for _ in range(32) for step in ({"pause_ms": 2500}, {"speak_ms": 1200})],
    {"pause_ms": 60_000},
]


@pytest.fixture(autouse=True)
def quiet_polling() -> Iterator[None]:
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


class Emulators:
    """The fake model and the Twilio emulator on a loop of their own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.fake = FakeRealtimeServer(scenarios.DEMO, api_key=API_KEY)
        self.twilio = build_twilio(
            Options(
                host="127.0.0.1",
                realtime_port=0,
                twilio_port=free_port(),
                account_sid=ACCOUNT_SID,
                auth_token=AUTH_TOKEN,
                scenario="demo",
                api_key=API_KEY,
                fast=True,
                caller_time_scale=1.0,
                twilio_only=True,
                far_ends=(),
                far_end_hangup_after_s=120.0,
            )
        )
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._stack = contextlib.AsyncExitStack()

    def run(self, coroutine: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __enter__(self) -> Emulators:
        self._thread.start()

        async def start() -> None:
            await self._stack.enter_async_context(self.fake)
            await self._stack.enter_async_context(self.twilio)

        self.run(start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._stack.aclose(), timeout=20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@pytest.fixture(scope="module")
def emulators() -> Iterator[Emulators]:
    with Emulators() as running:
        yield running


@pytest.fixture(scope="module")
def service(emulators: Emulators) -> Iterator[ServiceProcess]:
    env = {
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_REALTIME_URL": emulators.fake.url,
        "TWILIO_API_BASE_URL": emulators.twilio.base_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "WEBRTC_HOST_ADDRESSES": "127.0.0.1",
        "WEBRTC_ICE_SERVERS": "[]",
        "SUPERVISOR_GRACE_S": str(GRACE_S),
        "REDIS_URL": "",
    }
    with ServiceProcess(env=env) as running:
        running.django(
            "from django.contrib.auth.models import Permission\n"
            "from django.contrib.contenttypes.models import ContentType\n"
            "from agents.models import Operator\n"
            "from calls.models import CallSession\n"
            "p, _ = Permission.objects.get_or_create(codename='supervise_call',"
            " content_type=ContentType.objects.get_for_model(CallSession),"
            " defaults={'name': 'Can supervise live calls'})\n"
            "demo = Operator.objects.get(username='demo')\n"
            "demo.user_permissions.add(p)\n"
            "sup2 = Operator.objects.create_user('sup2', password='pw-sup2',"
            " organization=demo.organization, first_name='Sato')\n"
            "sup2.user_permissions.add(p)\n"
            "Operator.objects.create_user('plain', password='pw-plain',"
            " organization=demo.organization)\n"
        )
        yield running


def supervisor_wav(path: Path) -> Path:
    """16-bit PCM mono 48 kHz, looped by Chromium: 1 s of a 300 Hz tone, 1.2 s quiet
    (pauses long enough for a transcription turn to end)."""
    rate = 48_000
    tone = array(
        "h",
        (int(12_000 * math.sin(2 * math.pi * 300 * n / rate)) for n in range(rate)),
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(tone.tobytes() + bytes(int(1.2 * rate) * 2))
    return path


def media_args(tmp_path: Path) -> tuple[str, ...]:
    return (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={supervisor_wav(tmp_path / 'sup.wav')}",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
    )


# -- the simulated call ---------------------------------------------------------------


class SimulatedCall:
    """A phone call placed through the emulator; what its caller heard, what its
    model session received and sent."""

    def __init__(self, emulators: Emulators, service: ServiceProcess) -> None:
        self.emulators = emulators
        self.service = service
        connections_before = emulators.fake.connection_count
        reply = httpx.post(
            f"{emulators.twilio.base_url}/_emulator/inbound-calls",
            json={
                "from": "+819012345678",
                "to": "+815012345678",
                "voice_url": f"{service.base_url}/api/twilio/voice/incoming",
                "status_callback": f"{service.base_url}/api/twilio/status",
                "script": CALLER_SCRIPT,
            },
            timeout=10,
        )
        assert reply.status_code < 300, reply.text
        self.sid = str(reply.json()["sid"])
        rows = wait_for(
            "the call to be live with the AI",
            lambda: service.query(
                "select id from calls_callsession where twilio_call_sid = ?"
                " and status = 'ai-responding'",
                self.sid,
            ),
            timeout=20,
        )
        self.id = int(rows[0][0])
        self.model = wait_for(
            "the call's model session",
            lambda: next(
                (
                    c
                    for c in list(emulators.fake.connections)[connections_before:]
                    if "transcription" not in c.path
                ),
                None,
            ),
        )

    @property
    def caller(self) -> Any:
        return self.emulators.twilio.calls[self.sid].streams[-1]

    def heard(self) -> int:
        """Bytes of μ-law the caller has played so far (a mark in its playback)."""
        return len(self.caller.heard_bytes)

    def heard_rms_since(self, mark: int) -> float:
        samples = decode_ulaw(self.caller.heard_bytes[mark:])
        if not samples:
            return 0.0
        return math.sqrt(sum(s * s for s in samples) / len(samples))

    def responses(self) -> int:
        """Responses the model has started on this call."""
        return len(self.model.sent_of("response.created"))

    def system_notes(self) -> list[str]:
        notes = []
        for event in self.model.received_of("conversation.item.create"):
            item = event.get("item") or {}
            if item.get("role") == "system":
                notes.append(
                    " ".join(str(c.get("text", "")) for c in item.get("content", []))
                )
        return notes

    def events(self, kind: str) -> list[tuple[Any, ...]]:
        return self.service.query(
            "select payload from calls_callevent where call_id = ? and type = ?",
            self.id,
            kind,
        )

    def customer_lines(self) -> list[str]:
        return [
            text
            for (text,) in self.service.query(
                "select text from calls_transcriptentry where call_id = ?"
                " and speaker = 'customer' order by id",
                self.id,
            )
        ]

    def hang_up(self) -> None:
        with contextlib.suppress(Exception):
            httpx.post(
                f"{self.emulators.twilio.base_url}/_emulator/calls/{self.sid}/hang-up",
                timeout=10,
            )


@pytest.fixture
def call(emulators: Emulators, service: ServiceProcess) -> Iterator[SimulatedCall]:
    placed = SimulatedCall(emulators, service)
    yield placed
    placed.hang_up()


def open_monitor(context: Any, service: ServiceProcess, call_id: int, user: str) -> Any:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # checked by the tests
    login(page, service.base_url, username=user, password=PASSWORDS[user])
    page.goto(f"{service.base_url}/calls/{call_id}/")
    return page


def listen(page: Any) -> None:
    page.get_by_role("button", name=LISTEN).first.click()
    page.get_by_role("button", name=STOP_LISTENING).wait_for()
    page.wait_for_function("window.__supervise.state === 'listening'", timeout=15_000)


def meter_above(page: Any, side: str, level: float, timeout_ms: int = 20_000) -> None:
    page.wait_for_function(
        f"Number(document.querySelector('[data-level-meter=\"{side}\"]')"
        f".dataset.level) > {level}",
        timeout=timeout_ms,
    )


def held_quietly(call: SimulatedCall, seconds: float) -> tuple[float, int]:
    """Over `seconds` while held: the RMS the caller heard and the responses started."""
    mark, responses = call.heard(), call.responses()
    time.sleep(seconds)
    return call.heard_rms_since(mark), call.responses() - responses


# -- the tests ------------------------------------------------------------------------


def test_listen_barge_take_over_and_hand_back(service, call, tmp_path):
    """Listen: both meters measure; barge: the caller hears the supervisor's
    microphone, the AI is silent, barge end brings it back; take over: the same
    while the caller keeps talking (still transcribed); hand back: the AI answers
    again and the note of what was said reached the model."""
    from playwright.sync_api import expect

    with chromium_context(extra_args=media_args(tmp_path)) as context:
        page = open_monitor(context, service, call.id, "demo")
        holder = page.get_by_test_id("call-holder")
        expect(holder).to_contain_text(re.compile("AIが対応しています"))
        listen(page)
        meter_above(page, "caller", 0.01)
        meter_above(page, "ai", 0.01)
        wait_for(
            "listen-start on the timeline",
            lambda: call.events("supervise-listen-start"),
        )
        screenshot(page, "80-supervisor-listening")

        # Barge: the supervisor's tone reaches the caller; the AI starts nothing.
        page.get_by_role("button", name=BARGE).click()
        page.get_by_role("button", name=END_BARGE).wait_for()
        expect(holder).not_to_contain_text("AIが対応しています", timeout=5000)
        time.sleep(0.5)  # what the AI had queued is cleared at once
        rms, started = held_quietly(call, 4.0)
        assert rms > 500, f"the caller heard no supervisor audio (rms {rms:.0f})"
        assert started == 0, f"the AI started {started} responses during the barge"
        responses = call.responses()
        page.get_by_role("button", name=END_BARGE).click()
        page.get_by_role("button", name=BARGE).wait_for()
        wait_for(
            "the AI to answer after the barge",
            lambda: call.responses() > responses,
            timeout=15,
        )
        expect(holder).to_contain_text("AIが対応しています", timeout=5000)

        # Take over: the caller keeps talking (transcribed), the AI stays silent.
        lines_before = len(call.customer_lines())
        page.get_by_role("button", name=TAKE_OVER).click()
        expect(page.get_by_role("button", name=HAND_BACK)).to_be_enabled(timeout=5000)
        time.sleep(0.5)
        rms, started = held_quietly(call, 8.0)
        assert rms > 500, f"the caller heard no supervisor audio (rms {rms:.0f})"
        assert started == 0, f"the AI started {started} responses while taken over"
        wait_for(
            "the caller's words saved while taken over",
            lambda: len(call.customer_lines()) > lines_before,
        )
        said = call.customer_lines()[lines_before:]
        screenshot(page, "81-supervisor-took-over")

        # Hand back: the AI's next turn, with the note of what was said.
        notes_before = len(call.system_notes())
        responses = call.responses()
        mark = call.heard()
        page.get_by_role("button", name=HAND_BACK).click()
        wait_for(
            "the AI to answer after hand-back",
            lambda: call.responses() > responses,
            timeout=15,
        )
        # The supervisor's own words were transcribed and saved as the agent's.
        agent_lines = wait_for(
            "the supervisor's speech saved as speaker agent",
            lambda: service.query(
                "select text from calls_transcriptentry where call_id = ?"
                " and speaker = 'agent'",
                call.id,
            ),
        )
        notes = call.system_notes()[notes_before:]
        assert notes, "no system note reached the model at hand-back"
        assert any(line in notes[-1] for line in said), (notes[-1], said)
        assert any(text in notes[-1] for (text,) in agent_lines), (
            notes[-1],
            agent_lines,
        )
        wait_for(
            "the AI's voice at the caller again",
            lambda: call.heard_rms_since(mark) > 500,
            timeout=15,
        )
        expect(holder).to_contain_text("AIが対応しています", timeout=5000)
        for kind in ("supervise-barge", "supervise-barge-end", "supervise-take-over", "supervise-hand-back"):  # fmt: skip
            assert call.events(kind), f"no {kind} event"
        page.get_by_role("button", name=STOP_LISTENING).click()
        page.get_by_role("button", name=LISTEN).wait_for()
        wait_for(
            "listen-stop on the timeline", lambda: call.events("supervise-listen-stop")
        )
        assert not page.errors, page.errors


def test_without_the_permission_no_buttons_and_the_offer_is_refused(service, call):
    from playwright.sync_api import expect

    with chromium_context() as context:
        page = context.new_page()
        login(page, service.base_url, username=PLAIN[0], password=PLAIN[1])
        page.goto(f"{service.base_url}/calls/{call.id}/")
        expect(page.get_by_role("button", name="担当者に引き継ぐ")).to_be_visible()
        for name in (LISTEN, WHISPER, BARGE, TAKE_OVER, HAND_BACK):
            expect(page.get_by_role("button", name=name)).to_have_count(0)
        token = page.locator("input[name=csrfmiddlewaretoken]").first.input_value()
        reply = page.request.post(
            f"{service.base_url}/calls/{call.id}/supervise/offer/",
            data='{"sdp": "v=0\\r\\n"}',
            headers={"Content-Type": "application/json", "X-CSRFToken": token},
        )
        assert reply.status == 403
        assert "error" in reply.json()
        api = page.request.post(
            f"{service.base_url}/api/calls/{call.id}/supervise/",
            data='{"action": "take_over"}',
            headers={"Content-Type": "application/json", "X-CSRFToken": token},
        )
        assert api.status == 403
    assert not call.events("supervise-listen-start")
    assert not call.events("supervise-take-over")


@contextlib.contextmanager
def two_browser_contexts(extra_args: tuple[str, ...]) -> Iterator[list[Any]]:
    """Two separate sessions (cookies) in one Chromium: two people logged in."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=find_chromium(),
            headless=True,
            args=[*CHROMIUM_ARGS, *extra_args],
        )
        try:
            contexts = [
                browser.new_context(
                    locale="ja-JP", viewport={"width": 1280, "height": 900}
                )
                for _ in range(2)
            ]
            for context in contexts:
                context.set_default_timeout(10_000)
            yield contexts
        finally:
            browser.close()


def test_two_supervisors_listen_at_once(service, call, tmp_path):
    with two_browser_contexts(media_args(tmp_path)) as (one, other):
        first = open_monitor(one, service, call.id, "demo")
        second = open_monitor(other, service, call.id, "sup2")
        listen(first)
        listen(second)
        for page in (first, second):
            meter_above(page, "caller", 0.01)
            meter_above(page, "ai", 0.01)
        listeners = {
            first.evaluate("window.__supervise.listener"),
            second.evaluate("window.__supervise.listener"),
        }
        assert len(listeners) == 2 and None not in listeners
        assert len(call.events("supervise-listen-start")) >= 2
        # One whispers; both still hear both sides.
        second.get_by_label(re.compile("ささやき|Whisper")).fill(
            "次はお届け日を確認してください"
        )
        second.get_by_role("button", name=WHISPER).click()
        wait_for("the whisper event", lambda: call.events("supervise-whisper"))
        first.evaluate(
            "window.__supervise.callerLevelMax = window.__supervise.aiLevelMax = 0"
        )
        second.evaluate(
            "window.__supervise.callerLevelMax = window.__supervise.aiLevelMax = 0"
        )
        for page in (first, second):
            page.wait_for_function(
                "window.__supervise.callerLevelMax > 0.01 && window.__supervise.aiLevelMax > 0.01",
                timeout=20_000,
            )
        # The caller hangs up: both consoles stop listening and can do nothing more.
        call.hang_up()
        for page in (first, second):
            page.wait_for_function(
                "window.__supervise.state === 'idle'", timeout=10_000
            )
            for name in (LISTEN, BARGE, TAKE_OVER):
                assert page.get_by_role("button", name=name).first.is_disabled()
        assert not first.errors and not second.errors


def test_a_supervisor_page_closing_mid_take_over_leaves_the_call_with_the_ai(
    service, call, tmp_path
):
    from playwright.sync_api import expect

    with chromium_context(extra_args=media_args(tmp_path)) as context:
        page = open_monitor(context, service, call.id, "demo")
        listen(page)
        page.get_by_role("button", name=TAKE_OVER).click()
        expect(page.get_by_role("button", name=HAND_BACK)).to_be_enabled(timeout=5000)
        wait_for("the take-over event", lambda: call.events("supervise-take-over"))
        time.sleep(0.5)
        rms, started = held_quietly(call, 3.0)
        assert rms > 500 and started == 0
        responses = call.responses()
        closed_at = time.monotonic()
        page.close()
    wait_for(
        "the hand-back after the supervisor was lost",
        lambda: any(
            "supervisor-lost" in str(p) for (p,) in call.events("supervise-hand-back")
        ),
        timeout=GRACE_S + 10,
    )
    assert time.monotonic() - closed_at >= GRACE_S - 0.5  # not before the grace period
    wait_for("the AI to answer again", lambda: call.responses() > responses, timeout=15)
    ((held_by,),) = service.query(
        "select held_by_id from calls_callsession where id = ?", call.id
    )
    assert held_by is None


def test_live_timeline_lines_read_like_saved_ones_in_a_utc_browser(service, call):
    """A browser in UTC: a line added live shows the organisation's time (as the
    saved line does after a reload), in words, with its raw payload behind 詳細."""
    from playwright.sync_api import expect

    with chromium_context(timezone_id="UTC") as context:
        page = open_monitor(context, service, call.id, PLAIN[0])
        expect(page.get_by_test_id("time-zone")).to_have_text(
            "時刻は Asia/Tokyo の時刻です"
        )
        expect(page.locator("[data-socket-state]")).to_have_attribute(
            "data-state", "open"
        )
        page.get_by_label("AIへの指示").fill("料金の話は担当者から")
        page.get_by_role("button", name="指示を送る").click()
        live = page.locator("#timeline li.event-instruct-requested")
        expect(live).to_have_count(1, timeout=5000)
        expect(live.locator(".event-summary")).to_contain_text(
            "オペレーターがAIに指示しました"
        )
        live_time = live.locator("time").inner_text()
        live_text = live.locator(".event-summary").inner_text()
        iso = live.locator("time").get_attribute("datetime") or ""
        utc_clock = page.evaluate(
            "iso => new Date(iso).toLocaleTimeString('en-GB', {timeZone: 'UTC', hourCycle: 'h23'})",
            iso,
        )
        assert live_time != utc_clock  # Tokyo is 9 hours ahead of UTC
        live.locator("summary").click()
        expect(live.locator("pre")).to_contain_text("料金の話は担当者から")
        page.reload()
        saved = page.locator("#timeline li.event-instruct-requested")
        expect(saved.locator("time")).to_have_text(live_time)
        expect(saved.locator(".event-summary")).to_have_text(live_text)
        assert not page.errors, page.errors
