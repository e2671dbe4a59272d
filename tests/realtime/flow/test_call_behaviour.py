"""Barge-in, tools, DTMF, limits and bad frames, over real sockets end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
import websockets
from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter

from agents.models import Appointment
from calls.models import CallEvent, CallSession
from calls.status import CallStatus
from realtime.emulators import scenarios
from realtime.emulators.caller import (
    Dtmf,
    HangUp,
    Pause,
    Speak,
    WaitForAudio,
    WaitUntilQuiet,
    sign_request,
)
from tests.realtime.flow.conftest import (
    AUTH_TOKEN,
    CALLER_NUMBER,
    INBOUND_NUMBER,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]
CLIENT_EVENT = TypeAdapter(RealtimeClientEvent)

GREET_THEN_TURN = [
    WaitForAudio(ms=100, timeout_s=40),
    WaitUntilQuiet(quiet_ms=300, timeout_s=40),
    Speak(ms=1000),
    Pause(ms=800),
    WaitForAudio(ms=100, timeout_s=40),
    WaitUntilQuiet(quiet_ms=300, timeout_s=40),
    HangUp(),
]
# A turn that makes the model call a tool. The caller stays on the line and the
# test hangs up once the answer to the tool's output was heard: the end of the
# preamble is no cue, the function call can come just after it.
TOOL_TURN = [
    WaitForAudio(ms=100, timeout_s=40),
    WaitUntilQuiet(quiet_ms=300, timeout_s=40),
    Speak(ms=1000),
    Pause(ms=120000),
]


async def _call(twilio, service, script):
    handle = await twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{service}/api/twilio/voice/incoming",
        caller_script=script,
        status_callback=f"{service}/api/twilio/status",
    )
    return handle, await CallSession.objects.aget(twilio_call_sid=handle.sid)


async def _hang_up_after_the_tool_answer(handle, fake):
    """Hang up once the model's answer after the tool output has been played."""
    connection = await fake.wait_for_connection(0, timeout_s=10)
    # Greeting, the turn with the function call, the answer to its output.
    await connection.wait_sent("response.done", count=3, timeout_s=30)
    caller = await handle.wait_stream()
    await caller.wait_until_quiet(300, require_audio=False, timeout_s=30)
    await caller.hang_up()
    await handle.wait_finished(timeout=30)


async def _events(call, type_=None):
    qs = CallEvent.objects.filter(call=call).order_by("id")
    if type_:
        qs = qs.filter(type=type_)
    return [e async for e in qs]


def _assert_sdk_valid(connection):
    """Every event the bridge sent validates against the official SDK union."""
    for event in connection.received:
        assert isinstance(event, dict), event
        CLIENT_EVENT.validate_python(event)


async def test_barge_in_clears_truncates_at_heard_audio_and_flags_transcript(
    service, start_fake_realtime, twilio, inbound_agent
):
    """The caller talks over a long answer: Twilio is cleared, the item is truncated
    at what was heard (never more than was sent), and the AI line is flagged."""
    script = [
        WaitForAudio(ms=100, timeout_s=40),
        WaitUntilQuiet(quiet_ms=300, timeout_s=40),
        Speak(ms=800),
        Pause(ms=700),
        WaitForAudio(ms=1500, timeout_s=40),  # part of the 8 s answer plays
        Speak(ms=1000),  # barge in
        Pause(ms=800),
        WaitForAudio(ms=100, timeout_s=40),
        HangUp(),
    ]
    async with start_fake_realtime(scenarios.BARGE_IN) as fake:
        handle, call = await _call(twilio, service, script)
        await handle.wait_finished(timeout=45)
        connection = fake.connections[0]
        truncates = [
            e
            for e in connection.received
            if e.get("type") == "conversation.item.truncate"
        ]
        assert truncates, connection.received_types()
        assert all(t.get("type") != "response.cancel" for t in connection.received)
        fake.assert_complete()
        _assert_sdk_valid(connection)
    caller = handle.caller
    caller.assert_clean()
    assert caller.clears >= 1
    heard_ms = truncates[0]["audio_end_ms"]
    assert 0 < heard_ms < 8000
    await call.arefresh_from_db()
    assert call.barge_in_count >= 1
    interrupted = [e async for e in call.transcript.filter(interrupted=True)]
    assert interrupted and interrupted[0].speaker == "ai"


