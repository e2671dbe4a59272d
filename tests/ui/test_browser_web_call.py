"""The web voice channel in Debian's Chromium, over WebRTC on loopback.

The service runs under Daphne (a subprocess, its own SQLite) against a fake OpenAI
Realtime server running in this process (a thread with its own loop), so the test
can look at what the model received. Chromium's fake microphone plays a 16-bit PCM
WAV once (a fixture that is 24-bit or μ-law would play silence without an error,
so the test checks that the model got audio with energy): 2.5 s of silence, then
3 s of a tone, then silence. Flags: --use-fake-ui-for-media-stream (allow the mic)
--use-fake-device-for-media-stream --use-file-for-fake-audio-capture=<wav>%noloop
--allow-loopback-in-peer-connection; WEBRTC_HOST_ADDRESSES=127.0.0.1 (aioice leaves
loopback out of its host candidates).

Not covered here (no headless equivalent): Mobile Safari, Chrome on Android, real
echo cancellation, a real device unplugged mid-call (Chromium's fake device never
ends: the device-lost test fires the microphone track's `ended` event itself, the
event a browser fires when the device goes away).
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import threading
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from realtime.emulators import scenarios
from realtime.emulators.fake_realtime import FakeRealtimeServer
from tests.ui.browser import (
    ServiceProcess,
    chromium_context,
    chromium_missing_reason,
    login,
    screenshot,
    wait_for,
)

MISSING = chromium_missing_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(MISSING is not None, reason=f"browser tests: {MISSING}"),
]

API_KEY = "sk-ui-web"
START = re.compile("通話を開始|Start call")
HANG_UP = re.compile("切断|終了|Hang up|End call")


class FakeRealtimeInThread:
    """The fake Realtime server on a loop of its own, for a service in a subprocess."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = FakeRealtimeServer(scenarios.DEMO, api_key=API_KEY)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeRealtimeServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def caller_wav(path: Path) -> Path:
    """16-bit PCM mono 48 kHz: 2.5 s silence, 3 s of a 300 Hz tone, 6 s silence."""
    rate = 48_000
    tone = array(
        "h",
        (int(12_000 * math.sin(2 * math.pi * 300 * n / rate)) for n in range(3 * rate)),
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(
            bytes(int(2.5 * rate) * 2) + tone.tobytes() + bytes(6 * rate * 2)
        )
    return path


def pcm_rms(data: bytes) -> float:
    samples = array("h", data[: len(data) - len(data) % 2])
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def appended_rms(server: FakeRealtimeServer, index: int) -> float:
    """RMS of all PCM16 the model received on connection ``index``."""
    connection = server.connections[index]
    pcm = b"".join(
        base64.b64decode(e["audio"])
        for e in connection.received_of("input_audio_buffer.append")
    )
    return pcm_rms(pcm)


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeRealtimeServer]:
    with FakeRealtimeInThread() as server:
        yield server


@pytest.fixture(scope="module")
def service(fake_model) -> Iterator[ServiceProcess]:
    env = {
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_REALTIME_URL": fake_model.url,
        "WEBRTC_HOST_ADDRESSES": "127.0.0.1",
        "WEBRTC_ICE_SERVERS": "[]",
        "PUBLIC_WEB_CALL_RATE": "1/min",
        "REDIS_URL": "",
    }
    with ServiceProcess(env=env) as running:
        running.django(
            "from agents.models import AgentProfile\n"
            "from agents.services import agent_profile_save\n"
            "a = AgentProfile.objects.get(name='受付デモ')\n"
            "a.public_web_calls = True\n"
            "agent_profile_save(agent=a)"
        )
        yield running


@pytest.fixture(scope="module")
def demo_agent(service) -> tuple[int, str]:
    ((pk, public_id),) = service.query(
        "select id, public_id from agents_agentprofile where name = ?", "受付デモ"
    )
    return int(pk), str(public_id)


def media_args(tmp_path: Path) -> tuple[str, ...]:
    return (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={caller_wav(tmp_path / 'caller.wav')}%noloop",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
    )


def web_calls(service: ServiceProcess) -> list[tuple[Any, ...]]:
    return service.query(
        "select id, status from calls_callsession where direction = 'web' order by id"
    )


