"""Listen from my phone (F-75): the supervisor's phone joins `handoff-<id>` at the
Twilio emulator, muted or coaching the human; refused for a call not with a human."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import close_old_connections
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, VoiceResponse

from agents.models import Operator
from calls.models import CallSession
from calls.status import CallStatus
from calls.supervision import (
    CallNotSupervisable,
    SupervisionForbidden,
    supervision_listen_phone,
)
from realtime.emulators.twilio_api import TwilioEmulator
from realtime.emulators.twilio_participants import audible
from tests.agents.factories import OperatorFactory
from tests.calls.factories import CallSessionFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

AC = "AC" + "3" * 32
TOKEN = "supervision-test-token"
FROM = "+815012345678"
SUPERVISOR_PHONE = "+819011112222"


async def in_thread(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run sync code (ORM, the sync Twilio client) in its own thread and connection."""

    def run() -> Any:
        try:
            return fn(**kwargs)
        finally:
            close_old_connections()

    return await asyncio.to_thread(run)


@pytest.fixture
async def emulator(settings: Any) -> AsyncIterator[TwilioEmulator]:
    settings.TWILIO_ACCOUNT_SID = AC
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.TWILIO_FROM_NUMBER = FROM
    async with TwilioEmulator(AC, TOKEN) as emu:
        settings.TWILIO_API_BASE_URL = emu.base_url
        yield emu


async def handed_off_call(emu: TwilioEmulator) -> tuple[CallSession, str, str]:
    """A call with a human: caller and agent legs in `handoff-<id>` at the emulator."""
    call = await in_thread(
        CallSessionFactory, status=CallStatus.HUMAN_CONNECTED, direction="inbound"
    )
    room = f"handoff-{call.pk}"
    client = Client(AC, TOKEN)
    client.api.base_url = emu.base_url
    legs = []
    for to, starts in (("+819012345678", False), ("+818070239355", True)):
        dial = Dial()
        dial.conference(room, start_conference_on_enter=starts)
        created = await asyncio.to_thread(
            client.calls.create,
            to=to,
            from_=FROM,
            twiml=str(VoiceResponse().append(dial)),
        )
        legs.append(created.sid)
    for _ in range(300):
        rooms = [r for r in emu.conferences.values() if r.friendly_name == room]
        if rooms and len(rooms[0].participants) == 2:
            break
        await asyncio.sleep(0.01)
    caller_leg, agent_leg = legs
    await in_thread(
        CallSession.objects.filter(pk=call.pk).update,
        handoff_conference_name=room,
        handoff_agent_call_sid=agent_leg,
    )
    call = await in_thread(CallSession.objects.get, pk=call.pk)
    return call, caller_leg, agent_leg


def supervisor_of(call: CallSession) -> Operator:
    user = OperatorFactory(organization=call.organization)
    user.user_permissions.add(Permission.objects.get(codename="supervise_call"))
    return Operator.objects.get(pk=user.pk)


async def supervisor_leg(emu: TwilioEmulator, room: str) -> str:
    for _ in range(300):
        legs = [
            sid
            for sid in emu.conference(room).participants
            if emu.calls[sid].to == SUPERVISOR_PHONE
        ]
        if legs:
            return legs[0]
        await asyncio.sleep(0.01)
    raise AssertionError("the supervisor's phone never joined")


@pytest.mark.parametrize("coaching", [False, True])
async def test_the_supervisors_phone_joins_the_room(
    emulator: TwilioEmulator, coaching: bool
) -> None:
    call, caller_leg, agent_leg = await handed_off_call(emulator)
    user = await in_thread(supervisor_of, call=call)
    result = await in_thread(
        supervision_listen_phone,
        call=call,
        user=user,
        phone=SUPERVISOR_PHONE,
        coaching=coaching,
    )
    assert result.action == "listen_phone"
    room = emulator.conference(call.handoff_conference_name)
    leg = await supervisor_leg(emulator, room.friendly_name)
    assert emulator.calls[leg].from_ == FROM
    settings = room.participants[leg].settings
    assert settings.beep == "false" and settings.end_conference_on_exit is False
    assert not audible(room, speaker=leg, listener=caller_leg)
    assert audible(room, speaker=caller_leg, listener=leg)
    assert audible(room, speaker=agent_leg, listener=leg)
    if coaching:
        assert (settings.muted, settings.coach) == (False, agent_leg)
        assert audible(room, speaker=leg, listener=agent_leg)
    else:
        assert (settings.muted, settings.coach) == (True, None)
        assert not audible(room, speaker=leg, listener=agent_leg)
    event = await in_thread(
        lambda: call.events.get(type="supervise-phone-listen").payload
    )
    assert event == {
        "by_id": user.pk,
        "by_name": user.username,
        "to": "090****2222",
        "coaching": coaching,
        "call_sid": leg,
    }


async def test_a_call_still_on_the_ai_is_409_and_dials_nothing(
    emulator: TwilioEmulator,
) -> None:
    call = await in_thread(CallSessionFactory, status=CallStatus.AI_RESPONDING)
    user = await in_thread(supervisor_of, call=call)
    with pytest.raises(CallNotSupervisable) as refused:
        await in_thread(
            supervision_listen_phone, call=call, user=user, phone=SUPERVISOR_PHONE
        )
    assert refused.value.http_status == 409
    assert not emulator.calls
    assert not await in_thread(lambda: call.events.exists())


async def test_without_the_permission_nothing_is_dialled(
    emulator: TwilioEmulator,
) -> None:
    call, _caller, _agent = await handed_off_call(emulator)
    before = set(emulator.calls)
    user = await in_thread(OperatorFactory, organization_id=call.organization_id)
    with pytest.raises(SupervisionForbidden):
        await in_thread(
            supervision_listen_phone, call=call, user=user, phone=SUPERVISOR_PHONE
        )
    assert set(emulator.calls) == before
    assert not await in_thread(
        lambda: call.events.filter(type="supervise-phone-listen").exists()
    )