async def test_tool_call_creates_appointment_and_answers(
    service, start_fake_realtime, twilio, inbound_agent
):
    scenario = scenarios.ToolCall(
        tool_name="schedule_appointment",
        arguments=json.dumps({"date": "2099-04-01", "time": "10:30", "name": "山田"}),
        speak_instructions=True,
    )
    async with start_fake_realtime(scenario) as fake:
        handle, call = await _call(twilio, service, TOOL_TURN)
        await _hang_up_after_the_tool_answer(handle, fake)
        connection = fake.connections[0]
        outputs = [
            e["item"]
            for e in connection.received
            if e.get("type") == "conversation.item.create"
            and e["item"].get("type") == "function_call_output"
        ]
        _assert_sdk_valid(connection)
        fake.assert_complete()
    assert len(outputs) == 1
    output = json.loads(outputs[0]["output"])
    assert output["ok"] is True and output["time"] == "10:30"
    appointment = await Appointment.objects.aget(call=call)
    assert (
        appointment.name == "山田"
        and appointment.organization_id == call.organization_id
    )
    tool_events = await _events(call, "tool-call")
    assert tool_events[0].payload["name"] == "schedule_appointment"


@pytest.mark.parametrize(
    ("tool_name", "arguments", "error"),
    [
        ("delete_everything", "{}", "unknown tool"),
        (
            "schedule_appointment",
            '{"date": "昨日", "time": "10:00", "name": "x"}',
            "YYYY-MM-DD",
        ),
        ("schedule_appointment", "not json", "tool failed"),
    ],
)
async def test_bad_tool_calls_answer_the_model_with_an_error(
    service, start_fake_realtime, twilio, inbound_agent, tool_name, arguments, error
):
    scenario = scenarios.ToolCall(tool_name=tool_name, arguments=arguments)
    async with start_fake_realtime(scenario) as fake:
        handle, call = await _call(twilio, service, TOOL_TURN)
        await _hang_up_after_the_tool_answer(handle, fake)
        outputs = [
            json.loads(e["item"]["output"])
            for e in fake.connections[0].received
            if e.get("type") == "conversation.item.create"
            and e["item"].get("type") == "function_call_output"
        ]
    assert outputs and outputs[0]["ok"] is False
    assert error in outputs[0]["error"]
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED


async def test_slow_tool_does_not_stall_audio(
    service, start_fake_realtime, twilio, inbound_agent, monkeypatch
):
    """While a tool takes a second, caller audio keeps reaching the model."""
    from realtime import tools

    original = tools.REGISTRY["get_customer_info"]

    async def slow(ctx, args):
        await asyncio.sleep(1.0)
        return await original.func(ctx, args)

    monkeypatch.setitem(
        tools.REGISTRY, "get_customer_info", dataclasses.replace(original, func=slow)
    )
    scenario = scenarios.ToolCall(
        tool_name="get_customer_info",
        arguments=json.dumps({"phone_number": CALLER_NUMBER}),
    )
    async with start_fake_realtime(scenario) as fake:
        handle, _call_row = await _call(twilio, service, TOOL_TURN)
        connection = await fake.wait_for_connection(0, timeout_s=10)
        await connection.wait_received("response.create")  # the greeting
        await connection.wait_received("conversation.item.create")
        first_call = await asyncio.wait_for(
            _first_function_call(connection), timeout=20
        )
        before = connection.received_count
        await asyncio.sleep(0.6)  # inside the tool's second
        assert connection.received_count - before >= 10, "audio stalled during the tool"
        assert first_call
        await _hang_up_after_the_tool_answer(handle, fake)


async def _first_function_call(connection):
    while True:
        if any(
            e.get("type") == "response.function_call_arguments.done"
            for e in connection.sent
        ):
            return True
        await asyncio.sleep(0.02)


def test_customer_lookup_is_scoped_to_the_organisation(inbound_agent):
    """get_customer_info finds the organisation's own customer and nobody else's."""
    from asgiref.sync import async_to_sync

    from realtime.tools import REGISTRY, ToolContext
    from tests.agents.factories import CustomerFactory, OrganizationFactory

    own = CustomerFactory(
        organization=inbound_agent.organization, phone_number="+819011112222"
    )
    CustomerFactory(organization=OrganizationFactory(), phone_number="+819033334444")
    lookup = async_to_sync(REGISTRY["get_customer_info"].func)
    ctx = ToolContext(call_id=0, organization_id=inbound_agent.organization_id)
    found = lookup(ctx, {"phone_number": "090-1111-2222"})
    assert found.output["found"] is True and found.output["name"] == own.name
    other = lookup(ctx, {"phone_number": "090-3333-4444"})
    assert other.output == {"ok": True, "found": False}