def test_try_page_call_end_to_end(service, fake_model, demo_agent, tmp_path):
    """Start call on the try page: the model gets the caller's audio with energy,
    the AI's reply plays in the page (AnalyserNode level on the remote track), lines
    appear live on the page and on the monitor, hang-up ends the session and the
    model socket, and the bridge recording exists and plays."""
    pk, _ = demo_agent
    before = fake_model.connection_count
    with chromium_context(extra_args=media_args(tmp_path)) as context:
        page = context.new_page()
        login(page, service.base_url)
        page.goto(f"{service.base_url}/agents/{pk}/try/")
        start = page.get_by_role("button", name=START)
        assert start.count() == 1
        log = page.get_by_role("log")
        start.click()
        hang_up = page.get_by_role("button", name=HANG_UP)
        hang_up.wait_for(state="visible")
        page.wait_for_function("window.__webCall.callId !== null", timeout=15_000)
        call_id = page.evaluate("window.__webCall.callId")
        # The AI's greeting plays in the page.
        page.wait_for_function("window.__webCall.remoteLevelMax > 0.02", timeout=15_000)
        monitor = context.new_page()
        monitor.goto(f"{service.base_url}/calls/{call_id}/")
        shown = monitor.locator("#transcript li[data-entry-id]").count()
        # The caller's tone reaches the model, with energy.
        index = before
        wait_for(
            "the model to get the caller's audio",
            lambda: fake_model.connection_count > index,
        )
        wait_for(
            "caller audio with energy at the model",
            lambda: appended_rms(fake_model, index) > 500,
            timeout=20,
        )
        assert fake_model.connections[index].session["audio"]["input"]["format"] == {
            "type": "audio/pcm",
            "rate": 24000,
        }
        # Lines appear live on the page and on the operator's monitor.
        wait_for(
            "transcript lines on the try page",
            lambda: log.locator("li.utterance").count() >= 2,
            timeout=20,
        )
        wait_for(
            "a new line on the monitor",
            lambda: monitor.locator("#transcript li[data-entry-id]").count() > shown,
            timeout=20,
        )
        assert page.evaluate("window.__webCall.reports") > 10  # playback reports sent
        screenshot(page, "web-call-try-live")
        hang_up.click()
        page.get_by_text(
            re.compile("通話は終了しました。|The call has ended.")
        ).wait_for()
        assert page.get_by_role("button", name=START).is_visible()
        wait_for(
            "the call completed with its recording",
            lambda: (
                service.query(
                    "select count(*) from calls_callsession c join calls_recording r"
                    " on r.call_id = c.id where c.id = ? and c.status = 'completed'"
                    " and r.source = 'bridge'",
                    call_id,
                )[0][0]
                == 1
            ),
        )
        wait_for(
            "the model socket closed", lambda: fake_model.connections[index].closed
        )
        monitor.goto(f"{service.base_url}/calls/{call_id}/")
        audio = monitor.locator(".recording audio")
        duration = audio.evaluate(
            """el => new Promise((resolve, reject) => {
                 el.addEventListener("canplaythrough", () => resolve(el.duration), {once: true});
                 el.addEventListener("error", () => reject(new Error("audio error")), {once: true});
                 el.preload = "auto";
                 el.load();
               })"""
        )
        assert duration > 3


def test_mic_denied_says_so_and_starts_nothing(service, fake_model, demo_agent):
    """Without microphone permission the page says how to allow it; no call, no
    model session."""
    pk, _ = demo_agent
    calls_before = len(web_calls(service))
    models_before = fake_model.connection_count
    args = ("--use-fake-device-for-media-stream", "--deny-permission-prompts")
    with chromium_context(extra_args=args) as context:
        page = context.new_page()
        login(page, service.base_url)
        page.goto(f"{service.base_url}/agents/{pk}/try/")
        page.get_by_role("button", name=START).click()
        alert = page.get_by_role("alert")
        alert.wait_for(state="visible")
        assert "マイクの使用が許可されませんでした" in alert.inner_text()
        assert page.get_by_role("button", name=START).is_visible()
        assert page.get_by_role("button", name=HANG_UP).count() == 0
        screenshot(page, "web-call-mic-denied")
    assert len(web_calls(service)) == calls_before
    assert fake_model.connection_count == models_before


