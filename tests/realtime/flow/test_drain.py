"""Drain (F-69) over real sockets: each live call is handed over at its next quiet
moment, bounded by the drain timeout; new streams are refused meanwhile.

The service runs in this test's event loop (see conftest), so the test starts the
drain itself with `draining.drain_all`, as `realtime.server` does on SIGTERM; the
signal path is tested on a real server process in tests/realtime/test_drain_server.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time

import pytest

from callcenter import draining
from calls.models import CallEvent, CallSession, TranscriptEntry
from realtime.emulators import scenarios
from realtime.emulators.caller import Pause, Speak, WaitForAudio, WaitUntilQuiet
from tests.realtime.flow.conftest import CALLER_NUMBER, INBOUND_NUMBER, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

# A greeting of 8 s of audio: the caller (4× real time) hears it in about 2 s.
LONG_GREETING = scenarios.Scenario(name="long_greeting", reply_ms=8000)
LISTEN = [Pause(ms=120_000)]


@pytest.fixture(autouse=True)
def not_draining():
    draining.reset()
    yield
    draining.reset()


async def _ring(twilio, service, script):
    handle = await twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{service}/api/twilio/voice/incoming",
        caller_script=script,
        status_callback=f"{service}/api/twilio/status",
    )
    caller = await handle.wait_stream(timeout=15)
    call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
    return handle, caller, call


async def _events(call, *types):
    qs = CallEvent.objects.filter(call=call).order_by("id")
    if types:
        qs = qs.filter(type__in=types)
    return [e async for e in qs]


async def _lines(call):
    qs = TranscriptEntry.objects.filter(call=call).order_by("id")
    return [e async for e in qs]


def _marks_sent(caller):
    return [
        r
        for r in caller.received
        if isinstance(r.message, dict) and r.message.get("event") == "mark"
    ]


async def test_drain_mid_sentence_waits_for_the_last_mark_then_hands_over(
    service, start_fake_realtime, twilio, inbound_agent
):
    """The AI is speaking when the drain begins: the stream is handed over only once
    Twilio has echoed the mark after the last of that audio (the caller heard all of
    it), with a clean close (1000); the AI line is saved, whole, before the close, and
    the call is left with the AI for the resume."""
    async with start_fake_realtime(LONG_GREETING):
        _handle, caller, call = await _ring(twilio, service, LISTEN)
        await caller.wait_for_audio(ms=800, timeout_s=20)
        heard_at_drain = caller.heard_ms
        assert heard_at_drain < 6000  # mid-sentence

        report = await asyncio.wait_for(draining.drain_all(20), timeout=30)

        # drain_all returns once the consumer saw its socket close: every write of
        # the call is in the database by now.
        assert report == dataclasses.replace(
            report, calls=1, quiet=1, timed_out=0, left=0
        )
        await caller.wait_closed(timeout_s=5)
        assert caller.closed_by_server is not None
        assert caller.closed_by_server[0] == 1000
        assert caller.heard_ms >= 7900, caller.heard_ms
        marks = _marks_sent(caller)
        assert marks and len(caller.marks_echoed) == len(marks)
        lines = await _lines(call)
        assert [(e.speaker, e.interrupted) for e in lines] == [("ai", False)]
        drain = await _events(call, "drain", "stream-handover", "bridge-end")
        assert [e.type for e in drain] == ["drain", "stream-handover", "bridge-end"]
        assert drain[0].payload["quiet"] is True
        assert drain[0].payload["waited_ms"] >= 500  # the rest of the greeting
        assert drain[1].payload == {"reason": "drain"}
        assert drain[2].payload["mode"] == "handover"
        # Twilio's <Connect action> found the call still with the AI.
        assert await wait_until(
            lambda: _has_event(call, "stream-ended"), within_s=10
        ), await _events(call)
        ended = (await _events(call, "stream-ended"))[0]
        assert ended.payload["status"] == "ai-responding"


async def _has_event(call, type_):
    return await CallEvent.objects.filter(call=call, type=type_).aexists()


async def test_drain_waits_for_a_running_tool_and_its_answer(
    service, start_fake_realtime, twilio, inbound_agent, monkeypatch
):
    """A tool is running when the drain begins: the hand-over waits for its result,
    the model's answer to it and that answer's playback; the tool's event and the
    answer's line are saved before the stream closes."""
    from realtime import tools

    original = tools.REGISTRY["get_customer_info"]
    tool_started = asyncio.Event()

    async def slow(ctx, args):
        tool_started.set()
        await asyncio.sleep(1.5)
        return await original.func(ctx, args)

    monkeypatch.setitem(
        tools.REGISTRY, "get_customer_info", dataclasses.replace(original, func=slow)
    )
    scenario = scenarios.ToolCall(
        tool_name="get_customer_info",
        arguments=json.dumps({"phone_number": CALLER_NUMBER}),
        preamble=None,
    )
    script = [
        WaitForAudio(ms=100, timeout_s=40),
        WaitUntilQuiet(quiet_ms=300, timeout_s=40),
        Speak(ms=1000),
        Pause(ms=120_000),
    ]
    async with start_fake_realtime(scenario) as fake:
        _handle, caller, call = await _ring(twilio, service, script)
        await asyncio.wait_for(tool_started.wait(), timeout=30)
        began = time.monotonic()

        report = await asyncio.wait_for(draining.drain_all(20), timeout=30)

        assert time.monotonic() - began >= 1.0  # the tool's second and more
        assert (report.quiet, report.timed_out) == (1, 0)
        await caller.wait_closed(timeout_s=5)
        assert caller.closed_by_server is not None
        assert caller.closed_by_server[0] == 1000
        connection = fake.connections[0]
        outputs = [
            e
            for e in connection.received
            if e.get("type") == "conversation.item.create"
            and e["item"].get("type") == "function_call_output"
        ]
        assert len(outputs) == 1
        events = await _events(call, "tool-call", "drain", "stream-handover")
        assert [e.type for e in events] == ["tool-call", "drain", "stream-handover"]
        assert events[0].payload["ok"] is True
        ai_lines = [e.text for e in await _lines(call) if e.speaker == "ai"]
        assert ai_lines[-1] == scenario.tool_answer
        assert len(caller.marks_echoed) == len(_marks_sent(caller))


