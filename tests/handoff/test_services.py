"""The handoff service under concurrency, and the Twilio callbacks it relies on.

Requests here run in threads with their own database connections (the
transactional test database), so the row lock is exercised for real on
PostgreSQL as well as SQLite.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection

from calls.models import CallSession
from calls.status import CallStatus
from calls.telephony import call_stream_ended_twiml
from handoff.services import HandoffResult, handoff_request
from realtime.emulators.caller import Pause, WaitForAudio
from tests.calls.factories import CallSessionFactory
from tests.handoff.conftest import (
    AGENT_MASKED,
    AGENT_NUMBER,
    conference_of,
    event_types,
    place_inbound_call,
    wait_bridge_heartbeat,
    wait_status,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

REQUESTS = 10


def _in_own_connection(barrier: threading.Barrier, call_id: int) -> Any:
    """One request as its own thread and connection would make it."""
    try:
        barrier.wait(timeout=10)
        return handoff_request(call_id=call_id, trigger="api", reason="concurrent")
    except Exception as exc:  # returned, so the test can show every outcome
        return exc
    finally:
        connection.close()


async def test_ten_concurrent_requests_dial_exactly_one_agent_leg(
    service, start_fake_realtime, twilio, inbound_agent
):
    """Ten requests at once for one live call: one agent leg is dialled, one
    request reports it created, and every reply names that leg's SID."""
    async with start_fake_realtime():
        handle, call = await place_inbound_call(
            twilio, service, [WaitForAudio(ms=100, timeout_s=20), Pause(ms=60_000)]
        )
        await handle.wait_stream(timeout=10)
        await wait_bridge_heartbeat(call)
        barrier = threading.Barrier(REQUESTS)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=REQUESTS) as threads:
            results = await asyncio.gather(
                *(
                    loop.run_in_executor(threads, _in_own_connection, barrier, call.pk)
                    for _ in range(REQUESTS)
                )
            )
        errors = [r for r in results if not isinstance(r, HandoffResult)]
        assert not errors, errors
        agent_legs = twilio.calls_to(AGENT_NUMBER)
        assert len(agent_legs) == 1, agent_legs
        assert [r.created for r in results].count(True) == 1, results
        assert {r.agent_call_sid for r in results} == {agent_legs[0].sid}, results
        assert {r.agent_number_masked for r in results} == {AGENT_MASKED}
        await wait_status(call, CallStatus.HUMAN_CONNECTED)
        await twilio.hang_up(handle.sid)
    types = await event_types(call)
    assert types.count("handoff-initiated") == 1, types
    assert types.count("handoff-agent-dialled") == 1, types


def test_stream_ended_with_the_human_already_in_the_room_joins_the_caller(db):
    """The `<Connect action>` fallback also sends the caller to the room when the
    human answered before the bridge let go (not a hang-up)."""
    call = CallSessionFactory(status=CallStatus.HUMAN_CONNECTED)
    _, conference = conference_of(call_stream_ended_twiml(call_id=call.pk))
    assert conference.text == f"handoff-{call.pk}"
    assert conference.attrib["startConferenceOnEnter"] == "false"
    assert conference.attrib["endConferenceOnExit"] == "false"
    assert CallSession.objects.get(pk=call.pk).status == CallStatus.HUMAN_CONNECTED