def test_no_microphone_says_so_and_starts_nothing(service, fake_model, demo_agent):
    """With the permission granted but no capture device, the page says to connect a
    microphone; no call, no model session."""
    pk, _ = demo_agent
    calls_before = len(web_calls(service))
    models_before = fake_model.connection_count
    with chromium_context(extra_args=("--use-fake-ui-for-media-stream",)) as context:
        page = context.new_page()
        login(page, service.base_url)
        page.goto(f"{service.base_url}/agents/{pk}/try/")
        page.get_by_role("button", name=START).click()
        alert = page.get_by_role("alert")
        alert.wait_for(state="visible")
        assert "マイクが見つかりません" in alert.inner_text()
        assert page.get_by_role("button", name=START).is_visible()
    assert len(web_calls(service)) == calls_before
    assert fake_model.connection_count == models_before


KEEP_MIC_STREAM = """
(() => {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await original(constraints);
    window.__testMicStream = stream;
    return stream;
  };
})();
"""


def test_device_lost_mid_call_says_so_and_ends_the_call(
    service, fake_model, demo_agent, tmp_path
):
    """The microphone going away mid-call (its track's `ended` event) gives the
    device-lost message, ends the call and closes the model socket."""
    pk, _ = demo_agent
    index = fake_model.connection_count
    with chromium_context(extra_args=media_args(tmp_path)) as context:
        context.add_init_script(KEEP_MIC_STREAM)
        page = context.new_page()
        login(page, service.base_url)
        page.goto(f"{service.base_url}/agents/{pk}/try/")
        page.get_by_role("button", name=START).click()
        page.wait_for_function("window.__webCall.callId !== null", timeout=15_000)
        call_id = page.evaluate("window.__webCall.callId")
        page.wait_for_function("window.__webCall.state === 'live'", timeout=15_000)
        wait_for("the model session", lambda: fake_model.connection_count > index)
        page.evaluate(
            "window.__testMicStream.getAudioTracks()[0]"
            ".dispatchEvent(new Event('ended'))"
        )
        alert = page.get_by_role("alert")
        alert.wait_for(state="visible")
        assert "マイクが使えなくなったため" in alert.inner_text()
        page.get_by_role("button", name=START).wait_for(state="visible")
        assert page.get_by_role("button", name=HANG_UP).is_hidden()
        screenshot(page, "web-call-device-lost")
    wait_for(
        "the call completed",
        lambda: (
            service.query("select status from calls_callsession where id = ?", call_id)
            == [("completed",)]
        ),
    )
    wait_for("the model socket closed", lambda: fake_model.connections[index].closed)


def test_public_page_calls_and_is_rate_limited(
    service, fake_model, demo_agent, tmp_path
):
    """/talk/<public id>/ without login: a call works (English page here); a second
    offer from the same address within the minute is refused with a clear message
    (PUBLIC_WEB_CALL_RATE=1/min), and no call is created for it."""
    _, public_id = demo_agent
    with chromium_context(locale="en-US", extra_args=media_args(tmp_path)) as context:
        page = context.new_page()
        page.goto(f"{service.base_url}/talk/{public_id}/")  # English: the browser's
        assert page.get_by_role("button", name=re.compile("^Start call$")).count() == 1
        assert page.locator("#web-call-customer").count() == 0
        page.get_by_role("button", name=START).click()
        page.wait_for_function("window.__webCall.callId !== null", timeout=15_000)
        page.wait_for_function("window.__webCall.remoteLevelMax > 0.02", timeout=15_000)
        page.get_by_role("button", name=HANG_UP).click()
        page.get_by_text("The call has ended.").wait_for()
        calls = len(web_calls(service))
        page.get_by_role("button", name=START).click()
        alert = page.get_by_role("alert")
        alert.wait_for(state="visible")
        assert "busy" in alert.inner_text(), page.evaluate(
            "JSON.stringify(window.__webCall)"
        )
        screenshot(page, "web-call-public-rate-limited")
        assert len(web_calls(service)) == calls
