"""`manage.py place_call` (F-43) and the outbound answer (F-11) on the emulators.

The command is synchronous (ORM, Twilio's REST client), so it runs in a worker
thread while the service, the fake Realtime server and the Twilio emulator serve on
the test's event loop. The emulator's far end answers as a person or as a machine.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from django.db import connections

from calls.models import CallEvent, CallSession, TranscriptEntry
from calls.status import CallStatus
from realtime.emulators.caller import HangUp, WaitForAudio, WaitUntilQuiet
from realtime.emulators.twilio_api import FarEnd
from tests.realtime.flow import conftest as flow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

# The flow fixtures, shared with tests/realtime/flow/.
flow_settings = flow.flow_settings
service = flow.service
start_fake_realtime = flow.start_fake_realtime
twilio = flow.twilio
inbound_agent = flow.inbound_agent
fake_responses = flow.fake_responses


@pytest.fixture(autouse=True)
async def _close_shared_thread_connections() -> AsyncIterator[None]:
    """Close the connection the bridge left in asgiref's shared sync thread (it
    keeps PostgreSQL from dropping the test database)."""
    yield
    await sync_to_async(connections.close_all)()


CALLEE = "+819012345678"
VOICEMAIL = "テスト株式会社です。またお電話いたします。"


async def place_call(*args: str) -> tuple[str, CommandError | None]:
    """Run the command in a thread; return its output and the error it raised."""
    out = io.StringIO()

    def run() -> CommandError | None:
        try:
            call_command("place_call", *args, stdout=out)
        except CommandError as exc:
            return exc
        finally:
            connections.close_all()
        return None

    error = await asyncio.to_thread(run)
    return out.getvalue(), error


def _placed(output: str) -> tuple[int, str]:
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    return int(values["call_id"]), values["call_sid"]


async def _types(call: CallSession) -> list[str]:
    return [
        t
        async for t in CallEvent.objects.filter(call=call)
        .order_by("id")
        .values_list("type", flat=True)
    ]


async def _completed(call: CallSession) -> None:
    async def done() -> bool:
        await call.arefresh_from_db()
        return call.status == CallStatus.COMPLETED

    assert await flow.wait_until(done, within_s=15), (call.status, await _types(call))


async def test_place_call_human_answers_and_the_ai_speaks_first(
    service, start_fake_realtime, twilio, inbound_agent
):
    """`place_call --to 090-… --agent <name>`: a call row and a Twilio call with
    answering-machine detection; a person answers, the outbound webhook gives a
    stream, and the agent's greeting reaches the callee first."""
    twilio.far_ends[CALLEE] = FarEnd(
        "answer",
        caller_script=[
            WaitForAudio(ms=200, timeout_s=20),
            WaitUntilQuiet(quiet_ms=300, timeout_s=20),
            HangUp(),
        ],
    )
    async with start_fake_realtime() as fake:
        output, error = await place_call(
            "--to", "090-1234-5678", "--agent", inbound_agent.name
        )
        assert error is None, error
        call_id, call_sid = _placed(output)
        assert f"call {call_id} placed to {CALLEE}" in output
        emulated = twilio.call(call_sid)
        await emulated.wait_finished(timeout=30)
        assert fake.connection_count == 1
    call = await CallSession.objects.aget(pk=call_id)
    await _completed(call)
    assert call.direction == CallSession.Direction.OUTBOUND
    assert call.to_number == CALLEE and call.twilio_call_sid == call_sid
    assert call.answered_by == "human"
    resource = emulated.call
    assert resource.direction == "outbound-api" and resource.to == CALLEE
    assert resource.options.machine_detection == "Enable"
    assert resource.options.url == f"{service}/api/twilio/voice/outbound/{call_id}"
    assert resource.options.status_callback == f"{service}/api/twilio/status/{call_id}"
    assert "stream-start" in [e.kind for e in resource.log]
    callee = emulated.caller
    assert callee is not None and callee.heard_ms > 200
    first = await TranscriptEntry.objects.filter(call=call).order_by("id").afirst()
    assert first is not None and first.speaker == "ai"
    assert first.text.startswith("お電話ありがとうございます"), first.text
    types = await _types(call)
    for step in ("outbound-requested", "outbound-dialed", "webhook", "stream-start"):
        assert step in types, (step, types)


@pytest.mark.parametrize("voicemail", [VOICEMAIL, ""])
async def test_place_call_machine_gets_the_voicemail_message_or_a_hang_up(
    service, start_fake_realtime, twilio, inbound_agent, voicemail
):
    """With AMD, a machine hears the profile's voicemail message (`<Say>`), then
    the call hangs up; without a message it just hangs up. No stream is opened."""
    inbound_agent.voicemail_message = voicemail
    await inbound_agent.asave(update_fields=["voicemail_message"])
    twilio.far_ends[CALLEE] = FarEnd("machine")
    async with start_fake_realtime() as fake:
        output, error = await place_call(
            "--to", "+81 90 1234 5678", "--agent", str(inbound_agent.pk)
        )
        assert error is None, error
        call_id, call_sid = _placed(output)
        finished = await twilio.call(call_sid).wait_finished(timeout=20)
        assert fake.connection_count == 0
    assert finished.answered_by == "machine_start"
    assert finished.said() == ([voicemail] if voicemail else [])
    assert "stream-start" not in [e.kind for e in finished.log]
    call = await CallSession.objects.aget(pk=call_id)
    await _completed(call)
    assert call.answered_by == "machine_start"
    assert call.end_reason == "answering-machine:machine_start"
    types = await _types(call)
    assert ("voicemail" in types) == bool(voicemail), types


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "12345", "--agent", "{agent}"], "to:"),
        (["--to", "電話番号", "--agent", "{agent}"], "to:"),
        (["--to", "090-1234-5678", "--agent", "誰でもない"], "No agent profile"),
        (["--to", "090-1234-5678", "--agent", "999999"], "No agent profile"),
        (
            ["--to", "090-1234-5678", "--agent", "{agent}", "--var", "novalue"],
            "NAME=VALUE",
        ),
    ],
)
def test_place_call_refuses_clearly(inbound_agent, args, message):
    """A bad number, an unknown agent or a bad variable: a clear error, nothing
    created, nothing dialled."""
    args = [a.format(agent=inbound_agent.pk) for a in args]
    with pytest.raises(CommandError) as refused:
        call_command("place_call", *args, stdout=io.StringIO())
    assert message in str(refused.value)
    assert not CallSession.objects.exists()


def test_place_call_names_the_choices_when_the_name_is_ambiguous(inbound_agent):
    from tests.agents.factories import AgentProfileFactory

    twin = AgentProfileFactory(name=inbound_agent.name)
    with pytest.raises(CommandError) as refused:
        call_command(
            "place_call",
            "--to",
            "090-1234-5678",
            "--agent",
            twin.name,
            stdout=io.StringIO(),
        )
    assert str(inbound_agent.pk) in str(refused.value)
    assert str(twin.pk) in str(refused.value)


def test_place_call_without_a_caller_id_says_what_to_set(inbound_agent, settings):
    settings.TWILIO_FROM_NUMBER = ""
    with pytest.raises(CommandError) as refused:
        call_command(
            "place_call",
            *("--to", "090-1234-5678", "--agent", str(inbound_agent.pk)),
            stdout=io.StringIO(),
        )
    assert "TWILIO_FROM_NUMBER" in str(refused.value)
    assert not CallSession.objects.exists()


def test_place_call_twilio_unreachable_fails_the_call_and_says_so(
    inbound_agent, settings
):
    """Twilio cannot be reached: a clear error; the attempt stays as a failed call."""
    settings.TWILIO_FROM_NUMBER = flow.INBOUND_NUMBER
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # refused
    with pytest.raises(CommandError) as refused:
        call_command(
            "place_call",
            *("--to", "090-1234-5678", "--agent", str(inbound_agent.pk)),
            stdout=io.StringIO(),
        )
    assert "Twilio could not be reached" in str(refused.value)
    call = CallSession.objects.get()
    assert call.status == CallStatus.FAILED and not call.twilio_call_sid


async def test_place_call_on_the_legacy_path(
    service, twilio, fake_responses, inbound_agent
):
    """An outbound call outside the profile's rollout (F-72): the callee hears the
    greeting from <Say> inside a <Gather>, answers, and the text model replies."""
    from calls.legacy.writes import writes_idle
    from realtime.emulators.speech_script import HangsUp, Says

    inbound_agent.rollout_percentage = 0
    await inbound_agent.asave(update_fields=["rollout_percentage"])
    twilio.far_ends[CALLEE] = FarEnd(
        "answer", speech_script=[Says("はい、どちら様ですか"), HangsUp()]
    )
    output, error = await place_call(
        "--to", "090-1234-5678", "--agent", inbound_agent.name
    )
    assert error is None, error
    call_id, call_sid = _placed(output)
    finished = await twilio.call(call_sid).wait_finished(timeout=30)
    await writes_idle()
    fake_responses.assert_complete()
    said = finished.said()
    assert said[0].startswith("お電話ありがとうございます"), said
    assert "「はい、どちら様ですか」ですね" in said[1], said
    assert "stream-start" not in [e.kind for e in finished.log]
    call = await CallSession.objects.aget(pk=call_id)
    assert call.path == CallSession.Path.LEGACY
    lines = [
        (e.speaker, e.text)
        async for e in TranscriptEntry.objects.filter(call=call).order_by("id")
    ]
    assert ("customer", "はい、どちら様ですか") in lines
