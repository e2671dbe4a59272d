"""Handoff to a human end to end on the emulators, over real sockets (F-29 … F-34).

The whole service runs on uvicorn; the Twilio emulator rings it, runs its TwiML
(streams, conferences, the agent's leg) and posts every callback; the fake Realtime
server voices the AI. Triggers covered elsewhere: the DTMF digit
(tests/realtime/flow/test_call_behaviour.py::test_dtmf_reaches_the_model_and_the_
handoff_digit_hands_off) and a model failure after retries
(tests/realtime/flow/test_model_failures.py::test_three_failed_reconnects_fall_back_
to_a_human).
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from calls.models import Recording, TranscriptEntry
from calls.status import CallStatus
from handoff.services import (
    BACK_FROM_AGENT_NOTE,
    CONNECTING_LINE,
    NO_AGENT_NOTE,
    TAKE_MESSAGE_NOTE,
)
from handoff.twiml import AGENT_ANNOUNCEMENT, HOLD_MUSIC_URL
from realtime.emulators import scenarios
from realtime.emulators.caller import Pause, Speak, WaitForAudio, WaitUntilQuiet
from realtime.emulators.twilio_api import FarEnd, TwilioEmulator
from tests.handoff.conftest import (
    AGENT_MASKED,
    AGENT_NUMBER,
    api_post,
    conference_of,
    event_types,
    events_of,
    place_inbound_call,
    wait_bridge_heartbeat,
    wait_status,
)
from tests.realtime.flow.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    fast_caller,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

# Hear the greeting, then stay on the line (the handoff happens meanwhile).
LISTEN = [
    WaitForAudio(ms=100, timeout_s=20),
    WaitUntilQuiet(quiet_ms=300, timeout_s=20),
    Pause(ms=120_000),
]


async def _greeting_heard(call, caller) -> None:
    """Wait until the greeting was saved and the caller's playback is idle."""

    async def quiet() -> bool:
        saved = await TranscriptEntry.objects.filter(
            call_id=call.pk, speaker="ai"
        ).aexists()
        return saved and caller.heard_ms > 0 and caller.queued_ms == 0

    assert await wait_until(quiet, within_s=20), "the greeting never finished"


