"""Handoff fixtures: the flow fixtures (service, emulators), an operator, helpers.

The service, the fake Realtime server and the Twilio emulator come from
tests/realtime/flow/conftest.py, so these tests run the same whole ASGI app on a
real socket. Here: an operator of the inbound agent's organisation with an API
token, a monitor listening on the call's group, and small helpers to place a
call, ask for a handoff over HTTP and read the call's timeline.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connections
from rest_framework.authtoken.models import Token

from calls.groups import call_monitor_group
from calls.models import CallEvent, CallSession
from realtime.emulators.caller import Step
from realtime.emulators.twilio_api import CallHandle, TwilioEmulator
from tests.agents.factories import OperatorFactory
from tests.realtime.flow.conftest import *  # noqa: F403 (the flow fixtures)
from tests.realtime.flow.conftest import CALLER_NUMBER, INBOUND_NUMBER, wait_until

AGENT_NUMBER = "+818070239355"  # inbound_agent's handoff_phone_number
AGENT_MASKED = "080****9355"


@pytest.fixture(autouse=True)
async def _close_shared_thread_connections() -> AsyncIterator[None]:
    """Close the connection the bridges left in asgiref's shared sync thread.

    Channels runs `database_sync_to_async` there (it closes stale connections
    before a call, not after), and so do this test's own async ORM calls; left
    open, it keeps PostgreSQL from dropping the test database at the end.
    """
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def operator(inbound_agent, settings):
    """An operator of the inbound agent's organisation (no phone of their own)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return OperatorFactory(organization=inbound_agent.organization)


@pytest.fixture
def token(operator) -> str:
    """The operator's API token (`Authorization: Token …`)."""
    return Token.objects.create(user=operator).key


async def api_post(
    url: str, *, token: str | None, body: dict[str, Any] | None = None
) -> httpx.Response:
    """POST JSON to the running service, as an API client with a token."""
    headers = {"Authorization": f"Token {token}"} if token else {}
    async with httpx.AsyncClient(timeout=20, trust_env=False) as client:
        return await client.post(url, json=body or {}, headers=headers)


async def place_inbound_call(
    twilio: TwilioEmulator, service: str, script: Sequence[Step]
) -> tuple[CallHandle, CallSession]:
    """Ring the routed number from CALLER_NUMBER; return the handle and the row."""
    handle = await twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{service}/api/twilio/voice/incoming",
        caller_script=script,
        status_callback=f"{service}/api/twilio/status",
    )
    return handle, await CallSession.objects.aget(twilio_call_sid=handle.sid)


async def event_types(call: CallSession) -> list[str]:
    return [
        t
        async for t in CallEvent.objects.filter(call_id=call.pk)
        .order_by("id")
        .values_list("type", flat=True)
    ]


async def events_of(call: CallSession, type_: str) -> list[CallEvent]:
    return [
        e
        async for e in CallEvent.objects.filter(call_id=call.pk, type=type_).order_by(
            "id"
        )
    ]


async def wait_status(call: CallSession, *statuses: str, within_s: float = 15) -> None:
    """Wait until the call's row has one of `statuses`; fail with its timeline."""

    async def reached() -> bool:
        await call.arefresh_from_db()
        return call.status in statuses

    if not await wait_until(reached, within_s=within_s):
        raise AssertionError(
            f"call {call.pk} is {call.status!r}, not {statuses}; "
            f"events: {await event_types(call)}"
        )


async def wait_bridge_heartbeat(call: CallSession, within_s: float = 10) -> None:
    """Wait until the bridge has reported in (the service then leaves it the move)."""

    async def beat() -> bool:
        await call.arefresh_from_db()
        return call.heartbeat_at is not None

    assert await wait_until(beat, within_s=within_s), "the bridge never heartbeated"


def conference_of(document: str) -> tuple[ET.Element, ET.Element]:
    """Return (`<Response>`, its `<Dial><Conference>`) of a TwiML document."""
    root = ET.fromstring(document)
    conference = root.find("./Dial/Conference")
    assert conference is not None, document
    return root, conference


class Monitor:
    """A channel-layer consumer of a call's monitor group, for assertions."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel = ""
        self.messages: list[dict[str, Any]] = []

    async def join(self, call: CallSession) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(call_monitor_group(call.pk), self.channel)

    async def drain(self) -> list[dict[str, Any]]:
        while True:
            try:
                message = await asyncio.wait_for(
                    self.layer.receive(self.channel), timeout=0.2
                )
            except TimeoutError:
                return self.messages
            self.messages.append(message)


@pytest.fixture
async def monitor() -> AsyncIterator[Monitor]:
    yield Monitor()
