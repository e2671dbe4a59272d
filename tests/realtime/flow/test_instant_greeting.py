"""The instant greeting (F-73), whole calls: the first call fills the cache, the next
hears it before the model is there, the model is told and never asked for it, and a
barge-in into it keeps only what was heard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from calls.models import CallEvent, CallSession, TranscriptEntry
from realtime.emulators.caller import (
    HangUp,
    Pause,
    SimulatedCaller,
    Speak,
    WaitForAudio,
    WaitUntilQuiet,
)
from realtime.emulators.twilio_api import StreamStart, TwilioEmulator
from realtime.greeting_cache import FILE_SUFFIX
from realtime.greeting_cache import _caches as greeting_caches
from realtime.protocol.greeting import CUT_ITEM_ID, GREETING_ITEM_ID
from tests.agents.factories import AgentProfileFactory, PhoneNumberFactory
from tests.realtime.flow.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CALLER_NUMBER,
    INBOUND_NUMBER,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

GREETING = (
    "お電話ありがとうございます。{{company_name}}、AI受付でございます。ご用件をどうぞ。"
)
LISTEN = [
    WaitForAudio(ms=100, timeout_s=10),
    WaitUntilQuiet(quiet_ms=800, timeout_s=20),
    HangUp(),
]


@pytest.fixture
def greeting_cache(flow_settings, tmp_path):
    flow_settings.GREETING_CACHE_SIZE = 8
    flow_settings.GREETING_CACHE_DIR = tmp_path / "greetings"
    return flow_settings.GREETING_CACHE_DIR


@pytest.fixture
def greeting_agent(db):
    agent = AgentProfileFactory(
        greeting_template=GREETING,
        ai_speaks_first=True,
        enabled_tools=[],
        vad_silence_duration_ms=300,
    )
    PhoneNumberFactory(
        number=INBOUND_NUMBER, organization=agent.organization, agent=agent
    )
    return agent


def real_time_caller(start: StreamStart) -> SimulatedCaller:
    """Plays and speaks at real pace: a barge-in lands inside the greeting."""
    return SimulatedCaller(
        start.url,
        parameters=start.parameters,
        auth_token=start.auth_token,
        account_sid=start.account_sid,
        call_sid=start.call_sid,
        stream_sid=start.stream_sid,
        time_scale=1.0,
    )


@pytest.fixture
async def twilio_rt(flow_settings) -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(
        ACCOUNT_SID, AUTH_TOKEN, caller_factory=real_time_caller
    ) as emu:
        flow_settings.TWILIO_API_BASE_URL = emu.base_url
        yield emu


async def place(
    twilio: TwilioEmulator, service: str, script: list[Any]
) -> tuple[CallSession, SimulatedCaller]:
    handle = await twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{service}/api/twilio/voice/incoming",
        caller_script=script,
        status_callback=f"{service}/api/twilio/status",
    )
    caller = await handle.wait_stream(timeout=10)
    await handle.wait_finished(timeout=40)
    call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
    return call, caller


async def events(call: CallSession, kind: str) -> list[dict[str, Any]]:
    return [e.payload async for e in CallEvent.objects.filter(call=call, type=kind)]


async def fill_cache(twilio, service, fake, cache_dir) -> CallSession:
    """A first call speaks the greeting live and fills the cache."""
    call, caller = await place(twilio, service, LISTEN)
    caller.assert_clean()

    async def cached():
        return any(cache_dir.glob(f"*{FILE_SUFFIX}"))

    assert await wait_until(cached), "the live greeting was not cached"
    first = fake.connections[-1].received_types()
    assert "response.create" in first  # spoken live
    assert await events(call, "greeting-cache") == [{"hit": False}]

    async def noted():
        return bool(await events(call, "greeting-cached"))

    assert await wait_until(noted)
    return call


async def first_ai_line(call: CallSession) -> str:
    entry = await TranscriptEntry.objects.filter(call=call, speaker="ai").afirst()
    assert entry is not None
    return entry.text


async def test_second_call_hears_the_cached_greeting_before_the_model_is_up(
    service, start_fake_realtime, twilio, greeting_agent, greeting_cache
):
    async with start_fake_realtime() as fake:
        said = await first_ai_line(
            await fill_cache(twilio, service, fake, greeting_cache)
        )
        fake.handshake_delay_s = 1.0  # a slow model: the greeting must not wait
        call, caller = await place(twilio, service, LISTEN)
        fake.assert_complete()
        connection = fake.connections[-1]
    caller.assert_clean()
    media = caller.media_received()
    assert media, "no greeting audio"
    # Frames arrived before the model's socket was even accepted, let alone its
    # session confirmed.
    cache_events = await events(call, "greeting-cache")
    assert media[0].at < connection.opened_at, (
        f"first frame {media[0].at - connection.opened_at:+.3f} s after the model"
        f" socket was accepted; greeting-cache events {cache_events}"
    )
    assert caller.heard_ms > 1000
    received = [e for e in connection.received if isinstance(e, dict)]
    types = [e["type"] for e in received]
    assert "response.create" not in types  # neither repeated nor asked for
    told = [
        e
        for e in received
        if e["type"] == "conversation.item.create"
        and e["item"].get("id") == GREETING_ITEM_ID
    ]
    assert len(told) == 1
    item = told[0]["item"]
    assert item["role"] == "assistant"
    assert item["content"][0]["type"] == "output_text"
    assert item["content"][0]["text"] == said  # what the model said the first time
    # Told before any caller audio reached the model.
    assert types.index("conversation.item.create") < types.index(
        "input_audio_buffer.append"
    )
    assert "error" not in [e["type"] for e in connection.sent]
    assert await events(call, "greeting-cache") == [{"hit": True}]
    lines = [
        (e.speaker, e.text, e.interrupted)
        async for e in TranscriptEntry.objects.filter(call=call)
    ]
    assert lines[0] == ("ai", said, False)
    await call.arefresh_from_db()
    assert call.first_audio_ms is not None and call.first_audio_ms < 100


async def test_barge_in_during_the_cached_greeting_keeps_what_was_heard(
    service, start_fake_realtime, twilio_rt, greeting_agent, greeting_cache
):
    async with start_fake_realtime() as fake:
        await fill_cache(twilio_rt, service, fake, greeting_cache)
        script = [
            WaitForAudio(ms=1200, timeout_s=10),
            Speak(ms=1200),
            Pause(ms=600),
            WaitForAudio(ms=100, timeout_s=10),
            WaitUntilQuiet(quiet_ms=800, timeout_s=20),
            HangUp(),
        ]
        call, caller = await place(twilio_rt, service, script)
        fake.assert_complete()
        connection = fake.connections[-1]
    caller.assert_clean()
    assert caller.clears >= 1  # Twilio was cleared
    received = [e for e in connection.received if isinstance(e, dict)]
    deletes = [
        e
        for e in received
        if e["type"] == "conversation.item.delete" and e["item_id"] == GREETING_ITEM_ID
    ]
    assert len(deletes) == 1
    cut = [
        e
        for e in received
        if e["type"] == "conversation.item.create"
        and e["item"].get("id") == CUT_ITEM_ID
    ]
    assert len(cut) == 1 and cut[0]["previous_item_id"] == GREETING_ITEM_ID
    heard = cut[0]["item"]["content"][0]["text"]
    full = next(
        e["item"]["content"][0]["text"]
        for e in received
        if e["type"] == "conversation.item.create"
        and e["item"].get("id") == GREETING_ITEM_ID
    )
    assert heard and full.startswith(heard) and len(heard) < len(full)
    assert not [
        e
        for e in received
        if e["type"] == "conversation.item.truncate"
        and e["item_id"] == GREETING_ITEM_ID
    ]
    assert "error" not in [e["type"] for e in connection.sent]
    # The model answered the caller after the cut greeting.
    assert "response.created" in [e["type"] for e in connection.sent]
    entries = [e async for e in TranscriptEntry.objects.filter(call=call, speaker="ai")]
    assert entries[0].text == heard and entries[0].interrupted


async def test_a_corrupt_cache_file_falls_back_to_the_live_greeting(
    service, start_fake_realtime, twilio, greeting_agent, greeting_cache
):
    async with start_fake_realtime() as fake:
        await fill_cache(twilio, service, fake, greeting_cache)
        for path in greeting_cache.glob(f"*{FILE_SUFFIX}"):
            path.write_bytes(path.read_bytes()[:-50])
        greeting_caches.clear()  # a fresh process: only the corrupt file is there
        call, caller = await place(twilio, service, LISTEN)
        fake.assert_complete()
        types = fake.connections[-1].received_types()
    caller.assert_clean()
    assert caller.heard_ms > 1000  # never silence: spoken live
    assert "response.create" in types
    assert await events(call, "greeting-cache") == [{"hit": False}]

    async def refilled():
        return bool(await events(call, "greeting-cached"))

    assert await wait_until(refilled), "the live greeting did not replace the file"


async def test_a_missing_cache_file_falls_back_to_the_live_greeting(
    service, start_fake_realtime, twilio, greeting_agent, greeting_cache
):
    async with start_fake_realtime() as fake:
        await fill_cache(twilio, service, fake, greeting_cache)
        for path in greeting_cache.glob(f"*{FILE_SUFFIX}"):
            path.unlink()
        greeting_caches.clear()
        call, caller = await place(twilio, service, LISTEN)
        fake.assert_complete()
        types = fake.connections[-1].received_types()
    caller.assert_clean()
    assert caller.heard_ms > 1000
    assert "response.create" in types
    assert await events(call, "greeting-cache") == [{"hit": False}]
