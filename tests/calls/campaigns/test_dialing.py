"""dial_attempt against the Twilio emulator (F-64): one create per attempt through
REST faults, reconciliation and pauses; creates paced to calls_per_second."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from calls.campaigns.dialer import dialer_tick
from calls.campaigns.dialing import attempt_dial
from calls.campaigns.models import Attempt, Campaign, Contact
from calls.campaigns.services import campaign_cancel, campaign_pause
from calls.twilio_client import twilio_call_create
from realtime.emulators.twilio_api import RestFault
from tests.calls.campaigns.factories import DialerContactFactory, RunningCampaignFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def in_thread(fn, /, **kwargs):
    """Run a sync dialer function as a worker would: its own thread and connection."""

    def run():
        try:
            return fn(**kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


@sync_to_async
def claim(n=1, **campaign_kwargs):
    """A running campaign with `n` contacts, claimed by one tick; the attempts."""
    dispatched = []
    campaign = RunningCampaignFactory(max_concurrent=50, **campaign_kwargs)
    DialerContactFactory.create_batch(n, campaign=campaign)
    dialer_tick(dispatch=lambda a, lease: dispatched.append(a))
    attempts = Attempt.objects.select_related("contact").filter(pk__in=dispatched)
    return campaign, list(attempts.order_by("pk"))


@sync_to_async
def reload(attempt):
    return Attempt.objects.select_related("contact", "call").get(pk=attempt.pk)


async def test_dial_places_one_call_with_the_campaign_webhooks(
    dialer_settings, twilio_emulator
):
    """The attempt gets its CallSession (outbound, contact variables and
    customer_name) and one Twilio call with our answer URL, status callback and
    events, and AMD; a second run of the task for it changes nothing."""
    _, [attempt] = await claim()
    sid = await in_thread(attempt_dial, attempt_id=attempt.pk)
    await in_thread(attempt_dial, attempt_id=attempt.pk)
    attempt = await reload(attempt)
    assert attempt.call_sid == sid and attempt.state != Attempt.State.DIALING
    assert attempt.rest_tries == 1
    call = attempt.call
    assert call.twilio_call_sid == sid and call.direction == "outbound"
    assert call.contact_variables == {
        "plan": "ゴールド",
        "customer_name": attempt.contact.name,
    }
    [emulated] = twilio_emulator.calls_to(attempt.contact.phone)
    options = emulated.options
    base = dialer_settings.PUBLIC_BASE_URL
    assert options.url == f"{base}/api/twilio/voice/outbound/{call.pk}"
    assert options.status_callback == f"{base}/api/twilio/status/{call.pk}"
    assert options.status_callback_events == {
        "initiated",
        "ringing",
        "answered",
        "completed",
    }
    assert options.machine_detection == "Enable"


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([RestFault(429), RestFault(429)], id="429-429"),
        pytest.param([RestFault(503)], id="503"),
        pytest.param(
            [RestFault(500), RestFault(429), RestFault(503)], id="500-429-503"
        ),
    ],
)
async def test_429_and_5xx_are_retried_with_back_off_and_give_one_call(
    dialer_settings, twilio_emulator, faults
):
    """Refused creates (no call made) are retried after a back-off, each try
    reconciled first: one call, rest_tries = faults + 1."""
    _, [attempt] = await claim()
    for fault in faults:
        twilio_emulator.inject_fault(fault)
    sid = await in_thread(attempt_dial, attempt_id=attempt.pk)
    attempt = await reload(attempt)
    assert sid and attempt.call_sid == sid
    assert len(twilio_emulator.calls_to(attempt.contact.phone)) == 1
    assert attempt.rest_tries == len(faults) + 1
    assert [r.fault for r in twilio_emulator.faults] == faults


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(RestFault(500, create=True), id="500-after-create"),
        pytest.param(RestFault(502, create=True, drop=True), id="reply-dropped"),
        pytest.param(RestFault(500, create=True, delay_s=2.0), id="timeout"),
    ],
)
async def test_ambiguous_create_is_reconciled_not_redialled(
    dialer_settings, twilio_emulator, fault
):
    """Twilio made the call but we got a 500, no reply, or a timeout: the retry
    finds it in the Calls list and adopts it; no second create."""
    dialer_settings.DIALER_LEASE_SECONDS = 3  # requests time out after 1 s
    _, [attempt] = await claim()
    twilio_emulator.inject_fault(fault)
    sid = await in_thread(attempt_dial, attempt_id=attempt.pk)
    attempt = await reload(attempt)
    [emulated] = twilio_emulator.calls_to(attempt.contact.phone)
    assert sid == emulated.sid == attempt.call_sid
    assert attempt.rest_tries == 1 and "adopted" in attempt.error


async def test_a_4xx_fails_the_attempt_without_retrying_the_create(
    dialer_settings, twilio_emulator
):
    _, [attempt] = await claim()
    await sync_to_async(Contact.objects.filter(pk=attempt.contact_id).update)(
        phone="not-a-number"
    )
    assert await in_thread(attempt_dial, attempt_id=attempt.pk) is None
    attempt = await reload(attempt)
    assert (attempt.state, attempt.result, attempt.rest_tries) == (
        "finished",
        "failed",
        1,
    )


@sync_to_async
def leave_stale(attempt, *, seconds=60):
    """As if a worker died after committing a REST try: rest_tries 1, lease old."""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    Attempt.objects.filter(pk=attempt.pk).update(rest_tries=1, dialed_at=old)


@sync_to_async
def tick_hand_on():
    handed = []
    dialer_tick(dispatch=lambda a, lease: handed.append((a, lease)))
    return handed


async def test_stale_attempt_with_a_call_at_twilio_adopts_it(
    dialer_settings, twilio_emulator
):
    """Killed just after the create: the tick hands the attempt on, the new task
    finds the call in the Calls list (To, From, created after the attempt) and
    adopts it: one call."""
    campaign, [attempt] = await claim()
    sid = await in_thread(
        twilio_call_create,
        to=attempt.contact.phone,
        from_=campaign.from_number,
        url="http://127.0.0.1:9/x",
    )
    await leave_stale(attempt)
    [(attempt_id, lease)] = await tick_hand_on()
    assert attempt_id == attempt.pk and lease
    assert await in_thread(attempt_dial, attempt_id=attempt.pk, lease=lease) == sid
    assert len(twilio_emulator.calls_to(attempt.contact.phone)) == 1
    assert (await reload(attempt)).call_sid == sid


async def test_stale_attempt_without_a_call_at_twilio_is_dialled_once(
    dialer_settings, twilio_emulator
):
    """Killed between the commit and the create: nothing at Twilio, so the new task
    creates the call; the old message, if it comes back, finds the lease taken."""
    _, [attempt] = await claim()
    await leave_stale(attempt)
    [(_, lease)] = await tick_hand_on()
    sid = await in_thread(attempt_dial, attempt_id=attempt.pk, lease=lease)
    assert sid and len(twilio_emulator.calls_to(attempt.contact.phone)) == 1
    assert await in_thread(attempt_dial, attempt_id=attempt.pk) is None
    assert (await reload(attempt)).rest_tries == 2


async def test_calls_list_unreadable_means_no_create(dialer_settings, twilio_emulator):
    """If Twilio cannot say whether the call exists, the task does not dial."""
    _, [attempt] = await claim()
    await leave_stale(attempt)
    [(_, lease)] = await tick_hand_on()
    dialer_settings.TWILIO_AUTH_TOKEN = "wrong"
    assert await in_thread(attempt_dial, attempt_id=attempt.pk, lease=lease) is None
    assert twilio_emulator.calls_to(attempt.contact.phone) == []


@pytest.mark.parametrize("stop", [campaign_pause, campaign_cancel])
async def test_a_dial_task_of_a_stopped_campaign_does_not_dial(
    dialer_settings, twilio_emulator, stop
):
    """Paused or canceled between the claim and the task: the attempt closes as
    canceled, the contact goes back to pending, Twilio sees nothing."""
    campaign, [attempt] = await claim()
    await sync_to_async(stop)(campaign=campaign)
    assert await in_thread(attempt_dial, attempt_id=attempt.pk) is None
    attempt = await reload(attempt)
    assert (attempt.state, attempt.result) == ("finished", "canceled")
    assert attempt.contact.status == Contact.Status.PENDING
    assert twilio_emulator.calls == {}


async def test_creates_are_paced_to_calls_per_second(dialer_settings, twilio_emulator):
    """cps 4, eight attempts dialled by eight concurrent tasks: never more than 4
    creates in any 1 s window at the emulator."""
    _, attempts = await claim(8, calls_per_second=4)
    await sync_to_async(Campaign.objects.update)(calls_per_second=4)
    assert len(attempts) == 4  # the tick claims ⌊cps⌋ a tick
    more = await tick_hand_on()  # claims the next four
    assert len(more) == 4
    ids = [a.pk for a in attempts] + [a for a, _ in more]
    await asyncio.gather(*(in_thread(attempt_dial, attempt_id=i) for i in ids))
    created = sorted(twilio_emulator.create_times())
    assert len(created) == 8
    assert max_in_window(created, 1.0) <= 4
    assert created[-1] - created[0] >= 7 * 0.25 - 0.05


def max_in_window(times, window):
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t < start + window))
    return best


async def test_a_window_closed_by_the_time_of_the_create_dials_nothing(
    dialer_settings, twilio_emulator
):
    """Claimed inside the window, but it closed before the task's create: the
    attempt is canceled unsent and the contact waits for the next window."""
    campaign, [attempt] = await claim()
    await sync_to_async(Campaign.objects.filter(pk=campaign.pk).update)(days=[])
    assert await in_thread(attempt_dial, attempt_id=attempt.pk) is None
    attempt = await reload(attempt)
    assert (attempt.result, attempt.rest_tries) == ("canceled", 0)
    assert attempt.contact.status == Contact.Status.PENDING
    assert twilio_emulator.calls == {}


async def test_a_task_that_lost_its_lease_while_waiting_for_its_slot_sends_nothing(
    dialer_settings, twilio_emulator, monkeypatch
):
    """The slot wait outlived the lease and the tick handed the attempt on: the old
    task must not send its create (the new owner does)."""
    _, [attempt] = await claim()

    def stolen(campaign_id):
        Attempt.objects.filter(pk=attempt.pk).update(
            dialed_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        )

    monkeypatch.setattr("calls.campaigns.dialing._wait_for_slot", stolen)
    assert await in_thread(attempt_dial, attempt_id=attempt.pk) is None
    assert twilio_emulator.calls == {}
    assert (await reload(attempt)).state == Attempt.State.DIALING
