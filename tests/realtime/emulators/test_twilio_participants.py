"""The emulator's Conference Participants resource, through the real ``twilio`` library:
a supervisor's phone added muted or coaching, who hears whom, bad input refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, VoiceResponse

from realtime.emulators.twilio_api import TwilioEmulator
from realtime.emulators.twilio_participants import audible
from tests.realtime.emulators.test_twilio_api import AC, APP, SID, TOKEN, FakeApp

ROOM = "handoff-7"
SUPERVISOR = "+819011112222"
FROM = "+81312345678"


@pytest.fixture
def app() -> FakeApp:
    return FakeApp()


@pytest.fixture
async def emu(app: FakeApp) -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(
        AC, TOKEN, transport=httpx.MockTransport(app.handle)
    ) as emulator:
        yield emulator


@pytest.fixture
def client(emu: TwilioEmulator) -> Client:
    client = Client(AC, TOKEN)
    client.api.base_url = emu.base_url
    return client


async def joined(emu: TwilioEmulator, sid: str) -> None:
    for _ in range(200):
        if sid in emu.conference(ROOM).participants:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{sid} never joined {ROOM}")


@pytest.fixture
async def room_with_caller_and_agent(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> tuple[str, str]:
    """The handoff as our app builds it: the caller waits, the agent starts it."""
    caller_dial = Dial()
    caller_dial.conference(ROOM, start_conference_on_enter=False)
    app.twiml["/voice"] = str(VoiceResponse().append(caller_dial))
    caller = await emu.inbound_call(
        from_="+819012345678", to=FROM, voice_url=f"{APP}/voice"
    )
    agent_dial = Dial()
    agent_dial.conference(ROOM, end_conference_on_exit=True)
    agent = await asyncio.to_thread(
        client.calls.create,
        to="+818070239355",
        from_=FROM,
        twiml=str(VoiceResponse().append(agent_dial)),
    )
    await joined(emu, caller.sid)
    await joined(emu, agent.sid)
    return caller.sid, agent.sid


async def add(client: Client, conference: str, **kwargs: Any) -> Any:
    kwargs.setdefault("from_", FROM)
    kwargs.setdefault("to", SUPERVISOR)
    return await asyncio.to_thread(
        client.conferences(conference).participants.create, **kwargs
    )


async def test_a_muted_participant_hears_everyone_and_is_heard_by_no_one(
    emu: TwilioEmulator,
    client: Client,
    app: FakeApp,
    room_with_caller_and_agent: tuple[str, str],
) -> None:
    caller, agent = room_with_caller_and_agent
    created = await add(
        client,
        ROOM,
        muted=True,
        beep="false",
        conference_status_callback=f"{APP}/room",
        conference_status_callback_event=["join", "leave"],
    )
    assert SID.match(created.call_sid)
    room = emu.conference(ROOM)
    assert (created.conference_sid, created.muted, created.coaching) == (
        room.sid,
        True,
        False,
    )
    assert created.status == "queued"
    leg = emu.call(created.call_sid).call
    assert (leg.to, leg.from_, leg.direction) == (SUPERVISOR, FROM, "outbound-api")
    await joined(emu, created.call_sid)
    assert room.participants[created.call_sid].settings.beep == "false"
    supervisor = created.call_sid
    assert audible(room, speaker=caller, listener=supervisor)
    assert audible(room, speaker=agent, listener=supervisor)
    assert not audible(room, speaker=supervisor, listener=caller)
    assert not audible(room, speaker=supervisor, listener=agent)
    assert audible(room, speaker=caller, listener=agent)  # the others unchanged
    fetched = await asyncio.to_thread(
        client.conferences(room.sid).participants(supervisor).fetch
    )
    assert (fetched.status, fetched.muted) == ("connected", True)
    # The room's callback (ConferenceStatusCallback) says who joined, muted.
    (join,) = app.to("/room")
    assert join.params["StatusCallbackEvent"] == "participant-join"
    assert (join.params["CallSid"], join.params["Muted"]) == (supervisor, "true")
    assert join.params["Coaching"] == "false"


async def test_a_coach_is_heard_by_the_coached_agent_only(
    emu: TwilioEmulator, client: Client, room_with_caller_and_agent: tuple[str, str]
) -> None:
    caller, agent = room_with_caller_and_agent
    room = emu.conference(ROOM)
    created = await add(client, room.sid, coaching=True, call_sid_to_coach=agent)
    assert (created.coaching, created.call_sid_to_coach) == (True, agent)
    await joined(emu, created.call_sid)
    coach = created.call_sid
    assert audible(room, speaker=coach, listener=agent)
    assert not audible(room, speaker=coach, listener=caller)
    assert audible(room, speaker=caller, listener=coach)
    assert audible(room, speaker=agent, listener=coach)
    join = next(e for e in room.events if e.params.get("CallSid") == coach)
    assert (join.params["Coaching"], join.params["CallSidToCoach"]) == ("true", agent)


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"to": ""}, 400, 21201),
        ({"from_": ""}, 400, 21213),
        ({"to": "not-a-number"}, 400, 21211),
        ({"coaching": True}, 400, 21200),  # no CallSidToCoach
        ({"call_sid_to_coach": "CA" + "0" * 32}, 400, 21200),  # not in the room
        ({"muted": "maybe"}, 400, 21200),
        ({"beep": "loud"}, 400, 21200),
        ({"conference_status_callback_event": ["dance"]}, 400, 21200),
    ],
)
async def test_bad_input_is_refused_with_twilios_codes_and_dials_nothing(
    emu: TwilioEmulator,
    client: Client,
    room_with_caller_and_agent: tuple[str, str],
    kwargs: dict[str, Any],
    status: int,
    code: int,
) -> None:
    before = set(emu.calls)
    with pytest.raises(TwilioRestException) as refused:
        await add(client, ROOM, **kwargs)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert set(emu.calls) == before
    assert len(emu.conference(ROOM).participants) == 2


async def test_an_unknown_conference_sid_is_404(emu: TwilioEmulator, client: Client):
    with pytest.raises(TwilioRestException) as refused:
        await add(client, "CF" + "0" * 32)
    assert (refused.value.status, refused.value.code) == (404, 20404)
    assert not emu.calls