async def test_seed_flow_operator_api_to_human_and_hang_up(
    service, start_fake_realtime, twilio, inbound_agent, operator, token, monitor
):
    """Inbound call with the AI → operator asks over the API → farewell heard →
    model socket closed → agent dialled into handoff-<id> with the exact conference
    TwiML → caller moved into the same room on hold music → agent joins →
    human-connected → agent hangs up → conference recording stored → completed."""
    farewell = inbound_agent.handoff_farewell
    async with start_fake_realtime() as fake:
        handle, call = await place_inbound_call(twilio, service, LISTEN)
        await monitor.join(call)
        caller = await handle.wait_stream(timeout=10)
        await _greeting_heard(call, caller)
        await wait_bridge_heartbeat(call)
        asked_at = asyncio.get_running_loop().time()
        heard_before = caller.heard_ms

        reply = await api_post(
            f"{service}/api/calls/{call.pk}/handoff",
            token=token,
            body={"reason": "お客様のご希望"},
        )

        assert reply.status_code == 202, reply.text
        body = reply.json()
        assert body["call_id"] == call.pk
        assert body["status"] == CallStatus.TRANSFERRING
        assert body["agent_number"] == AGENT_MASKED
        assert body["created"] is True
        assert body["agent_call_sid"].startswith("CA")

        # The bridge says the farewell, then lets go: the stream ends, the model
        # socket closes.
        await caller.wait_closed(timeout_s=20)

        async def model_closed() -> bool:
            return fake.open_connections == 0

        assert await wait_until(model_closed, within_s=5), "model socket left open"
        goodbye = [
            e
            for e in fake.connections[0].received
            if e.get("type") == "response.create"
            and farewell in json.dumps(e, ensure_ascii=False)
        ]
        assert goodbye, fake.connections[0].received_types()
    farewell_audio = [r for r in caller.media_received() if r.at > asked_at]
    assert farewell_audio, "no audio reached the caller after the request"
    assert caller.heard_ms - heard_before >= 200
    ai_lines = [
        t
        async for t in TranscriptEntry.objects.filter(
            call_id=call.pk, speaker="ai"
        ).values_list("text", flat=True)
    ]
    assert any(farewell in line for line in ai_lines), ai_lines

    # The agent's leg: exactly one call to the number, with the exact TwiML.
    agent_calls = twilio.calls_to(AGENT_NUMBER)
    assert [c.sid for c in agent_calls] == [body["agent_call_sid"]]
    agent_leg = agent_calls[0]
    assert agent_leg.direction == "outbound-api"
    assert agent_leg.options.twiml is not None
    root, conference = conference_of(agent_leg.options.twiml)
    assert [child.tag for child in root] == ["Say", "Dial"]
    agent_dial = root.find("Dial")
    assert agent_dial is not None and agent_dial.attrib == {}
    say = root.find("Say")
    assert say is not None and say.text == AGENT_ANNOUNCEMENT
    assert say.attrib == {"language": "ja-JP", "voice": "Polly.Mizuki"}
    room = f"handoff-{call.pk}"
    assert conference.text == room
    assert conference.attrib == {
        "startConferenceOnEnter": "true",
        "endConferenceOnExit": "true",
        "record": "record-from-start",
        "recordingStatusCallback": f"{service}/api/twilio/recording/status/{call.pk}",
        "recordingStatusCallbackEvent": "completed",
        "statusCallback": f"{service}/api/twilio/conference/status/{call.pk}",
        "statusCallbackEvent": "start end join leave",
    }
    assert agent_leg.options.status_callback == (
        f"{service}/api/twilio/handoff/agent-status/{call.pk}"
    )
    assert agent_leg.said() == [AGENT_ANNOUNCEMENT]

    # The caller's call was updated into the same room, waiting on hold music.
    updates = handle.call.entries("update")
    assert len(updates) == 1, updates
    caller_root, caller_conference = conference_of(updates[0].detail["twiml"])
    caller_dial = caller_root.find("Dial")
    assert caller_dial is not None
    # When the room ends, Twilio asks us what the caller hears next (F-34).
    assert caller_dial.attrib == {
        "action": f"{service}/api/twilio/stream-ended/{call.pk}"
    }
    assert caller_conference.text == room
    assert caller_conference.attrib == {
        "startConferenceOnEnter": "false",
        "endConferenceOnExit": "false",
        "waitUrl": HOLD_MUSIC_URL,
        "statusCallback": f"{service}/api/twilio/conference/status/{call.pk}",
        "statusCallbackEvent": "start end join leave",
    }
    conference_room = twilio.conference(room)
    await asyncio.wait_for(conference_room.began.wait(), timeout=10)
    assert set(conference_room.joined) == {handle.sid, agent_leg.sid}
    assert "stream-stop" in [e.kind for e in handle.log]  # Twilio ended the stream

    await wait_status(call, CallStatus.HUMAN_CONNECTED)
    assert call.handoff_connected_at is not None
    assert call.handoff_trigger == "api"
    assert call.handoff_reason == "お客様のご希望"
    assert call.handoff_requested_by_id is not None
    assert call.handoff_conference_name == room
    assert call.handoff_agent_call_sid == agent_leg.sid

    # The human hangs up: the room ends (their leg ends it), the recording
    # arrives, the caller's call completes.
    await twilio.hang_up(agent_leg.sid)
    await handle.wait_finished(timeout=10)
    await wait_status(call, CallStatus.COMPLETED)

    async def recorded() -> bool:
        return await Recording.objects.filter(call_id=call.pk).aexists()

    assert await wait_until(recorded, within_s=10), await event_types(call)
    recording = await Recording.objects.aget(call_id=call.pk)
    assert recording.source == Recording.Source.CONFERENCE
    assert recording.status == Recording.Status.COMPLETED
    assert recording.recording_sid == conference_room.recording_sid
    assert recording.url and recording.duration_s

    # Every step is on the timeline, in order.
    types = await event_types(call)
    # The human may join before the farewell ends and the caller is moved.
    for steps in (
        ["handoff-initiated", "handoff-agent-dialled", "conference-participant-join"],
        ["handoff-agent-dialled", "handoff-caller-moved", "recording"],
    ):
        positions = [types.index(step) for step in steps]
        assert positions == sorted(positions), types
    for step in ("handoff-agent-status", "bridge-end", "conference-participant-leave"):
        assert step in types, (step, types)
    statuses = [
        (e.payload["from"], e.payload["to"]) for e in await events_of(call, "status")
    ]
    assert (CallStatus.AI_RESPONDING, CallStatus.TRANSFERRING) in statuses
    assert (CallStatus.TRANSFERRING, CallStatus.HUMAN_CONNECTED) in statuses
    assert statuses[-1][1] == CallStatus.COMPLETED
    initiated = (await events_of(call, "handoff-initiated"))[0]
    assert initiated.payload == {
        "trigger": "api",
        "reason": "お客様のご希望",
        "agent": AGENT_MASKED,
    }
    bridge_end = (await events_of(call, "bridge-end"))[0]
    assert bridge_end.payload["mode"] == "handoff"

    system = [
        t
        async for t in TranscriptEntry.objects.filter(
            call_id=call.pk, speaker="system"
        ).values_list("text", flat=True)
    ]
    assert CONNECTING_LINE in system

    messages = await monitor.drain()
    initiated_messages = [m for m in messages if m["type"] == "handoff.initiated"]
    assert initiated_messages == [
        {
            "type": "handoff.initiated",
            "call_id": call.pk,
            "trigger": "api",
            "agent": AGENT_MASKED,
        }
    ]
    assert any(
        m["type"] == "call.event" and m["event"] == "handoff-initiated"
        for m in messages
    )
    assert any(
        m["type"] == "transcript.update" and m["text"] == CONNECTING_LINE
        for m in messages
    )
    assert any(m["type"] == "handoff.connected" for m in messages)
    assert [m["status"] for m in messages if m["type"] == "call.status"][-3:] == [
        CallStatus.TRANSFERRING,
        CallStatus.HUMAN_CONNECTED,
        CallStatus.COMPLETED,
    ]


