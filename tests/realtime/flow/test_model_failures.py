"""F-25: the model socket fails; the caller hears no crash, or a polite fallback."""

from __future__ import annotations

import dataclasses

import pytest

from calls.models import CallEvent, CallSession
from calls.status import CallStatus
from realtime.emulators import scenarios
from realtime.emulators.caller import HangUp, Pause, Speak, WaitForAudio, WaitUntilQuiet
from realtime.emulators.speech_script import Says
from tests.realtime.flow.conftest import CALLER_NUMBER, INBOUND_NUMBER, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

TALK = [
    WaitForAudio(ms=100, timeout_s=10),
    WaitUntilQuiet(quiet_ms=300, timeout_s=15),
    Speak(ms=1000),
    Pause(ms=800),
    WaitForAudio(ms=100, timeout_s=10),
    WaitUntilQuiet(quiet_ms=300, timeout_s=15),
    HangUp(),
]

# The greeting, a long pause in which the fault happens (2.5 s after connect, wall
# time), then a turn that must still be answered.
THROUGH_A_FAULT = [
    WaitForAudio(ms=100, timeout_s=40),
    WaitUntilQuiet(quiet_ms=300, timeout_s=40),
    Pause(ms=8000),
    Speak(ms=1000),
    Pause(ms=800),
    WaitForAudio(ms=100, timeout_s=40),
    WaitUntilQuiet(quiet_ms=300, timeout_s=40),
    HangUp(),
]


async def _call(twilio, service, script=TALK):
    handle = await twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{service}/api/twilio/voice/incoming",
        caller_script=script,
        status_callback=f"{service}/api/twilio/status",
    )
    call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
    return handle, call


async def _events(call):
    return [e async for e in CallEvent.objects.filter(call=call).order_by("id")]


async def _set_agent(agent, **fields):
    for name, value in fields.items():
        setattr(agent, name, value)
    await agent.asave()


@pytest.mark.parametrize("mode", ["accept-then-close", "reject-handshake"])
async def test_bad_key_hangs_up_with_an_apology(
    service, start_fake_realtime, twilio, fake_responses, inbound_agent, mode
):
    """Both bad-key behaviours of PROTOCOL A7 end the call politely (no handoff set).
    A refused handshake goes to the legacy path first (F-71), whose text model
    refuses the same key: after two tries, the apology."""
    await _set_agent(inbound_agent, on_model_failure="hang-up")
    fake_responses.api_key = "sk-someone-else"
    async with start_fake_realtime(
        api_key="sk-someone-else", auth_failure_mode=mode
    ) as fake:
        handle = await twilio.inbound_call(
            from_=CALLER_NUMBER,
            to=INBOUND_NUMBER,
            voice_url=f"{service}/api/twilio/voice/incoming",
            caller_script=[WaitForAudio(timeout_s=3)],
            speech_script=[Says("もしもし"), Says("もしもし")],
            status_callback=f"{service}/api/twilio/status",
        )
        call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
        finished = await handle.wait_finished(timeout=15)
        assert fake.open_connections == 0
    await call.arefresh_from_db()
    assert call.status == CallStatus.FAILED
    assert "model-failure" in call.end_reason
    assert any("申し訳ございません" in said for said in finished.said()), (
        finished.said()
    )
    types = [e.type for e in await _events(call)]
    assert "model-failed" in types and "stream-ended" in types
    if mode == "reject-handshake":
        assert call.path == CallSession.Path.LEGACY
        assert types.count("legacy-model-failed") == 2


async def test_mid_call_drop_reconnects_and_reseeds_the_conversation(
    service, start_fake_realtime, twilio, inbound_agent
):
    """The socket drops after the greeting was heard; a new session gets the saved
    transcript as context and the call carries on to a normal end."""
    scenario = dataclasses.replace(scenarios.DEMO, name="drop", drop_after_ms=2500.0)
    async with start_fake_realtime(scenario) as fake:
        handle, call = await _call(twilio, service, script=THROUGH_A_FAULT)
        await handle.wait_finished(timeout=40)
        await call.arefresh_from_db()
        assert fake.connection_count == 2, "\n".join(
            f"{e.type} {e.payload}" for e in await _events(call)
        )
        second = fake.connections[1]
        seeded = [
            e
            for e in second.received
            if isinstance(e, dict) and e.get("type") == "conversation.item.create"
        ]
        texts = " ".join(str(e["item"].get("content")) for e in seeded)
        assert "お電話ありがとうございます" in texts, texts
        assert second.received_types()[0] == "session.update"
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED, call.end_reason
    types = [e.type for e in await _events(call)]
    assert "model-reconnect" in types
    assert handle.caller.heard_ms > 0


async def test_three_failed_reconnects_fall_back_to_a_human(
    service, start_fake_realtime, twilio, inbound_agent
):
    """Every connection drops at once: after the retries the call is handed off."""
    scenario = dataclasses.replace(
        scenarios.DEMO,
        name="always-drop",
        drop_after_server_events=1,
        fault_connections=None,
    )
    async with start_fake_realtime(scenario) as fake:
        handle, call = await _call(twilio, service, script=[WaitForAudio(timeout_s=8)])

        async def handed_off():
            await call.arefresh_from_db()
            return call.status in (CallStatus.TRANSFERRING, CallStatus.HUMAN_CONNECTED)

        assert await wait_until(handed_off, within_s=15), call.status
        assert fake.connection_count == 4  # the first try and three more
    assert call.handoff_trigger == "model-failure"
    assert call.handoff_agent_call_sid.startswith("CA")
    await twilio.hang_up(handle.sid)


async def test_error_events_are_recorded_and_the_call_goes_on(
    service, start_fake_realtime, twilio, inbound_agent
):
    """A server_error event and a failed response are recorded; the caller is not cut
    off and a later turn is still answered."""
    script = [
        WaitForAudio(ms=100, timeout_s=10),
        WaitUntilQuiet(quiet_ms=300, timeout_s=15),
        Speak(ms=1000),  # this turn's response fails on the server
        Pause(ms=1500),
        Speak(ms=1000),
        Pause(ms=800),
        WaitForAudio(ms=100, timeout_s=10),
        WaitUntilQuiet(quiet_ms=300, timeout_s=15),
        HangUp(),
    ]
    async with start_fake_realtime(scenarios.ERRORS) as fake:
        handle, call = await _call(twilio, service, script=script)
        await handle.wait_finished(timeout=40)
        assert fake.connection_count == 1
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED, call.end_reason
    events = await _events(call)
    errors = [e for e in events if e.type == "error"]
    assert errors and errors[0].payload["source"] == "openai"
    assert any(e.type == "response-failed" for e in events)
    ai_lines = [
        t
        async for t in call.transcript.filter(speaker="ai").values_list(
            "text", flat=True
        )
    ]
    assert len(ai_lines) >= 2, ai_lines  # the greeting and the answer after the failure


async def test_session_expiry_reconnects_transparently(
    service, start_fake_realtime, twilio, inbound_agent
):
    scenario = dataclasses.replace(scenarios.SESSION_EXPIRED, expire_after_ms=2500.0)
    async with start_fake_realtime(scenario) as fake:
        handle, call = await _call(twilio, service, script=THROUGH_A_FAULT)
        await handle.wait_finished(timeout=40)
        assert fake.connection_count >= 2
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED
    types = [e.type for e in await _events(call)]
    assert "model-failed" not in types
    ai_lines = [
        t
        async for t in call.transcript.filter(speaker="ai").values_list(
            "text", flat=True
        )
    ]
    assert len(ai_lines) >= 2, (
        ai_lines
    )  # greeting, and the answer after the new session
