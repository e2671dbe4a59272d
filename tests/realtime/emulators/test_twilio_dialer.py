"""The Twilio emulator as an outbound campaign dialer meets it: the Calls list
and its filters, CPS queueing, scripted far ends per number, REST faults,
async AMD and awkward status callback delivery. The client is the real
``twilio`` library."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from realtime.emulators.twilio_api import (
    FarEnd,
    RestFault,
    TwilioEmulator,
    max_in_window,
    max_overlap,
)
from tests.realtime.emulators.test_twilio_api import AC, APP, TOKEN, FakeApp, say

A = "+818011112222"
B = "+818033334444"
FROM = "+81312345678"
LONG = "<Response><Pause length='600'/></Response>"
ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


@pytest.fixture
def app() -> FakeApp:
    return FakeApp()


@pytest.fixture
async def emu(app: FakeApp) -> AsyncIterator[TwilioEmulator]:
    emulator = TwilioEmulator(
        AC, TOKEN, transport=httpx.MockTransport(app.handle), seed=7
    )
    async with emulator:
        yield emulator


def client_for(emu: TwilioEmulator, timeout: float | None = None) -> Client:
    http = TwilioHttpClient(timeout=timeout)
    client = Client(AC, TOKEN, http_client=http)
    client.api.base_url = emu.base_url
    return client


@pytest.fixture
def client(emu: TwilioEmulator) -> Client:
    return client_for(emu)


async def dial(client: Client, to: str = A, **kwargs: Any) -> Any:
    kwargs.setdefault("twiml", LONG)
    return await asyncio.to_thread(client.calls.create, to=to, from_=FROM, **kwargs)


async def listed(client: Client, **filters: Any) -> list[str]:
    calls = await asyncio.to_thread(client.calls.list, **filters)
    return [c.sid for c in calls]


# ------------------------------------------------------------ the Calls list


async def test_list_filters_by_number_and_status_newest_first_across_pages(
    emu: TwilioEmulator, client: Client
) -> None:
    """To, From and Status filter; pages of PageSize follow next_page_uri with
    the filters kept, newest first, so list() and stream() see every call."""
    emu.far_ends[B] = FarEnd("busy")
    to_a = [(await dial(client, A)).sid for _ in range(5)]
    to_b = [(await dial(client, B)).sid for _ in range(2)]
    for sid in to_b:
        await emu.call(sid).wait_finished(3)

    assert await listed(client, to=A, page_size=2) == to_a[::-1]
    assert await listed(client, to=B, page_size=1) == to_b[::-1]
    assert await listed(client, status="busy", page_size=1) == to_b[::-1]
    assert await listed(client, from_=FROM) == (to_a + to_b)[::-1]
    assert await listed(client, from_="+81399999999") == []
    streamed = await asyncio.to_thread(
        lambda: [c.sid for c in client.calls.stream(to=A, page_size=2, limit=3)]
    )
    assert streamed == to_a[::-1][:3]

    page = await asyncio.to_thread(client.calls.page, to=A, page_size=2)
    raw = page._payload
    assert (raw["page"], raw["page_size"], raw["start"], raw["end"]) == (0, 2, 0, 1)
    assert "To=%2B818011112222" in raw["next_page_uri"]
    assert f"PageToken=PA{to_a[-2]}" in raw["next_page_uri"]
    last = await asyncio.to_thread(client.calls.page, to=A, page_size=2, page_number=2)
    assert [c.sid for c in last] == [to_a[0]]
    assert last._payload["next_page_uri"] is None


async def test_pages_do_not_shift_when_calls_arrive_between_reads(
    emu: TwilioEmulator, client: Client
) -> None:
    """A page token starts after the previous page's last call, so a call
    created while a dialer reads the list does not repeat or hide others."""
    sids = [(await dial(client)).sid for _ in range(3)]
    first = await asyncio.to_thread(client.calls.page, to=A, page_size=2)
    await dial(client)
    second = await asyncio.to_thread(first.next_page)
    assert [c.sid for c in first] + [c.sid for c in second] == sids[::-1]


async def test_start_time_filters_and_a_queued_call(
    emu: TwilioEmulator, client: Client
) -> None:
    """StartTime (a UTC day), StartTime>= and StartTime<= match the call's
    start_time, set when it is dialed; a call still queued has none, so only
    filters without StartTime (To, Status=queued) find it."""
    before = datetime.now(UTC) - timedelta(seconds=2)
    dialed = await dial(client)
    await emu.call(dialed.sid).wait_status("in-progress")
    fetched = await asyncio.to_thread(client.calls(dialed.sid).fetch)
    assert fetched.start_time is not None

    today = datetime.now(UTC).date()
    assert await listed(client, to=A, start_time_after=before) == [dialed.sid]
    assert await listed(client, to=A, start_time=today) == [dialed.sid]
    assert await listed(client, to=A, start_time=today - timedelta(days=1)) == []
    assert await listed(client, start_time_before=before) == []
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert await listed(client, to=A, start_time_before=later) == [dialed.sid]
    assert await listed(client, to=A, start_time_after=later) == []
    # A bare date is midnight UTC: on or after it, on or before it.
    assert await listed(client, to=A, start_time_after=str(today)) == [dialed.sid]
    assert await listed(client, to=A, start_time_before=str(today)) == []

    emu.cps = 0.2  # the next call waits its turn for five seconds
    queued = await dial(client, B)
    resource = await asyncio.to_thread(client.calls(queued.sid).fetch)
    assert resource.status == "queued"
    assert resource.start_time is None
    assert await listed(client, to=B, start_time_after=before) == []
    assert await listed(client, to=B) == [queued.sid]
    assert await listed(client, status="queued") == [queued.sid]


async def test_list_refuses_a_bad_filter(emu: TwilioEmulator) -> None:
    """An unknown Status or an unreadable date is a 400 (the library's list()
    raises TwilioException "Unable to fetch page")."""
    url = f"{emu.base_url}/2010-04-01/Accounts/{AC}/Calls.json"
    async with httpx.AsyncClient(auth=(AC, TOKEN)) as http:
        for query in ("Status=dialing", "StartTime%3E=yesterday", "PageSize=0"):
            reply = await http.get(f"{url}?{query}")
            assert (reply.status_code, reply.json()["code"]) == (400, 21200)
        assert (await http.get(f"{url}?StartTime%3E=2026-01-02T03:04:05Z")).is_success


# ------------------------------------------------------------- CPS queueing


async def test_creates_beyond_cps_are_queued_and_leave_at_the_rate(
    app: FakeApp,
) -> None:
    """All creates are accepted at once; the calls are dialed one by one, in
    creation order, at least 1/cps apart; queue_time is an estimate, then the
    time the call spent queued."""
    emulator = TwilioEmulator(
        AC, TOKEN, transport=httpx.MockTransport(app.handle), cps=5
    )
    async with emulator:
        client = client_for(emulator)
        replies = await asyncio.gather(
            *(
                dial(
                    client,
                    f"+8180000000{i:02d}",
                    status_callback=f"{APP}/status",
                    status_callback_event=["initiated"],
                )
                for i in range(5)
            )
        )
        assert all(r.status == "queued" for r in replies)
        calls = sorted(
            (emulator.calls[r.sid] for r in replies), key=lambda c: c.times.created
        )
        estimates = [c.queue_estimate_ms for c in calls]
        assert estimates == sorted(estimates) and estimates[-1] > 0
        for call in calls:
            await emulator.call(call.sid).wait_status("in-progress")

        dequeued = emulator.dequeue_times()
        assert dequeued == [c.times.dequeued for c in calls]
        gaps = [b - a for a, b in itertools.pairwise(dequeued)]
        assert min(gaps) >= 0.2 * 0.99
        assert max_in_window(dequeued, 0.4) <= 2
        assert max_in_window(emulator.create_times(), 10.0) == 5
        spread = calls[-1].times.created - calls[0].times.created
        for call in calls:
            fetched = await asyncio.to_thread(client.calls(call.sid).fetch)
            assert call.times.dequeued is not None
            spent = (call.times.dequeued - call.times.created) * 1000
            assert abs(int(fetched.queue_time) - spent) <= 1
        assert calls[-1].queue_time_ms is not None
        assert calls[-1].queue_time_ms >= (0.8 - spread) * 1000 * 0.99
        initiated = [h.params["CallSid"] for h in app.to("/status")]
        assert initiated == [c.sid for c in calls]
        assert emulator.max_concurrent_live() == 5
        assert emulator.max_concurrent_live("answered") == 5


async def test_a_queued_call_can_be_canceled(app: FakeApp) -> None:
    emulator = TwilioEmulator(
        AC, TOKEN, transport=httpx.MockTransport(app.handle), cps=0.5
    )
    async with emulator:
        client = client_for(emulator)
        await dial(client)
        waiting = await dial(client, B)
        canceled = await asyncio.to_thread(
            client.calls(waiting.sid).update, status="canceled"
        )
        assert canceled.status == "canceled"
        done = await emulator.call(waiting.sid).wait_finished(3)
        assert done.times.dequeued is None
        assert done.start_time is None
        assert done.entries("dequeued") == []


def test_window_and_overlap_helpers() -> None:
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.2], 1.0) == 4
    assert max_in_window([0.0, 0.5, 1.0, 1.5], 1.0) == 2
    assert max_in_window([], 1.0) == 0
    assert max_overlap([(0, 2), (1, 3), (2, None), (5, 6)]) == 2
    assert max_overlap([(0, None), (1, None)]) == 2


# ------------------------------------------------------------ far end scripts


async def test_far_end_sequence_per_number(emu: TwilioEmulator, client: Client) -> None:
    """The same number is busy on the first call and answers the second; then
    its far_ends entry (or the default) applies again."""
    emu.far_end_sequences[A] = [FarEnd("busy"), FarEnd("answer", hangup_after_s=0)]
    emu.far_ends[A] = FarEnd("no-answer")
    statuses = []
    for _ in range(3):
        call = await dial(client)
        done = await emu.call(call.sid).wait_finished(3)
        statuses.append(done.status)
        assert done.entries("far-end")[0].detail["behaviour"] == done.far_end.behaviour
    assert statuses == ["busy", "completed", "no-answer"]
    assert emu.far_end_sequences[A] == []


async def test_talk_time_is_drawn_from_the_seeded_range(
    emu: TwilioEmulator, client: Client
) -> None:
    """A human far end with talk_s hangs up after uniform(a, b) seconds,
    drawn from the emulator's seeded random (seed=7 here)."""
    emu.default_far_end = FarEnd("answer", talk_s=(0.02, 0.08))
    expected = random.Random(7)
    sids = []
    for _ in range(3):
        sids.append((await dial(client)).sid)
        await emu.call(sids[-1]).wait_finished(3)
    calls = [emu.calls[sid] for sid in sids]
    assert [c.talk_s for c in calls] == [expected.uniform(0.02, 0.08) for _ in sids]
    for call in calls:
        assert [e.detail["by"] for e in call.entries("hangup")] == ["far end"]
        assert call.times.ended is not None and call.times.answered is not None
        assert call.times.ended - call.times.answered >= (call.talk_s or 0) * 0.9