async def test_letting_go_of_the_model_is_neither_an_error_nor_a_reconnect(
    service, start_fake_realtime, twilio, inbound_agent, token
):
    """The bridge closes the model socket on purpose after the farewell: the
    timeline shows no model error and no reconnect, and no new model session is
    opened."""
    async with start_fake_realtime() as fake:
        handle, call = await place_inbound_call(twilio, service, LISTEN)
        caller = await handle.wait_stream(timeout=10)
        await _greeting_heard(call, caller)
        reply = await api_post(f"{service}/api/calls/{call.pk}/handoff", token=token)
        assert reply.status_code == 202, reply.text
        await wait_status(call, CallStatus.HUMAN_CONNECTED)

        async def bridge_ended() -> bool:
            return "bridge-end" in await event_types(call)

        assert await wait_until(bridge_ended, within_s=10)
        await asyncio.sleep(0.5)  # longer than the first reconnect back-off
        assert fake.connection_count == 1
    types = await event_types(call)
    assert "error" not in types and "model-reconnect" not in types, types
    await twilio.hang_up(call.handoff_agent_call_sid)
    await wait_status(call, CallStatus.COMPLETED)


async def _assert_handed_to_the_human(call, handle, twilio, fake) -> str:
    """The handoff completed: one agent leg, the caller in its room, the human
    connected, the model socket closed. Return the agent leg's SID."""
    await wait_status(call, CallStatus.HUMAN_CONNECTED)
    agent_legs = twilio.calls_to(AGENT_NUMBER)
    assert len(agent_legs) == 1, agent_legs
    room = twilio.conference(f"handoff-{call.pk}")
    await asyncio.wait_for(room.began.wait(), timeout=10)
    assert set(room.joined) == {handle.sid, agent_legs[0].sid}

    async def model_closed() -> bool:
        return fake.open_connections == 0

    assert await wait_until(model_closed, within_s=5), "model socket left open"
    assert call.handoff_agent_call_sid == agent_legs[0].sid
    return agent_legs[0].sid


@pytest.mark.parametrize("find_by", ["phoneNumber", "callSid"])
async def test_handoff_by_phone_finds_the_live_call(
    service, start_fake_realtime, twilio, inbound_agent, token, find_by
):
    """`handoff-by-phone` finds the live call by the caller's number in a Japanese
    format, or by Twilio's CallSid, and hands it off."""
    async with start_fake_realtime() as fake:
        handle, call = await place_inbound_call(twilio, service, LISTEN)
        caller = await handle.wait_stream(timeout=10)
        await _greeting_heard(call, caller)
        await wait_bridge_heartbeat(call)
        key = {"phoneNumber": "090-1234-5678", "callSid": handle.sid}[find_by]
        reply = await api_post(
            f"{service}/api/calls/handoff-by-phone",
            token=token,
            body={find_by: key, "reason": "電話番号から"},
        )
        assert reply.status_code == 202, reply.text
        body = reply.json()
        assert body["call_id"] == call.pk and body["created"] is True
        assert body["agent_number"] == AGENT_MASKED
        agent_sid = await _assert_handed_to_the_human(call, handle, twilio, fake)
        assert body["agent_call_sid"] == agent_sid
    assert call.handoff_trigger == "api-by-phone"
    assert call.handoff_reason == "電話番号から"
    await twilio.hang_up(agent_sid)
    await wait_status(call, CallStatus.COMPLETED)


async def test_ai_tool_requests_the_handoff(
    service, start_fake_realtime, twilio, inbound_agent
):
    """The model calls `request_operator_handoff` on the caller's first turn: its
    output goes back to the model, and the call is handed off with its reason."""
    scenario = scenarios.ToolCall(
        tool_name="request_operator_handoff",
        arguments='{"reason":"担当者との会話を希望"}',
        speak_instructions=True,
    )
    script = [
        WaitForAudio(ms=100, timeout_s=20),
        WaitUntilQuiet(quiet_ms=300, timeout_s=20),
        Speak(ms=1000),
        Pause(ms=120_000),
    ]
    async with start_fake_realtime(scenario) as fake:
        handle, call = await place_inbound_call(twilio, service, script)
        agent_sid = await _assert_handed_to_the_human(call, handle, twilio, fake)
        outputs = [
            json.loads(e["item"]["output"])
            for e in fake.connections[0].received
            if e.get("type") == "conversation.item.create"
            and e["item"].get("type") == "function_call_output"
        ]
    assert outputs == [{"ok": True, "message": "担当者に引き継ぎます。"}]
    assert call.handoff_trigger == "ai-tool"
    assert call.handoff_reason == "担当者との会話を希望"
    tool_events = await events_of(call, "tool-call")
    assert tool_events[0].payload["name"] == "request_operator_handoff"
    await twilio.hang_up(agent_sid)
    await wait_status(call, CallStatus.COMPLETED)


async def _request_handoff(service, token, call, caller) -> dict:
    await _greeting_heard(call, caller)
    await wait_bridge_heartbeat(call)
    reply = await api_post(f"{service}/api/calls/{call.pk}/handoff", token=token)
    assert reply.status_code == 202, reply.text
    return reply.json()


