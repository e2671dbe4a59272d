"""The tick's guarantees (F-64), one by one, with `now` passed in."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from calls.campaigns.dialer import dialer_tick, window_open
from calls.campaigns.models import Attempt, Campaign, Contact, DoNotCall
from calls.campaigns.services import campaign_cancel, campaign_pause, campaign_resume
from calls.models import CallSession
from calls.status import CallStatus
from tests.calls.campaigns.factories import DialerContactFactory, RunningCampaignFactory

pytestmark = pytest.mark.django_db

TOKYO = ZoneInfo("Asia/Tokyo")
# A Wednesday (in the past: attempts made "now" are never stale at it).
WED = dt.date(2026, 11, 25)


def tokyo(hour: int, minute: int = 0, second: int = 0, day: dt.date = WED):
    return dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=TOKYO)


@pytest.fixture
def tick(dialer_settings, dispatched, django_capture_on_commit_callbacks):
    def run(now=None):
        with django_capture_on_commit_callbacks(execute=True):
            return dialer_tick(now=now or dt.datetime.now(dt.UTC), dispatch=dispatched)

    return run


def _window_campaign(**kwargs):
    return RunningCampaignFactory.build(
        time_zone="Asia/Tokyo",
        days=[1, 2, 3, 4, 5],
        window_start=dt.time(9, 0),
        window_end=dt.time(20, 0),
        **kwargs,
    )


def test_window_start_is_inclusive_end_exclusive_in_tokyo():
    """09:00:00 Tokyo dials, 08:59:59 does not; 19:59:59 dials, 20:00:00 does not,
    whatever the instant looks like in UTC (00:00 UTC is 09:00 in Tokyo)."""
    campaign = _window_campaign()
    assert not window_open(campaign, tokyo(8, 59, 59))
    assert window_open(campaign, tokyo(9, 0, 0))
    assert window_open(campaign, tokyo(9, 0, 0).astimezone(dt.UTC))
    assert window_open(campaign, tokyo(19, 59, 59))
    assert not window_open(campaign, tokyo(20, 0, 0))
    assert not window_open(campaign, tokyo(20, 0, 0).astimezone(dt.UTC))


def test_window_days_are_iso_weekdays_of_the_local_date():
    """Monday 07:00 in Tokyo is Sunday 22:00 UTC: a Mon–Fri window dials; Saturday
    07:00 in Tokyo is Friday in UTC: it does not."""
    campaign = _window_campaign()
    campaign.window_start = dt.time(6, 0)
    monday = tokyo(7, 0, day=dt.date(2026, 11, 23))
    saturday = tokyo(7, 0, day=dt.date(2026, 11, 28))
    assert monday.astimezone(dt.UTC).isoweekday() == 7
    assert saturday.astimezone(dt.UTC).isoweekday() == 5
    assert window_open(campaign, monday)
    assert not window_open(campaign, saturday)


def test_tick_dials_nothing_outside_the_window_and_from_its_start(tick, dispatched):
    """The tick itself honours both edges."""
    campaign = RunningCampaignFactory(
        days=[3], window_start=dt.time(9, 0), window_end=dt.time(20, 0)
    )
    DialerContactFactory.create_batch(2, campaign=campaign)
    assert tick(tokyo(8, 59, 59)).claimed == []
    assert tick(tokyo(20, 0, 0)).claimed == []
    assert len(tick(tokyo(9, 0, 0)).claimed) == 2
    assert len(dispatched.calls) == 2


def test_claim_commits_attempt_and_dialing_contact_then_dispatches(tick, dispatched):
    """Each claim is an Attempt #1 in `dialing` and the contact `dialing`, one
    dispatch per attempt, with no lease (a fresh claim)."""
    contact = DialerContactFactory()
    result = tick()
    attempt = Attempt.objects.get()
    assert result.claimed == [attempt.pk]
    assert dispatched.calls == [(attempt.pk, None)]
    assert attempt.contact == contact and attempt.number == 1
    assert attempt.state == Attempt.State.DIALING and attempt.call_sid is None
    contact.refresh_from_db()
    assert contact.status == Contact.Status.DIALING and contact.attempts == 1


def test_max_concurrent_counts_dialing_and_in_call_contacts(tick):
    """max_concurrent 3 with one contact in a call: two more are claimed, then none."""
    campaign = RunningCampaignFactory(max_concurrent=3)
    DialerContactFactory(campaign=campaign, status=Contact.Status.IN_CALL)
    DialerContactFactory.create_batch(5, campaign=campaign)
    assert len(tick().claimed) == 2
    assert len(tick().claimed) == 0
    live = Contact.objects.filter(status__in=["dialing", "in-call"]).count()
    assert live == 3


def test_calls_per_second_limits_claims_per_tick(tick):
    """cps 2: two claims a tick; none while the pacing runs more than 1 s ahead."""
    campaign = RunningCampaignFactory(calls_per_second=2, max_concurrent=50)
    DialerContactFactory.create_batch(10, campaign=campaign)
    now = dt.datetime.now(dt.UTC)
    assert len(tick(now).claimed) == 2
    campaign.next_dial_at = now + dt.timedelta(seconds=5)
    campaign.save(update_fields=["next_dial_at"])
    assert tick(now).claimed == []


def test_global_cap_keeps_the_inbound_reserve(tick, dialer_settings):
    """MAX_LIVE_CALLS 10, reserve 20 %: campaigns hold at most 8 calls together,
    and inbound calls in progress shrink that further."""
    dialer_settings.MAX_LIVE_CALLS = 10
    a = RunningCampaignFactory(max_concurrent=50, calls_per_second=100)
    b = RunningCampaignFactory(max_concurrent=50, calls_per_second=100)
    DialerContactFactory.create_batch(10, campaign=a)
    DialerContactFactory.create_batch(10, campaign=b)
    assert len(tick().claimed) == 8
    assert tick().claimed == []
    Attempt.objects.filter(pk__in=Attempt.objects.values("pk")[:4]).update(
        state=Attempt.State.FINISHED
    )
    # Four slots free again, but three inbound AI calls are live: 10-4-3 = 3.
    org = a.organization
    for n in range(3):
        CallSession.objects.create(
            organization=org,
            direction=CallSession.Direction.INBOUND,
            status=CallStatus.AI_RESPONDING,
            twilio_call_sid=f"CAin{n}",
        )
    assert len(tick().claimed) == 3


def test_never_two_live_calls_to_one_contact(tick):
    """A contact with an open attempt is not claimed again, even if its status says
    it waits (a callback raced the retry); a finished attempt frees it."""
    contact = DialerContactFactory()
    assert len(tick().claimed) == 1
    Contact.objects.filter(pk=contact.pk).update(status=Contact.Status.RETRY_WAIT)
    assert tick().claimed == []
    Attempt.objects.update(state=Attempt.State.FINISHED, result="busy")
    again = tick().claimed
    assert len(again) == 1
    assert Attempt.objects.get(pk=again[0]).number == 2


def test_retry_wait_contacts_wait_for_their_time(tick):
    now = dt.datetime.now(dt.UTC)
    DialerContactFactory(
        status=Contact.Status.RETRY_WAIT, next_attempt_at=now + dt.timedelta(minutes=1)
    )
    assert tick(now).claimed == []
    assert len(tick(now + dt.timedelta(minutes=1)).claimed) == 1


def test_do_not_call_is_checked_at_dial_time(tick, dispatched):
    """A number put on the list after import is skipped (skipped-dnc), not dialled."""
    contact = DialerContactFactory()
    DoNotCall.objects.create(
        organization=contact.campaign.organization,
        phone=contact.phone,
        source=DoNotCall.Source.OPERATOR,
    )
    result = tick()
    assert result.claimed == [] and result.skipped_dnc == [contact.pk]
    contact.refresh_from_db()
    assert contact.status == Contact.Status.SKIPPED_DNC
    assert dispatched.calls == []


def test_paused_and_canceled_campaigns_dial_nothing_new(tick):
    """Pause: the next tick claims nothing; resume: it dials again; cancel: never."""
    campaign = RunningCampaignFactory(calls_per_second=1, max_concurrent=10)
    DialerContactFactory.create_batch(4, campaign=campaign)
    assert len(tick().claimed) == 1
    campaign_pause(campaign=campaign)
    assert tick().claimed == []
    campaign_resume(campaign=campaign)
    assert len(tick().claimed) == 1
    campaign_cancel(campaign=campaign)
    assert tick().claimed == []


def test_a_campaign_completes_when_no_contact_is_open(tick):
    campaign = RunningCampaignFactory()
    DialerContactFactory(campaign=campaign, status=Contact.Status.DONE)
    DialerContactFactory(campaign=campaign, status=Contact.Status.EXHAUSTED)
    waiting = DialerContactFactory(campaign=campaign, status=Contact.Status.IN_CALL)
    assert tick().completed == []
    Contact.objects.filter(pk=waiting.pk).update(status=Contact.Status.DONE)
    assert tick().completed == [campaign.pk]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_stale_dialing_attempt_is_handed_on_once_with_a_lease(tick, dispatched):
    """An attempt left dialing without a CallSid past the lease goes to a new task,
    stamped with a lease; the next tick does not hand it on again."""
    DialerContactFactory()
    tick()
    attempt = Attempt.objects.get()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=31)
    result = tick(later)
    assert result.stale == [attempt.pk]
    assert dispatched.calls[-1] == (attempt.pk, later.isoformat())
    assert tick(later + dt.timedelta(seconds=1)).stale == []


def test_an_attempt_whose_call_ended_without_a_final_callback_is_settled(tick):
    """The final callback never came, but the call was closed (reaper, webhook):
    30 s later the tick finishes the attempt from the call's status."""
    contact = DialerContactFactory()
    tick()
    attempt = Attempt.objects.get()
    call = CallSession.objects.create(
        organization=contact.campaign.organization,
        direction=CallSession.Direction.OUTBOUND,
        status=CallStatus.NO_ANSWER,
        ended_at=dt.datetime.now(dt.UTC),
    )
    Attempt.objects.filter(pk=attempt.pk).update(
        call=call, call_sid="CA" + "a" * 32, state=Attempt.State.PLACED
    )
    assert tick().settled == []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=31)
    assert tick(later).settled == [attempt.pk]
    attempt.refresh_from_db()
    assert (attempt.state, attempt.result) == ("finished", "no-answer")
    assert Contact.objects.get(pk=contact.pk).status == Contact.Status.RETRY_WAIT


def test_progress_is_broadcast_once_a_tick_per_busy_campaign(tick, monkeypatch):
    sent = []
    monkeypatch.setattr(
        "calls.campaigns.dialer.campaign_broadcast",
        lambda *, campaign_id: sent.append(campaign_id),
    )
    busy = RunningCampaignFactory(max_concurrent=10)
    DialerContactFactory.create_batch(3, campaign=busy)
    idle = RunningCampaignFactory()
    DialerContactFactory(
        campaign=idle,
        status=Contact.Status.RETRY_WAIT,
        next_attempt_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    tick()
    tick()
    assert sent == [busy.pk, busy.pk]