async def test_drain_timeout_hands_over_mid_sentence(
    service, start_fake_realtime, twilio, inbound_agent
):
    """A reply longer than the drain timeout: the call is handed over at the timeout,
    mid-sentence, and what the AI said so far is saved, flagged interrupted."""
    scenario = scenarios.Scenario(name="very_long_greeting", reply_ms=40_000)
    async with start_fake_realtime(scenario):
        _handle, caller, call = await _ring(twilio, service, LISTEN)
        await caller.wait_for_audio(ms=500, timeout_s=20)
        began = time.monotonic()

        report = await asyncio.wait_for(draining.drain_all(0.5), timeout=30)

        assert time.monotonic() - began < 3.0
        assert (report.calls, report.quiet, report.timed_out) == (1, 0, 1)
        await caller.wait_closed(timeout_s=5)
        assert caller.closed_by_server is not None
        assert caller.closed_by_server[0] == 1000
        assert caller.heard_ms < 20_000
        events = await _events(call, "drain", "stream-handover")
        assert events[0].payload["quiet"] is False
        assert events[1].payload == {"reason": "drain-timeout"}
        lines = await _lines(call)
        assert [(e.speaker, e.interrupted) for e in lines] == [("ai", True)]


async def test_new_stream_is_refused_while_draining(
    service, start_fake_realtime, twilio, inbound_agent, caplog
):
    """While draining, a new media stream is refused with 1013 (try again later),
    logged, and costs no model session nor its token."""
    async with start_fake_realtime(LONG_GREETING) as fake:
        draining.begin()
        draining.refuse_streams()
        with caplog.at_level(logging.WARNING, logger="realtime.consumers"):
            handle = await twilio.inbound_call(
                from_=CALLER_NUMBER,
                to=INBOUND_NUMBER,
                voice_url=f"{service}/api/twilio/voice/incoming",
                caller_script=LISTEN,
                status_callback=f"{service}/api/twilio/status",
            )
            await handle.wait_stream(timeout=15)
            caller = handle.call.streams[0]
            await caller.wait_closed(timeout_s=10)
        assert caller.closed_by_server is not None
        assert caller.closed_by_server[0] == 1013
        assert "media stream refused: this server is draining" in caplog.text
        assert fake.connections == []
        call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
        assert call.stream_token_used_at is None


