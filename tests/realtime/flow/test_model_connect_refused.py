"""F-71: OpenAI refuses a new call's session; the caller gets the fallback quickly.

The fake Realtime server refuses the WebSocket upgrade the way the API does (HTTP
status and JSON error body) or never answers it. A new call does not sit through
the mid-call back-off (F-25, 10 s connect time-out, three retries): a refusal falls
back at once, a rate limit or server error after one quick retry, a hang after the
short first-connect time-out. Each try is on the call's timeline. The fallback is
the legacy Gather path (F-72), for this call and for new calls a while.
"""

from __future__ import annotations

import time

import pytest

from calls.legacy.writes import writes_idle
from calls.models import CallEvent, CallSession
from calls.status import CallStatus
from realtime.bridge import FIRST_CONNECT_TIMEOUT_S
from realtime.emulators.caller import HangUp, WaitForAudio, WaitUntilQuiet
from realtime.emulators.speech_script import HangsUp, Says
from tests.realtime.flow.conftest import CALLER_NUMBER, INBOUND_NUMBER, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

TALK = [
    WaitForAudio(ms=100, timeout_s=10),
    WaitUntilQuiet(quiet_ms=300, timeout_s=15),
    HangUp(),
]


async def _call(twilio, service, script, speech=None):
    handle = await twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{service}/api/twilio/voice/incoming",
        caller_script=script,
        speech_script=speech,
        status_callback=f"{service}/api/twilio/status",
    )
    call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
    return handle, call


async def _events(call):
    return [e async for e in CallEvent.objects.filter(call=call).order_by("id")]


# fault, connection attempts expected, the kind recorded
CASES = [
    (401, 1, "refused"),
    (403, 1, "refused"),
    (429, 2, "rate-limited"),
    (500, 2, "server-error"),
    (503, 2, "server-error"),
    ("hang", 1, "timeout"),
]


@pytest.mark.parametrize(("fault", "attempts", "kind"), CASES)
async def test_refused_new_session_goes_on_on_the_legacy_path(
    service,
    start_fake_realtime,
    twilio,
    fake_responses,
    inbound_agent,
    fault,
    attempts,
    kind,
):
    inbound_agent.on_model_failure = "hang-up"
    await inbound_agent.asave()
    async with start_fake_realtime(handshake_fault=fault) as fake:
        started = time.monotonic()
        handle, call = await _call(
            twilio,
            service,
            [WaitForAudio(timeout_s=3)],
            speech=[Says("もしもし"), HangsUp()],
        )
        finished = await handle.wait_finished(timeout=20)
        elapsed = time.monotonic() - started
        await writes_idle()
        assert fake.connection_count == 0
        assert len(fake.rejected_handshakes) == attempts
    await call.arefresh_from_db()
    assert call.path == CallSession.Path.LEGACY
    assert call.status == CallStatus.COMPLETED
    said = finished.said()
    assert said[0].startswith("お電話ありがとうございます。"), said  # the greeting
    assert "「もしもし」ですね" in said[1], said
    assert not finished.errors
    events = await _events(call)
    failures = [e.payload for e in events if e.type == "model-connect-failed"]
    assert [f["kind"] for f in failures] == [kind] * attempts, failures
    assert [f["retry"] for f in failures] == [True] * (attempts - 1) + [False]
    if isinstance(fault, int):
        assert {f["status"] for f in failures} == {fault}
    # The fallback came on the first-connect clock, not the mid-call one (10 s
    # time-out, 0.25 + 1 + 2 s of back-off).
    limit_ms = (FIRST_CONNECT_TIMEOUT_S + 1.5) * 1000
    assert failures[-1]["ms"] < limit_ms, failures
    types = [e.type for e in events]
    assert {"model-failed", "realtime-refused", "legacy-start"} <= set(types)
    assert "apology" not in types
    assert [e.payload["why"] for e in events if e.type == "path"] == [
        "realtime-unavailable"
    ]
    print(
        f"\n[F-71] connect fault {fault}: fallback decided at "
        f"{failures[-1]['ms']} ms after the stream opened, {attempts} tries, "
        f"call over {elapsed:.2f} s after the webhook"
    )


async def test_new_calls_after_a_refusal_skip_realtime_for_a_while(
    service, start_fake_realtime, twilio, fake_responses, inbound_agent, flow_settings
):
    async with start_fake_realtime(handshake_fault=403) as fake:
        first, _ = await _call(
            twilio, service, [WaitForAudio(timeout_s=3)], [HangsUp()]
        )
        await first.wait_finished(timeout=20)
        tries = len(fake.rejected_handshakes)
        second, call = await _call(twilio, service, [], [HangsUp()])
        finished = await second.wait_finished(timeout=20)
        assert len(fake.rejected_handshakes) == tries  # not even tried
    assert finished.said()[0].startswith("お電話ありがとうございます。")
    assert not [e for e in finished.log if e.kind == "stream-start"]
    events = await _events(call)
    assert [e.payload["why"] for e in events if e.type == "path"] == [
        "realtime-unavailable"
    ]
    flow_settings.LEGACY_REALTIME_BACKOFF_S = 0  # the while is over: Realtime again
    async with start_fake_realtime() as fake:
        third, _ = await _call(twilio, service, TALK)
        await third.wait_finished(timeout=30)
        assert fake.connection_count == 1


async def test_one_rate_limit_then_the_call_talks(
    service, start_fake_realtime, twilio, inbound_agent
):
    """A single 429 costs one quick retry; the caller then hears the greeting."""
    async with start_fake_realtime() as fake:
        fake.fail_handshakes(429, count=1)
        handle, call = await _call(twilio, service, TALK)
        await handle.wait_finished(timeout=30)
        assert fake.connection_count == 1
        assert len(fake.rejected_handshakes) == 1
        assert handle.caller is not None and handle.caller.heard_ms > 0
    events = await _events(call)
    failures = [e.payload for e in events if e.type == "model-connect-failed"]
    assert [(f["kind"], f["retry"]) for f in failures] == [("rate-limited", True)]
    assert "model-failed" not in [e.type for e in events]


async def test_refused_session_and_failing_text_model_hand_off(
    service, start_fake_realtime, twilio, fake_responses, inbound_agent
):
    """on_model_failure=handoff: Realtime refuses (500), the legacy path's text model
    fails twice too: the caller is moved to a human."""
    inbound_agent.on_model_failure = "handoff"
    await inbound_agent.asave()
    fake_responses.fail_next(500, count=2)
    async with start_fake_realtime(handshake_fault=500):
        handle, call = await _call(
            twilio,
            service,
            [WaitForAudio(timeout_s=3)],
            speech=[Says("もしもし"), Says("もしもし")],
        )

        async def handed_off():
            await call.arefresh_from_db()
            return call.status in (CallStatus.TRANSFERRING, CallStatus.HUMAN_CONNECTED)

        assert await wait_until(handed_off, within_s=10), call.status
    assert call.handoff_trigger == "model-failure"
    kinds = [
        e.payload["kind"]
        for e in await _events(call)
        if e.type == "model-connect-failed"
    ]
    assert kinds == ["server-error", "server-error"]
    await twilio.hang_up(handle.sid)