async def test_slow_answer_rings_for_ring_s(
    emu: TwilioEmulator, client: Client
) -> None:
    emu.far_ends[A] = FarEnd("answer", ring_s=0.3, hangup_after_s=0)
    emu.far_ends[B] = FarEnd("answer", hangup_after_s=0)
    slow = await emu.call((await dial(client, A)).sid).wait_finished(3)
    quick = await emu.call((await dial(client, B)).sid).wait_finished(3)
    rings = []
    for call in (slow, quick):
        assert call.times.answered is not None and call.times.dequeued is not None
        rings.append(call.times.answered - call.times.dequeued)
    assert rings[0] >= 0.3 * 0.9 > rings[1]


def test_far_end_refuses_nonsense() -> None:
    for kwargs in (
        {"behaviour": "sing"},
        {"talk_s": (3.0, 1.0)},
        {"talk_s": (1.0, 2.0), "hangup_after_s": 1.0},
        {"ring_s": -1.0},
    ):
        with pytest.raises(ValueError):
            FarEnd(**kwargs)


# ------------------------------------------------------------ REST faults


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500), (503, 20503)])
async def test_injected_errors_refuse_the_create(
    emu: TwilioEmulator, client: Client, status: int, code: int
) -> None:
    """The next N creates get Twilio's error body (the library raises
    TwilioRestException with the code); no call exists; then creates work."""
    emu.inject_fault(RestFault(status), count=2)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as caught:
            await dial(client)
        assert (caught.value.status, caught.value.code) == (status, code)
    assert emu.calls == {}
    assert (await dial(client)).status == "queued"
    assert [(f.fault.status, f.to, f.call_sid) for f in emu.faults] == [
        (status, A, None),
        (status, A, None),
    ]
    assert emu.pending_faults == []