async def test_new_streams_are_taken_until_the_notice_is_over(
    service, start_fake_realtime, twilio, inbound_agent
):
    """During DRAIN_NOTICE (balancers still sending calls here) a new stream is
    taken, then handed over with the rest once the notice is over."""
    async with start_fake_realtime(scenarios.GREET_THEN_ANSWER):
        drain = asyncio.create_task(draining.drain_all(20, notice_s=1.5))
        await asyncio.sleep(0.05)
        assert draining.is_draining() and not draining.refusing_streams()
        _handle, caller, _call = await _ring(twilio, service, LISTEN)
        await caller.wait_for_audio(ms=100, timeout_s=20)
        assert not caller.closed
        report = await asyncio.wait_for(drain, timeout=30)
        assert draining.refusing_streams()
        assert (report.calls, report.quiet) == (1, 1)
        await caller.wait_closed(timeout_s=5)
        assert caller.closed_by_server is not None
        assert caller.closed_by_server[0] == 1000


async def test_a_refused_new_call_is_answered_by_the_next_stream(
    service, start_fake_realtime, twilio, inbound_agent, monkeypatch
):
    """A call whose first stream a draining process refused is not dropped: its
    `<Connect action>` answers a fresh stream (new token), which a process that is
    not draining takes; the caller hears the greeting there."""
    from realtime import consumers

    answers = iter([True])  # this process drains for the first stream only
    monkeypatch.setattr(
        consumers.draining, "refusing_streams", lambda: next(answers, False)
    )
    async with start_fake_realtime(scenarios.GREET_THEN_ANSWER) as fake:
        handle = await twilio.inbound_call(
            from_=CALLER_NUMBER,
            to=INBOUND_NUMBER,
            voice_url=f"{service}/api/twilio/voice/incoming",
            caller_script=LISTEN,
            status_callback=f"{service}/api/twilio/status",
        )
        await handle.wait_stream(timeout=15)
        first = handle.call.streams[0]
        await first.wait_closed(timeout_s=10)
        assert first.closed_by_server is not None
        assert first.closed_by_server[0] == 1013

        async def second_stream() -> bool:
            return len(handle.call.streams) >= 2

        assert await wait_until(second_stream, within_s=10)
        second = handle.call.streams[1]
        await second.wait_for_audio(ms=100, timeout_s=20)
        assert second.parameters["stream_token"] != first.parameters["stream_token"]
        assert len(fake.connections) == 1
        call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
        assert call.status == "ai-responding"
        types = [e.type for e in await _events(call)]
        assert types.index("stream-ended") < types.index("stream-start")


async def test_a_call_with_nothing_playing_is_handed_over_at_once(
    service, start_fake_realtime, twilio, inbound_agent
):
    """Between turns, the hand-over does not wait: well under the timeout."""
    script = [WaitForAudio(ms=100, timeout_s=40), WaitUntilQuiet(quiet_ms=300)]
    async with start_fake_realtime(scenarios.GREET_THEN_ANSWER):
        _handle, caller, call = await _ring(twilio, service, [*script, *LISTEN])
        await caller.wait_for_audio(ms=100, timeout_s=20)
        await caller.wait_until_quiet(300, timeout_s=20)
        report = await asyncio.wait_for(draining.drain_all(20), timeout=30)
        assert (report.quiet, report.timed_out) == (1, 0)
        assert report.seconds < 2.0
        events = await _events(call, "drain")
        assert events[0].payload["waited_ms"] < 1000


async def test_no_transcript_line_is_lost_to_a_drain(
    service, start_fake_realtime, twilio, inbound_agent
):
    """The drain begins as the caller's turn is committed, with its transcription a
    second late: the hand-over waits for that transcript and the AI's answer, and
    every line is in the database before the stream closes."""
    scenario = scenarios.Scenario(name="slow_transcription", transcription_delay_s=1.0)
    script = [
        WaitForAudio(ms=100, timeout_s=40),
        WaitUntilQuiet(quiet_ms=300, timeout_s=40),
        Speak(ms=1000),
        Pause(ms=120_000),
    ]
    async with start_fake_realtime(scenario) as fake:
        _handle, caller, call = await _ring(twilio, service, script)
        connection = await fake.wait_for_connection(0, timeout_s=10)
        await connection.wait_sent("input_audio_buffer.committed", timeout_s=30)

        report = await asyncio.wait_for(draining.drain_all(20), timeout=30)

        assert (report.quiet, report.timed_out) == (1, 0)
        await caller.wait_closed(timeout_s=5)
        assert caller.closed_by_server is not None
        assert caller.closed_by_server[0] == 1000
        # Saved as they came: the late transcript after the AI's answer.
        lines = [(e.speaker, e.text) for e in await _lines(call)]
        assert sorted(lines) == [
            ("ai", scenario.greeting),
            ("ai", scenario.replies[0]),
            ("customer", scenario.caller_transcripts[0]),
        ]
        assert (await _events(call, "drain"))[0].payload["waited_ms"] >= 500