async def _assert_back_with_the_ai(call, handle, fake, *, note: str, reason: str):
    """The caller is on a new stream with a fresh token, the new model session
    has `note` as context, and AI audio reaches the caller again."""
    first = handle.call.streams[0]

    async def new_stream() -> bool:
        return len(handle.call.streams) >= 2

    assert await wait_until(new_stream, within_s=15), (
        f"no new stream; events: {await event_types(call)}"
    )
    await wait_status(call, CallStatus.AI_RESPONDING)
    second = handle.call.streams[1]
    assert second.parameters["stream_token"] != first.parameters["stream_token"]
    assert second.parameters["call_id"] == str(call.pk)
    await second.wait_for_audio(ms=200, timeout_s=15)
    connection = await fake.wait_for_connection(1, timeout_s=5)
    received = connection.received
    told = [
        i
        for i, e in enumerate(received)
        if e.get("type") == "conversation.item.create"
        and note in json.dumps(e, ensure_ascii=False)
    ]
    assert told, connection.received_types()
    # The note is the first thing the new session is asked to answer.
    first_response = next(
        i for i, e in enumerate(received) if e.get("type") == "response.create"
    )
    assert told[0] < first_response, connection.received_types()
    back = await events_of(call, "back-to-ai")
    assert [e.payload["reason"] for e in back] == [reason]
    system = [
        t
        async for t in TranscriptEntry.objects.filter(
            call_id=call.pk, speaker="system"
        ).values_list("text", flat=True)
    ]
    assert system[-1] == "AIとの会話に戻りました。", system
    return second


@pytest.mark.parametrize(
    ("behaviour", "on_unavailable"),
    [
        ("busy", "back-to-ai"),
        ("no-answer", "back-to-ai"),
        ("failed", "back-to-ai"),
        ("busy", "take-message"),
    ],
)
async def test_agent_unavailable_returns_the_caller_to_the_ai(
    service,
    start_fake_realtime,
    twilio,
    inbound_agent,
    token,
    behaviour,
    on_unavailable,
):
    """F-33: the human's leg is busy / not answered / fails: the caller is not left
    in silence but goes back to the AI on a new stream, with the note that no one
    is free (or that a message should be taken, as the profile says)."""
    inbound_agent.on_agent_unavailable = on_unavailable
    await inbound_agent.asave(update_fields=["on_agent_unavailable"])
    twilio.far_ends[AGENT_NUMBER] = FarEnd(behaviour)
    note = TAKE_MESSAGE_NOTE if on_unavailable == "take-message" else NO_AGENT_NOTE
    async with start_fake_realtime() as fake:
        handle, call = await place_inbound_call(twilio, service, LISTEN)
        caller = await handle.wait_stream(timeout=10)
        await _request_handoff(service, token, call, caller)
        await _assert_back_with_the_ai(
            call, handle, fake, note=note, reason=f"agent-{behaviour}"
        )
        await twilio.hang_up(handle.sid)
        await wait_status(call, CallStatus.COMPLETED)
    assert twilio.calls_to(AGENT_NUMBER)[0].status == behaviour
    statuses = [
        e.payload["status"] for e in await events_of(call, "handoff-agent-status")
    ]
    assert behaviour in statuses, statuses


async def test_agent_hanging_up_before_joining_returns_the_caller_to_the_ai(
    service, start_fake_realtime, twilio, inbound_agent, token
):
    """F-33: the human answers, then hangs up during the announcement, before
    joining the room: their leg completes without anyone to talk to. The caller,
    waiting in the room on hold music, goes back to the AI."""
    twilio.far_ends[AGENT_NUMBER] = FarEnd("answer", hangup_after_s=0.005)
    async with start_fake_realtime() as fake:
        handle, call = await place_inbound_call(twilio, service, LISTEN)
        caller = await handle.wait_stream(timeout=10)
        await _request_handoff(service, token, call, caller)
        await _assert_back_with_the_ai(
            call, handle, fake, note=NO_AGENT_NOTE, reason="agent-completed"
        )
        await twilio.hang_up(handle.sid)
        await wait_status(call, CallStatus.COMPLETED)
    agent_leg = twilio.calls_to(AGENT_NUMBER)[0]
    assert "conference-join" not in [e.kind for e in agent_leg.log]


@pytest.mark.parametrize("return_to_ai", [True, False])
async def test_agent_leaving_returns_to_the_ai_only_when_configured(
    service, start_fake_realtime, twilio, inbound_agent, token, return_to_ai
):
    """F-34: the human hangs up after joining. With return_to_ai_after_agent the
    caller goes back to the AI with the conversation so far; without it the room
    ends with the human and the call completes."""
    inbound_agent.return_to_ai_after_agent = return_to_ai
    await inbound_agent.asave(update_fields=["return_to_ai_after_agent"])
    async with start_fake_realtime() as fake:
        handle, call = await place_inbound_call(twilio, service, LISTEN)
        caller = await handle.wait_stream(timeout=10)
        await _request_handoff(service, token, call, caller)
        agent_sid = await _assert_handed_to_the_human(call, handle, twilio, fake)
        await twilio.hang_up(agent_sid)
        if return_to_ai:
            await _assert_back_with_the_ai(
                call, handle, fake, note=BACK_FROM_AGENT_NOTE, reason="agent-left"
            )
            connection = fake.connections[1]
            seeded = json.dumps(connection.received, ensure_ascii=False)
            assert CONNECTING_LINE in seeded  # the conversation so far, re-seeded
            await twilio.hang_up(handle.sid)
        else:
            await handle.wait_finished(timeout=10)
            assert len(handle.call.streams) == 1
        await wait_status(call, CallStatus.COMPLETED)
    if not return_to_ai:
        assert call.end_reason == "agent-left"


class LaggingConferenceCallbacks(httpx.AsyncBaseTransport):
    """Conference status callbacks as Twilio sends them: fire and forget.

    Twilio does not wait for a status callback before the call goes on; the
    emulator does (it posts conference events, then lets the callers continue).
    This transport answers conference callbacks at once and delivers them a little
    later, so the calls move on first, as on Twilio.
    """

    def __init__(self, lag_s: float = 0.1) -> None:
        self.lag_s = lag_s
        self.network = httpx.AsyncHTTPTransport()
        self.pending: set[asyncio.Task[None]] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "/api/twilio/conference/status/" not in request.url.path:
            return await self.network.handle_async_request(request)
        body = await request.aread()
        late = httpx.Request(
            request.method, request.url, headers=request.headers, content=body
        )
        task = asyncio.create_task(self._deliver(late))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return httpx.Response(204, request=request)

    async def _deliver(self, request: httpx.Request) -> None:
        await asyncio.sleep(self.lag_s)
        response = await self.network.handle_async_request(request)
        await response.aread()
        await response.aclose()

    async def aclose(self) -> None:
        if self.pending:
            await asyncio.wait(self.pending, timeout=5)
        await self.network.aclose()


@pytest.fixture
async def twilio_lagging_callbacks(flow_settings):
    """The Twilio emulator, with conference callbacks delivered as Twilio does."""
    transport = LaggingConferenceCallbacks()
    async with TwilioEmulator(
        ACCOUNT_SID, AUTH_TOKEN, caller_factory=fast_caller, transport=transport
    ) as emu:
        flow_settings.TWILIO_API_BASE_URL = emu.base_url
        yield emu
    await transport.aclose()


@pytest.mark.parametrize("return_to_ai", [True, False])
async def test_agent_leaving_with_twilio_paced_callbacks(
    service,
    start_fake_realtime,
    twilio_lagging_callbacks,
    inbound_agent,
    token,
    return_to_ai,
):
    """F-34 as Twilio runs it: when the human (endConferenceOnExit) hangs up, the
    room ends and the caller's TwiML goes on at once, before the participant-leave
    callback reaches us. The caller must still come back to the AI when the
    profile says so (and be let go otherwise), not be hung up by the end of the
    document."""
    twilio = twilio_lagging_callbacks
    inbound_agent.return_to_ai_after_agent = return_to_ai
    await inbound_agent.asave(update_fields=["return_to_ai_after_agent"])
    async with start_fake_realtime() as fake:
        handle, call = await place_inbound_call(twilio, service, LISTEN)
        caller = await handle.wait_stream(timeout=10)
        await _request_handoff(service, token, call, caller)
        agent_sid = await _assert_handed_to_the_human(call, handle, twilio, fake)
        await twilio.hang_up(agent_sid)
        if return_to_ai:
            await _assert_back_with_the_ai(
                call, handle, fake, note=BACK_FROM_AGENT_NOTE, reason="agent-left"
            )
            assert not handle.call.errors, handle.call.errors
            await twilio.hang_up(handle.sid)
        else:
            await handle.wait_finished(timeout=10)
            assert len(handle.call.streams) == 1
        await wait_status(call, CallStatus.COMPLETED)
        failed = [c for c in twilio.callbacks if (c.status_code or 500) >= 500]
        assert not failed, failed


async def test_model_server_going_away_falls_back_to_a_human_after_retries(
    service, start_fake_realtime, twilio, inbound_agent
):
    """F-25 → F-30: the Realtime server closes the socket cleanly (1001, going
    away) and stops listening; after the retries the call is handed to a human.

    (The abrupt drop is tests/realtime/flow/test_model_failures.py::
    test_three_failed_reconnects_fall_back_to_a_human.)"""
    async with start_fake_realtime() as fake:
        handle, call = await place_inbound_call(twilio, service, LISTEN)
        caller = await handle.wait_stream(timeout=10)
        await _greeting_heard(call, caller)
        await fake.close()
        await wait_status(
            call, CallStatus.TRANSFERRING, CallStatus.HUMAN_CONNECTED, within_s=12
        )
    assert call.handoff_trigger == "model-failure"
    types = await event_types(call)
    assert "model-failed" in types, types
    await wait_status(call, CallStatus.HUMAN_CONNECTED)
    await twilio.hang_up(call.handoff_agent_call_sid)
    await wait_status(call, CallStatus.COMPLETED)


async def test_handoff_in_the_first_second_still_says_the_farewell(
    service, start_fake_realtime, twilio, inbound_agent, token
):
    """A handoff asked for as soon as the stream starts (before the bridge's first
    heartbeat) is still the bridge's to finish: the farewell is said, then the
    caller is moved once."""
    farewell = inbound_agent.handoff_farewell
    async with start_fake_realtime() as fake:
        handle, call = await place_inbound_call(twilio, service, LISTEN)
        await handle.wait_stream(timeout=10)
        await wait_status(call, CallStatus.AI_RESPONDING)
        reply = await api_post(f"{service}/api/calls/{call.pk}/handoff", token=token)
        assert reply.status_code == 202, reply.text
        await _assert_handed_to_the_human(call, handle, twilio, fake)

        async def moved() -> bool:
            return "handoff-caller-moved" in await event_types(call)

        assert await wait_until(moved, within_s=10)
    ai_lines = [
        t
        async for t in TranscriptEntry.objects.filter(
            call_id=call.pk, speaker="ai"
        ).values_list("text", flat=True)
    ]
    assert any(farewell in line for line in ai_lines), ai_lines
    assert len(handle.call.entries("update")) == 1
    assert (await event_types(call)).count("handoff-caller-moved") == 1
    await twilio.hang_up(call.handoff_agent_call_sid)
    await wait_status(call, CallStatus.COMPLETED)