async def test_ambiguous_failure_creates_the_call_the_list_finds(
    emu: TwilioEmulator, client: Client
) -> None:
    """create=True: the client gets a 500 but the call exists and proceeds;
    listing To= with StartTime>= the attempt finds it."""
    attempt = datetime.now(UTC) - timedelta(seconds=1)
    emu.inject_fault(RestFault(500, create=True))
    with pytest.raises(TwilioRestException) as caught:
        await dial(client)
    assert caught.value.code == 20500
    (record,) = emu.faults
    assert record.call_sid is not None
    handle = emu.call(record.call_sid)
    assert handle.call.entries("rest-fault")[0].detail["status"] == 500
    await handle.wait_status("in-progress")
    assert await listed(client, to=A, start_time_after=attempt) == [record.call_sid]


async def test_an_invalid_create_keeps_the_ambiguous_fault_for_the_next(
    emu: TwilioEmulator, client: Client
) -> None:
    """A fault that creates the call waits for a create that would succeed:
    an invalid request still gets its 400."""
    emu.inject_fault(RestFault(503, create=True))
    with pytest.raises(TwilioRestException) as caught:
        await dial(client, to="not-a-number")
    assert (caught.value.status, caught.value.code) == (400, 21211)
    assert emu.faults == [] and len(emu.pending_faults) == 1
    with pytest.raises(TwilioRestException) as caught:
        await dial(client)
    assert caught.value.status == 503
    assert [f.call_sid for f in emu.faults] == [emu.outbound_calls()[0].sid]


