"""F-68 on real sockets: a stream that ends while the call is on the AI resumes.

The whole service (uvicorn, in this process) against the Twilio emulator and the
fake Realtime server. The emulator follows `<Connect action>` as Twilio does, also
when the socket breaks; `stream-ended` answers a fresh stream; the new bridge
re-seeds a new model session from the saved transcript and goes on. One
CallSession, one transcript, one timeline. The resume after a real server process
is killed is in tests/realtime/test_resume_processes.py.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from asgiref.sync import sync_to_async

from calls.inbound import call_inbound_route
from calls.models import CallEvent, CallSession, TranscriptEntry
from calls.services import acall_control_send
from calls.status import CallStatus
from realtime.emulators.caller import (
    HangUp,
    Pause,
    SimulatedCaller,
    Speak,
    WaitForAudio,
    WaitUntilQuiet,
)
from realtime.emulators.twilio_api import StreamStart, TwilioEmulator
from realtime.store import DjangoCallStore
from tests.calls.factories import CallSessionFactory
from tests.realtime.flow.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CALLER_NUMBER,
    INBOUND_NUMBER,
    fast_caller,
    wait_until,
)
from tests.realtime.flow.test_stream_security import _close_code, _stream_url
from tests.realtime.tcp_forwarder import TcpForwarder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

# Greeting, one turn, then a pause in which the test breaks the stream; the rest
# (the pause again, a turn, hang up) plays on the resumed stream.
SCRIPT = [
    WaitForAudio(ms=100, timeout_s=15),
    WaitUntilQuiet(quiet_ms=300, timeout_s=15),
    Speak(ms=1000),
    Pause(ms=800),
    WaitForAudio(ms=100, timeout_s=15),
    WaitUntilQuiet(quiet_ms=300, timeout_s=15),
    Pause(ms=2000),
    Speak(ms=1000),
    Pause(ms=800),
    WaitForAudio(ms=100, timeout_s=15),
    WaitUntilQuiet(quiet_ms=300, timeout_s=15),
    HangUp(),
]


async def _place(twilio: TwilioEmulator, service: str, script=SCRIPT):
    handle = await twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{service}/api/twilio/voice/incoming",
        caller_script=script,
        status_callback=f"{service}/api/twilio/status",
    )
    call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
    return handle, call


async def _types(call: CallSession) -> list[str]:
    return [
        t
        async for t in CallEvent.objects.filter(call=call)
        .order_by("id")
        .values_list("type", flat=True)
    ]


async def _event(call: CallSession, type: str) -> CallEvent:
    return await CallEvent.objects.filter(call=call, type=type).alatest("id")


async def _lines(call: CallSession) -> list[tuple[str, str, int]]:
    return [
        row
        async for row in TranscriptEntry.objects.filter(call=call)
        .order_by("id")
        .values_list("speaker", "text", "offset_ms")
    ]


async def _ai_lines_at_least(call: CallSession, n: int) -> bool:
    return (
        await TranscriptEntry.objects.filter(call=call, speaker="ai").acount() >= n
        and await TranscriptEntry.objects.filter(
            call=call, speaker="customer"
        ).aexists()
    )


def _seeded_texts(connection) -> list[str]:
    return [
        str(event["item"]["content"])
        for event in connection.received
        if isinstance(event, dict) and event.get("type") == "conversation.item.create"
    ]


async def test_a_broken_stream_resumes_with_the_conversation_and_the_script(
    service, start_fake_realtime, twilio, inbound_agent, flow_settings
):
    """The socket breaks mid-call (no close frame, no stop): the call stays on the
    AI, the emulator asks `<Connect action>`, a fresh stream with a new token comes
    back, the new model session is re-seeded with what was said and the resume line,
    and the caller's script goes on on the new stream to a normal end. Also: at
    MAX_LIVE_CALLS the resume is not refused (the call already holds its place)."""
    flow_settings.MAX_LIVE_CALLS = 1
    async with start_fake_realtime() as fake:
        handle, call = await _place(twilio, service)
        first = await handle.wait_stream(timeout=10)
        assert await wait_until(lambda: _ai_lines_at_least(call, 2), within_s=20)
        await call.arefresh_from_db()
        first_token = call.stream_token
        # The cap is reached: a new call now would be refused.
        other = await sync_to_async(call_inbound_route)(
            call_sid="CA" + "9" * 32,
            from_number=CALLER_NUMBER,
            to_number=INBOUND_NUMBER,
        )
        assert "<Stream" not in other.twiml
        await first.break_connection()
        second = await handle.wait_stream(timeout=10, count=2)
        assert second is not first
        assert second.parameters["stream_token"] != first_token
        await handle.wait_finished(timeout=30)
        assert fake.connection_count == 2
        seeded = _seeded_texts(fake.connections[1])
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED, call.end_reason
    assert call.stream_lost_at is None and call.stream_resume_failures == 0
    assert await CallSession.objects.filter(twilio_call_sid=handle.sid).acount() == 1

    log = handle.call.log
    ends = [e.detail for e in log if e.kind == "stream-end"]
    assert ends[0]["by"] == "broken" and ends[0]["code"] == 1006, ends
    assert ends[-1]["by"] == "caller"
    assert first.heard_ms > 0 and second.heard_ms > 0
    assert "caller-script-error" not in [e.kind for e in log]
    assert second.frames_sent > 0 and second.closed_by_server is None
    first.assert_clean()
    second.assert_clean()

    types = await _types(call)
    for expected in (
        "stream-broken",
        "stream-ended",
        "stream-lost",
        "stream-resumed",
    ):
        assert expected in types, types
    assert types.count("stream-start") == 2
    assert types.index("stream-lost") < types.index("stream-resumed")
    lost = await _event(call, "stream-lost")
    assert lost.payload["stream_sid"] == first.stream_sid
    resumed = await _event(call, "stream-resumed")
    assert 0 <= resumed.payload["gap_ms"] < 10_000
    assert resumed.payload["stream_sid"] == second.stream_sid
    bridge_ends = [
        e.payload
        async for e in CallEvent.objects.filter(call=call, type="bridge-end").order_by(
            "id"
        )
    ]
    assert bridge_ends[0] == {"reason": "stream-lost", "mode": "lost"}

    # The new session got the conversation so far, then the resume line to say.
    lines = await _lines(call)
    said_before = [text for _, text, _ in lines[:3]]
    for text in said_before:
        assert any(text in s for s in seeded), (text, seeded)
    assert any("お待たせいたしました。" in s for s in seeded), seeded
    # One transcript, in order: the resumed bridge's offsets go on.
    offsets = [offset for _, _, offset in lines]
    assert offsets == sorted(offsets), lines
    customers = [text for speaker, text, _ in lines if speaker == "customer"]
    assert len(customers) >= 2, lines  # one turn on each stream


async def test_a_spent_or_forged_resume_token_is_refused_and_costs_no_model(
    service, start_fake_realtime, twilio, inbound_agent
):
    """After a resume: the spent resume token, the first stream's token, and a
    forged one (signed and unsigned) are closed with 1008 and open no model
    session; the resumed stream is untouched."""
    script = [WaitForAudio(ms=100, timeout_s=15), Pause(ms=60_000)]
    async with start_fake_realtime() as fake:
        handle, call = await _place(twilio, service, script)
        first = await handle.wait_stream(timeout=10)
        await call.arefresh_from_db()
        first_token = call.stream_token
        assert await wait_until(lambda: _ai_lines_at_least_one(call), within_s=15)
        await first.break_connection()
        second = await handle.wait_stream(timeout=10, count=2)

        async def resumed() -> bool:
            return "stream-resumed" in await _types(call)

        assert await wait_until(resumed, within_s=10)
        url = _stream_url(service, call.pk)
        for auth, token in (
            (AUTH_TOKEN, second.parameters["stream_token"]),
            (AUTH_TOKEN, first_token),
            (AUTH_TOKEN, "forged"),
            ("not-the-auth-token", "forged"),
        ):
            code = await _close_code(
                url, auth_token=auth, parameters={"stream_token": token}
            )
            assert code == 1008, (auth, token)
        await asyncio.sleep(0.2)
        assert fake.connection_count == 2
        assert not second.closed
        await handle.hang_up()
        await handle.wait_finished(timeout=10)
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED


async def _ai_lines_at_least_one(call: CallSession) -> bool:
    return await TranscriptEntry.objects.filter(call=call, speaker="ai").aexists()


async def test_a_call_we_ended_is_not_resumed(
    service, start_fake_realtime, twilio, inbound_agent
):
    """The operator ends the call: the bridge ends it before it closes the stream,
    so `<Connect action>` gets a hang-up, not a new stream."""
    script = [WaitForAudio(ms=100, timeout_s=15), Pause(ms=60_000)]
    async with start_fake_realtime() as fake:
        handle, call = await _place(twilio, service, script)
        await handle.wait_stream(timeout=10)
        assert await wait_until(lambda: _ai_lines_at_least_one(call), within_s=15)
        await acall_control_send(call_id=call.pk, command="end", reason="operator")
        await handle.wait_finished(timeout=15)
        assert fake.connection_count == 1
    assert len(handle.call.streams) == 1
    ends = [e.detail for e in handle.call.log if e.kind == "stream-end"]
    assert ends == [ends[0]] and ends[0]["by"] == "server" and ends[0]["code"] == 1000
    assert handle.call.verbs()[-1] == "Hangup", handle.call.verbs()
    assert not handle.call.said()
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED
    types = await _types(call)
    assert "stream-ended" in types and "stream-lost" not in types


def _resumes_never_claimed(start: StreamStart) -> SimulatedCaller:
    """Every stream after the first carries a token the call never issued, so the
    bridge refuses it (1008) before it is claimed: a failed resume."""
    parameters = dict(start.parameters)
    if start.parameters.get("stream_token") and _resumes_never_claimed.seen:
        parameters["stream_token"] = "not-the-issued-one"
    _resumes_never_claimed.seen = True
    return fast_caller(dataclasses.replace(start, parameters=parameters))


_resumes_never_claimed.seen = False  # type: ignore[attr-defined]


@pytest.fixture
async def twilio_failing_resumes(flow_settings):
    _resumes_never_claimed.seen = False  # type: ignore[attr-defined]
    async with TwilioEmulator(
        ACCOUNT_SID, AUTH_TOKEN, caller_factory=_resumes_never_claimed
    ) as emu:
        flow_settings.TWILIO_API_BASE_URL = emu.base_url
        yield emu


async def test_two_failed_resumes_fall_back_to_the_apology(
    service, start_fake_realtime, twilio_failing_resumes, inbound_agent
):
    """The stream breaks; both resumes are refused before they are claimed: the
    second failure in a row takes the fallback (apology: no handoff configured)."""
    inbound_agent.on_model_failure = "hang-up"
    await inbound_agent.asave()
    script = [WaitForAudio(ms=100, timeout_s=15), Pause(ms=60_000)]
    async with start_fake_realtime():
        handle, call = await _place(twilio_failing_resumes, service, script)
        first = await handle.wait_stream(timeout=10)
        assert await wait_until(lambda: _ai_lines_at_least_one(call), within_s=15)
        await first.break_connection()
        finished = await handle.wait_finished(timeout=20)
    assert len(finished.streams) == 3
    assert any("申し訳ございません" in said for said in finished.said()), (
        finished.said()
    )
    await call.arefresh_from_db()
    assert call.status == CallStatus.FAILED
    types = await _types(call)
    assert types.count("stream-lost") == 2, types
    assert "stream-resumed" not in types
    assert "stream-resume-failed" in types and "apology" in types


async def test_a_handed_over_stream_resumes(
    service, start_fake_realtime, twilio, inbound_agent
):
    """`hand_over` (here through the `handover` control command): the bridge closes
    the stream cleanly (1000) without ending the call; Twilio's `<Connect action>`
    gets a fresh stream and the script goes on."""
    async with start_fake_realtime() as fake:
        handle, call = await _place(twilio, service)
        await handle.wait_stream(timeout=10)
        assert await wait_until(lambda: _ai_lines_at_least(call, 2), within_s=20)
        await acall_control_send(call_id=call.pk, command="handover", reason="test")

        async def handed_over() -> bool:
            await call.arefresh_from_db()
            return "stream-handover" in await _types(call)

        assert await wait_until(handed_over, within_s=5)
        await handle.wait_stream(timeout=10, count=2)
        await handle.wait_finished(timeout=30)
        assert fake.connection_count == 2
    ends = [e.detail for e in handle.call.log if e.kind == "stream-end"]
    assert ends[0]["by"] == "server" and ends[0]["code"] == 1000, ends
    assert "caller-script-error" not in [e.kind for e in handle.call.log]
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED
    types = await _types(call)
    assert (await _event(call, "stream-handover")).payload == {"reason": "test"}
    assert types.index("stream-handover") < types.index("stream-lost")
    assert "stream-resumed" in types
    bridge_end = await CallEvent.objects.filter(call=call, type="bridge-end").afirst()
    assert bridge_end.payload == {"reason": "handover: test", "mode": "handover"}
    statuses = [
        e.payload.get("to")
        async for e in CallEvent.objects.filter(call=call, type="status").order_by("id")
    ]
    # The hand-over changed no status: the call went on the AI once, ended once.
    assert statuses == ["ringing", "ai-responding", "completed"], statuses


async def test_two_failed_resumes_hand_off_when_the_profile_says_so(
    service, start_fake_realtime, twilio_failing_resumes, inbound_agent
):
    """Same failures with on_model_failure=handoff and a number: the agent leg is
    dialled and `<Connect action>`'s reply takes the caller into the room."""
    assert inbound_agent.on_model_failure == "handoff"
    assert inbound_agent.handoff_phone_number
    script = [WaitForAudio(ms=100, timeout_s=15), Pause(ms=60_000)]
    async with start_fake_realtime():
        handle, call = await _place(twilio_failing_resumes, service, script)
        first = await handle.wait_stream(timeout=10)
        assert await wait_until(lambda: _ai_lines_at_least_one(call), within_s=15)
        await first.break_connection()

        async def in_the_room() -> bool:
            await call.arefresh_from_db()
            return call.status == CallStatus.HUMAN_CONNECTED

        assert await wait_until(in_the_room, within_s=20), await _types(call)
        await handle.hang_up()
    assert len(handle.call.streams) == 3
    verbs = handle.call.verbs()
    assert "Dial" in verbs, verbs
    types = await _types(call)
    assert types.count("stream-lost") == 2, types
    assert "stream-resume-failed" in types and "handoff-initiated" in types
    assert "apology" not in types
    await call.arefresh_from_db()
    assert call.handoff_trigger == "stream-lost"