async def test_dtmf_reaches_the_model_and_the_handoff_digit_hands_off(
    service, start_fake_realtime, twilio, inbound_agent
):
    script = [
        WaitForAudio(ms=100, timeout_s=40),
        WaitUntilQuiet(quiet_ms=300, timeout_s=40),
        Dtmf("5"),
        Pause(ms=400),
        Dtmf("0"),
        Pause(ms=2000),
    ]
    async with start_fake_realtime() as fake:
        handle, call = await _call(twilio, service, script)

        async def handed_off():
            await call.arefresh_from_db()
            return call.status in (CallStatus.TRANSFERRING, CallStatus.HUMAN_CONNECTED)

        assert await wait_until(handed_off, within_s=15), call.status
        notes = [
            e
            for e in fake.connections[0].received
            if e.get("type") == "conversation.item.create"
            and "「5」" in json.dumps(e, ensure_ascii=False)
        ]
        assert notes
    assert call.handoff_trigger == "dtmf"
    await twilio.hang_up(handle.sid)


async def test_max_duration_says_goodbye_then_hangs_up(
    service, start_fake_realtime, twilio, inbound_agent
):
    await CallSession.objects.none().aexists()
    inbound_agent.max_call_duration_s = 3
    await inbound_agent.asave(update_fields=["max_call_duration_s"])
    async with start_fake_realtime() as fake:
        handle, call = await _call(twilio, service, [Pause(ms=60000)])
        finished = await handle.wait_finished(timeout=30)
        assert fake.open_connections == 0
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "goodbye"
    limits = [e.payload["kind"] for e in await _events(call, "limit")]
    assert limits == ["max-duration"]
    assert finished.log  # Twilio saw the stream end and hung up


async def test_idle_caller_is_prompted_then_the_call_ends(
    service, start_fake_realtime, twilio, inbound_agent
):
    inbound_agent.idle_timeout_s = 2
    await inbound_agent.asave(update_fields=["idle_timeout_s"])
    async with start_fake_realtime() as fake:
        handle, call = await _call(twilio, service, [Pause(ms=60000)])
        await handle.wait_finished(timeout=30)
        assert fake.open_connections == 0
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED
    limits = [e.payload["kind"] for e in await _events(call, "limit")]
    assert limits == ["idle-prompt", "idle-timeout"]
    ai_lines = [
        t
        async for t in call.transcript.filter(speaker="ai").values_list(
            "text", flat=True
        )
    ]
    assert len(ai_lines) >= 3  # greeting, the prompt, the goodbye


BAD_FRAMES = [
    b"\x00\x01binary",
    "not json",
    "[1, 2, 3]",
    json.dumps({"event": "media", "streamSid": 5, "media": {"payload": 7}}),
    json.dumps({"event": "dance"}),
    json.dumps({"event": "media", "media": {"payload": "A" * 300_000}}),
]


async def test_malformed_twilio_frames_close_cleanly_and_the_service_goes_on(
    service, start_fake_realtime, twilio, inbound_agent
):
    """Each broken stream is closed, recorded, and its model socket closed; then a
    normal call works: the process keeps serving."""
    async with start_fake_realtime() as fake:
        for frame in BAD_FRAMES:
            handle, call = await _call(twilio, service, [Pause(ms=60000)])
            caller = await handle.wait_stream(timeout=10)
            await caller._ws.send(frame)
            await caller.wait_closed(timeout_s=10)
            await call.arefresh_from_db()
            assert call.status == CallStatus.FAILED, frame
            errors = await _events(call, "error")
            assert errors and errors[0].payload["source"] == "twilio"
            assert await wait_until(_closed(fake), within_s=5)
        good, good_call = await _call(twilio, service, GREET_THEN_TURN)
        await good.wait_finished(timeout=40)
        await good_call.arefresh_from_db()
        assert good_call.status == CallStatus.COMPLETED


def _closed(fake):
    async def predicate():
        return fake.open_connections == 0

    return predicate


async def test_a_second_signed_socket_cannot_join_a_streaming_call(
    service, twilio, start_fake_realtime, inbound_agent
):
    """Once the call's stream has spent its token, another upgrade (even one signed
    with the account's token) is refused at once with 1008."""
    async with start_fake_realtime():
        handle, call = await _call(twilio, service, [Pause(ms=60000)])
        await handle.wait_stream(timeout=10)

        async def claimed():
            await call.arefresh_from_db()
            return call.stream_token_used_at is not None

        assert await wait_until(claimed, within_s=5)
        url = (
            service.replace("http://", "ws://") + f"/api/twilio/media-stream/{call.pk}"
        )
        wss = "wss://" + url.split("://", 1)[1]
        headers = {"X-Twilio-Signature": sign_request(AUTH_TOKEN, wss, {})}
        async with websockets.connect(url, additional_headers=headers) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), timeout=5)
            assert ws.close_code == 1008
        await twilio.hang_up(handle.sid)
