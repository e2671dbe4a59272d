"""A whole inbound call: Twilio webhook → TwiML → stream → bridge → fake Realtime → back."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter

from calls.groups import call_monitor_group
from calls.models import CallEvent, CallSession, TranscriptEntry
from calls.status import CallStatus
from realtime.emulators.caller import HangUp, Pause, Speak, WaitForAudio, WaitUntilQuiet
from tests.realtime.flow.conftest import CALLER_NUMBER, INBOUND_NUMBER, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def test_whole_inbound_call(
    service, start_fake_realtime, twilio, inbound_agent, summary_tasks
):
    """Greeting heard, a caller turn answered, transcripts saved and broadcast,
    usage and latency saved, and hanging up closes the model socket; the end
    enqueues the after-call summary once (F-76)."""
    layer = get_channel_layer()
    monitor = await layer.new_channel()
    # A second of quiet, not less: on a starved machine (CI runs two suites at once)
    # the greeting's audio can stall mid-way, and speaking into it is a barge-in.
    script = [
        WaitForAudio(ms=100, timeout_s=10),
        WaitUntilQuiet(quiet_ms=1000, timeout_s=15),
        Speak(ms=1200),
        Pause(ms=900),
        WaitForAudio(ms=100, timeout_s=10),
        WaitUntilQuiet(quiet_ms=1000, timeout_s=15),
        HangUp(),
    ]
    async with start_fake_realtime() as fake:
        handle = await twilio.inbound_call(
            from_=CALLER_NUMBER,
            to=INBOUND_NUMBER,
            voice_url=f"{service}/api/twilio/voice/incoming",
            caller_script=script,
            status_callback=f"{service}/api/twilio/status",
        )
        call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
        await layer.group_add(call_monitor_group(call.pk), monitor)
        caller = await handle.wait_stream(timeout=10)
        await handle.wait_finished(timeout=40)

        async def model_closed():
            return fake.open_connections == 0

        assert await wait_until(model_closed, within_s=5), "model socket left open"
        fake.assert_complete()
        client_event = TypeAdapter(RealtimeClientEvent)
        for event in fake.connections[0].received:
            client_event.validate_python(event)  # the official SDK's union
    caller.assert_clean()
    assert caller.heard_ms > 500  # greeting and answer audio reached the caller

    async def finished():
        await call.arefresh_from_db()
        return call.status == CallStatus.COMPLETED

    assert await wait_until(finished), f"call not completed: {call.status}"
    entries = [
        e async for e in TranscriptEntry.objects.filter(call=call).order_by("offset_ms")
    ]
    speakers = [e.speaker for e in entries]
    assert "ai" in speakers and "customer" in speakers, speakers
    ai_lines = [e.text for e in entries if e.speaker == "ai"]
    assert ai_lines[0].startswith("お電話ありがとうございます。"), ai_lines
    customer = next(e for e in entries if e.speaker == "customer")
    assert customer.text  # the fake's Japanese transcription of the caller turn
    assert call.first_audio_ms is not None and call.first_audio_ms > 0
    assert call.turn_latencies_ms, "no turn latency measured"
    assert call.output_audio_tokens > 0 and call.cost_usd > 0
    assert call.stream_sid == caller.stream_sid
    assert call.openai_session_id.startswith("sess_")
    assert summary_tasks == [{"call_id": call.pk, "announce": True}]
    types = [
        t
        async for t in CallEvent.objects.filter(call=call).values_list(
            "type", flat=True
        )
    ]
    for expected in ("webhook", "stream-start", "model-connected", "bridge-end"):
        assert expected in types, (expected, types)

    received = []
    while True:
        try:
            received.append(await asyncio.wait_for(layer.receive(monitor), timeout=0.2))
        except TimeoutError:
            break
    kinds = {m["type"] for m in received}
    assert "transcript.update" in kinds and "call.status" in kinds, kinds
    finals = [m for m in received if m["type"] == "transcript.update"]
    assert {m["speaker"] for m in finals} >= {"ai", "customer"}