async def test_a_half_open_old_stream_lets_go_when_the_resume_is_claimed(
    service, start_fake_realtime, twilio, inbound_agent, flow_settings
):
    """The caller's side of the stream breaks while ours sees nothing (a half-open
    connection): Twilio resumes on a new stream; its claim tells the old bridge to
    let go, which it does without ending the call, and the call goes on."""
    port = int(service.rsplit(":", 1)[1])
    async with TcpForwarder(backend_port=port) as balancer:
        flow_settings.PUBLIC_BASE_URL = balancer.url
        async with start_fake_realtime() as fake:
            handle, call = await _place(twilio, balancer.url)
            await handle.wait_stream(timeout=10)
            assert await wait_until(lambda: _ai_lines_at_least(call, 2), within_s=20)
            balancer.cut_websockets_half_open()
            await handle.wait_stream(timeout=10, count=2)

            async def superseded() -> bool:
                return "stream-superseded" in await _types(call)

            assert await wait_until(superseded, within_s=10)
            await handle.wait_finished(timeout=30)
            assert fake.connection_count == 2
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED, call.end_reason
    assert call.end_reason != "superseded by a resumed stream"
    types = await _types(call)
    assert "stream-broken" not in types  # ours never saw the break
    assert "stale-bridge-end" not in types
    ends = [
        e.payload
        async for e in CallEvent.objects.filter(call=call, type="bridge-end").order_by(
            "id"
        )
    ]
    assert ends[0] == {"reason": "superseded by a resumed stream", "mode": "lost"}


async def test_a_bridge_whose_stream_was_superseded_does_not_end_the_call(
    inbound_agent,
):
    """The store's guard: a bridge ending a call whose newer stream was claimed
    elsewhere leaves the call alone (and says so on the timeline)."""
    call = await sync_to_async(CallSessionFactory)(
        organization=inbound_agent.organization,
        agent=inbound_agent,
        status=CallStatus.AI_RESPONDING,
        stream_sid="MZ-new",
    )
    stale = await CallSession.objects.aget(pk=call.pk)
    stale.stream_sid = "MZ-old"
    await DjangoCallStore(stale).finish(reason="idle-timeout")
    await call.arefresh_from_db()
    assert call.status == CallStatus.AI_RESPONDING
    event = await _event(call, "stale-bridge-end")
    assert event.payload == {"reason": "idle-timeout", "stream_sid": "MZ-old"}
    await DjangoCallStore(call).finish(reason="caller-hangup")
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED
