"""`manage.py simulate_call` (F-44) against an in-process service and both emulators.

The command is synchronous (HTTP to the emulator's control API, ORM reads), so it
runs in a worker thread while the service and the emulators serve on the test's
event loop.
"""

from __future__ import annotations

import asyncio
import io
import socket
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from django.db import connections

from calls.models import CallEvent, CallSession
from calls.status import CallStatus
from tests.agents.factories import OperatorFactory
from tests.realtime.flow import conftest as flow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

# The flow fixtures, shared with tests/realtime/flow/.
flow_settings = flow.flow_settings
service = flow.service
start_fake_realtime = flow.start_fake_realtime
controlled_twilio = flow.controlled_twilio
inbound_agent = flow.inbound_agent
fake_responses = flow.fake_responses


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def simulate(**options: Any) -> tuple[str, CommandError | None]:
    """Run the command in a thread; return its output and the error it raised."""
    out = io.StringIO()

    def run() -> CommandError | None:
        try:
            call_command("simulate_call", stdout=out, **options)
        except CommandError as exc:
            return exc
        finally:
            connections.close_all()
        return None

    error = await asyncio.to_thread(run)
    return out.getvalue(), error


async def test_simulated_call_shows_transcript_timeline_and_latency(
    service, start_fake_realtime, controlled_twilio, inbound_agent
):
    """A whole call through the emulator's control API: the greeting and two
    answered turns are printed live, then the transcript, the status timeline,
    usage and the latency figures; the call ends completed."""
    async with start_fake_realtime() as fake:
        output, error = await simulate(
            url=service,
            emulator=controlled_twilio.base_url,
            to=flow.INBOUND_NUMBER,
            from_=flow.CALLER_NUMBER,
            turns=2,
            timeout=60,
        )
        fake.assert_complete()
    assert error is None, f"{error}\n{output}"
    call = await CallSession.objects.aget()
    assert call.status == CallStatus.COMPLETED
    # The bridge (stop) and the status webhook (completed) race to end it.
    assert call.end_reason in ("caller-hangup", "twilio:completed")
    live, report = output.split("=== Call #", 1)
    assert "media stream up" in live and "model-connected" in live
    assert "AI       お電話ありがとうございます。" in live
    assert "caller   " in live
    assert "Transcript" in report and "Status timeline" in report
    transcript = report.split("Transcript", 1)[1].split("Status timeline", 1)[0]
    speakers = [line.split()[1] for line in transcript.strip().splitlines()]
    assert speakers.count("AI") == 3 and speakers.count("caller") == 2, transcript
    assert f"status ai-responding → completed ({call.end_reason})" in report
    assert f"first audio (stream start → first AI audio): {call.first_audio_ms} ms" in (
        report
    )
    assert "turn latencies (speech stopped → first answer audio): [" in report
    assert "barge-ins: 0" in report
    assert f"cost: ${call.cost_usd:.6f}" in report
    assert call.output_audio_tokens > 0 and len(call.turn_latencies_ms) == 2


async def test_without_the_service_it_says_to_start_make_run(db):
    """Nothing listening at --url: a clear error naming `make run`, no call."""
    _, error = await simulate(
        url=f"http://127.0.0.1:{free_port()}",
        emulator=f"http://127.0.0.1:{free_port()}",
    )
    assert error is not None
    assert "The service is not running" in str(error)
    assert "make run" in str(error)


async def test_without_the_emulator_it_says_how_to_start_it(service, inbound_agent):
    """The service is up but no emulator: the error says what starts it."""
    _, error = await simulate(url=service, emulator=f"http://127.0.0.1:{free_port()}")
    assert error is not None
    assert "No Twilio emulator" in str(error)
    assert "make run" in str(error) and "realtime.emulators.run" in str(error)


async def test_unknown_number_names_seed_demo(service, controlled_twilio, db):
    """No agent answers --to in the database: the error names seed_demo."""
    _, error = await simulate(
        url=service, emulator=controlled_twilio.base_url, to="+815011112222"
    )
    assert error is not None and "seed_demo" in str(error)


async def test_handoff_after_moves_the_caller_to_a_human(
    service, start_fake_realtime, controlled_twilio, inbound_agent
):
    """--handoff-after: the human's leg is dialled into handoff-<id>, the caller is
    moved into the same room, the human joins (human-connected), then both hang up
    and the call completes."""
    # The operator who asks, should the service have the handoff API endpoint.
    operator = await sync_to_async(OperatorFactory)(
        organization=inbound_agent.organization
    )
    async with start_fake_realtime():
        output, error = await simulate(
            url=service,
            emulator=controlled_twilio.base_url,
            to=flow.INBOUND_NUMBER,
            from_=flow.CALLER_NUMBER,
            turns=1,
            handoff_after=1.0,
            talk_seconds=0.5,
            user=operator.username,
            timeout=60,
        )
    call = await CallSession.objects.aget()
    types = [
        t
        async for t in CallEvent.objects.filter(call=call).values_list(
            "type", flat=True
        )
    ]
    assert "handoff-initiated" in types and "handoff-agent-dialled" in types, types
    assert call.handoff_connected_at is not None
    assert "handoff-caller-moved" in types, f"caller never moved:\n{output}"
    room = controlled_twilio.conference(f"handoff-{call.pk}")
    assert call.twilio_call_sid in room.joined
    assert call.handoff_agent_call_sid in room.joined
    assert call.status == CallStatus.COMPLETED
    assert error is None, f"{error}\n{output}"
    assert "caller moved into the room: yes" in output


async def test_simulated_legacy_call(
    service, controlled_twilio, fake_responses, inbound_agent
):
    """`--legacy`: the caller speaks to <Gather>; the report shows the path, the
    transcript, the booking and goodbye tools, and the legacy turn figures."""
    inbound_agent.rollout_percentage = 0
    await inbound_agent.asave()
    output, error = await simulate(
        url=service,
        emulator=controlled_twilio.base_url,
        to=flow.INBOUND_NUMBER,
        from_=flow.CALLER_NUMBER,
        turns=2,
        legacy=True,
        timeout=60,
    )
    assert error is None, f"{error}\n{output}"
    fake_responses.assert_complete()
    call = await CallSession.objects.aget()
    assert call.status == CallStatus.COMPLETED and call.path == "legacy"
    live, report = output.split("=== Call #", 1)
    assert "<Gather input=speech language=ja-JP> listening" in live
    assert "caller says “営業時間を教えてください”" in live
    assert "media stream up" not in live
    assert "path: legacy (Twilio <Gather> → text model → <Say>)" in report
    assert "tool-call" in report or "schedule_appointment" in report
    assert "turn latencies (<Gather> result in → TwiML out): [" in report
    assert "our own share of each turn (without the text model): [" in report
    assert len(call.turn_latencies_ms) == 3