async def test_dropped_connection_after_creating(
    emu: TwilioEmulator, client: Client
) -> None:
    emu.inject_fault(RestFault(create=True, drop=True))
    with pytest.raises(requests.exceptions.RequestException):
        await dial(client)
    (record,) = emu.faults
    assert record.call_sid in emu.calls
    assert await listed(client, to=A) == [record.call_sid]


async def test_reply_slower_than_the_client_timeout(emu: TwilioEmulator) -> None:
    emu.inject_fault(RestFault(create=True, delay_s=1.0))
    impatient = client_for(emu, timeout=0.2)
    with pytest.raises(requests.exceptions.Timeout):
        await dial(impatient)
    (record,) = emu.faults
    assert record.call_sid in emu.calls


# ---------------------------------------------------------------- async AMD


async def test_async_amd_runs_twiml_at_once_and_posts_the_result(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    """With AsyncAmd=true the voice URL is fetched at answer without
    AnsweredBy; the result is posted, signed, to AsyncAmdStatusCallback."""
    emu.timings = dataclasses.replace(emu.timings, amd_s=0.2)
    emu.far_ends[A] = FarEnd("machine", hangup_after_s=0.4)
    app.twiml["/answer"] = LONG
    call = await asyncio.to_thread(
        client.calls.create,
        to=A,
        from_=FROM,
        url=f"{APP}/answer",
        machine_detection="Enable",
        async_amd="true",
        async_amd_status_callback=f"{APP}/amd",
        async_amd_status_callback_method="POST",
        status_callback=f"{APP}/status",
    )
    done = await emu.call(call.sid).wait_finished(3)
    (voice,) = app.to("/answer")
    (amd,) = app.to("/amd")
    assert "AnsweredBy" not in voice.params
    assert voice.at < amd.at
    assert amd.signature_valid
    assert amd.params["AnsweredBy"] == "machine_start"
    assert (amd.params["CallSid"], amd.params["AccountSid"]) == (call.sid, AC)
    assert int(amd.params["MachineDetectionDuration"]) >= 0
    assert done.answered_by == "machine_start"
    (status,) = app.to("/status")
    assert status.params["AnsweredBy"] == "machine_start"


async def test_sync_amd_waits_and_reports_on_the_voice_webhook(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    emu.far_ends[A] = FarEnd("answer", hangup_after_s=0)
    call = await asyncio.to_thread(
        client.calls.create,
        to=A,
        from_=FROM,
        url=f"{APP}/answer",
        machine_detection="DetectMessageEnd",
    )
    await emu.call(call.sid).wait_finished(3)
    (voice,) = app.to("/answer")
    assert voice.params["AnsweredBy"] == "human"
    assert "MachineDetectionDuration" in voice.params
    assert app.to("/amd") == []


async def test_async_amd_values_are_checked(client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await dial(client, machine_detection="Enable", async_amd="yes")
    assert (caught.value.status, caught.value.code) == (400, 21200)


# --------------------------------------------------------- status callbacks


async def test_status_callbacks_carry_sequence_and_answered_by(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    emu.far_ends[A] = FarEnd("answer", hangup_after_s=0)
    call = await dial(
        client,
        twiml=say("hi"),
        machine_detection="Enable",
        status_callback=f"{APP}/status",
        status_callback_event=["ringing", "completed"],
    )
    await emu.call(call.sid).wait_finished(3)
    hits = app.to("/status")
    assert [h.params["CallStatus"] for h in hits] == ["ringing", "completed"]
    assert [h.params["SequenceNumber"] for h in hits] == ["0", "1"]
    assert all(h.params["CallbackSource"] == "call-progress-events" for h in hits)
    assert "CallDuration" in hits[-1].params and "CallDuration" not in hits[0].params
    assert hits[-1].params["AnsweredBy"] == "human"


async def test_status_callbacks_twice_and_out_of_order(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    """The switches deliver each callback twice and hold all but the final one
    until after it, newest first; SequenceNumber tells the order."""
    emu.duplicate_status_callbacks = True
    emu.reorder_status_callbacks = True
    emu.far_ends[A] = FarEnd("answer", hangup_after_s=0)
    call = await dial(
        client, status_callback=f"{APP}/status", status_callback_event=ALL_EVENTS
    )
    done = await emu.call(call.sid).wait_finished(3)
    seen = [(h.params["CallStatus"], h.params["SequenceNumber"]) for h in app.hits]
    assert seen == [
        ("completed", "3"),
        ("completed", "3"),
        ("in-progress", "2"),
        ("in-progress", "2"),
        ("ringing", "1"),
        ("ringing", "1"),
        ("initiated", "0"),
        ("initiated", "0"),
    ]
    deliveries = [c.delivery for c in done.callbacks if c.kind == "status"]
    assert deliveries == ["normal", "duplicate"] + ["late", "duplicate"] * 3
