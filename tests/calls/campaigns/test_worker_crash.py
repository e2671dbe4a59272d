"""F-64 with real Celery processes: beat ticks, a worker dials, the emulator counts.

The worker SIGKILLs itself (the test-only DIALER_CRASH_AT hook) between the
attempt's committed REST try and the create, or just after the create; the test
starts it again. Every attempt must have exactly one call at Twilio, and every
contact must end final. On the filesystem broker a killed task's message is gone
(it was taken off the folder), so the recovery shown is the tick's: the attempt is
handed on after DIALER_LEASE_SECONDS and reconciled through the Calls list; after
the create, the status callbacks (keyed by our call id) also adopt the CallSid.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import pytest
from asgiref.sync import sync_to_async

from calls.campaigns.models import Attempt, Campaign, Contact
from calls.campaigns.selectors import FINAL_CONTACT_STATUSES
from realtime.emulators.twilio_api import FarEnd
from tests.calls.campaigns.factories import DialerContactFactory, RunningCampaignFactory
from tests.calls.campaigns.workers import CeleryProcesses
from tests.realtime.flow import conftest as flow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

flow_settings = flow.flow_settings
service = flow.service
start_fake_realtime = flow.start_fake_realtime
twilio = flow.twilio

BEHAVIOURS = ["answer", "busy", "machine", "answer", "no-answer", "answer"]


@sync_to_async
def make_campaign(n: int, **kwargs) -> Campaign:
    campaign = RunningCampaignFactory(
        max_concurrent=kwargs.pop("max_concurrent", 3),
        calls_per_second=kwargs.pop("calls_per_second", 5),
        max_attempts=2,
        retry_delay_seconds=1,
        retry_on=["busy"],
        **kwargs,
    )
    DialerContactFactory.create_batch(n, campaign=campaign)
    return campaign


def far_ends(twilio, campaign_contacts) -> None:
    for i, phone in enumerate(campaign_contacts):
        behaviour = BEHAVIOURS[i % len(BEHAVIOURS)]
        twilio.far_ends[phone] = FarEnd(
            behaviour, hangup_after_s=0.6 if behaviour == "answer" else None
        )


@sync_to_async
def phones(campaign: Campaign) -> list[str]:
    return list(campaign.contacts.order_by("pk").values_list("phone", flat=True))


@sync_to_async
def finished(campaign: Campaign) -> bool:
    campaign.refresh_from_db()
    open_contacts = campaign.contacts.exclude(status__in=FINAL_CONTACT_STATUSES)
    return campaign.status == Campaign.Status.COMPLETED and not open_contacts.exists()


@sync_to_async
def attempts_of(campaign: Campaign) -> list[Attempt]:
    return list(
        Attempt.objects.filter(contact__campaign=campaign).select_related("contact")
    )


async def run_until_finished(procs, campaign, *, within_s: float, chaos=None) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        if chaos is not None:
            chaos()
        procs.restart_dead_workers()
        if await finished(campaign):
            return
    pytest.fail("campaign did not finish\n" + procs.logs())


async def assert_exactly_once(twilio, campaign) -> None:
    """Every call at the emulator belongs to one attempt, every placed attempt has
    one call, and no attempt shares a call."""
    attempts = await attempts_of(campaign)
    numbers = {a.contact.phone for a in attempts}
    emulated = [c for c in twilio.calls.values() if c.to in numbers]
    sids = Counter(a.call_sid for a in attempts if a.call_sid)
    assert all(n == 1 for n in sids.values()), sids
    assert {c.sid for c in emulated} == set(sids), (
        [c.sid for c in emulated],
        [(a.pk, a.call_sid, a.state, a.rest_tries) for a in attempts],
    )
    unplaced = [a for a in attempts if not a.call_sid]
    assert all(a.result in ("canceled", "failed") for a in unplaced), unplaced
    per_contact = Counter(c.to for c in emulated)
    for attempt in attempts:
        placed = [
            a for a in attempts if a.contact_id == attempt.contact_id and a.call_sid
        ]
        assert per_contact[attempt.contact.phone] == len(placed)


@pytest.mark.parametrize("point", ["before-rest", "after-rest"])
async def test_worker_killed_around_the_create_gives_one_call_per_attempt(
    flow_settings, service, twilio, start_fake_realtime, tmp_path, point
):
    """SIGKILL at `point`, a new worker, and still one call per attempt; every
    contact final and the campaign completed."""
    flow_settings.DIALER_LEASE_SECONDS = 3
    campaign = await make_campaign(6)
    far_ends(twilio, await phones(campaign))
    marker = tmp_path / "crashed"
    procs = CeleryProcesses(tmp_path, DIALER_CRASH_AT=f"{point}:{marker}")
    async with start_fake_realtime():
        procs.start_beat()
        procs.start_worker()
        try:
            await run_until_finished(procs, campaign, within_s=60)
        finally:
            procs.stop()
    assert marker.exists(), procs.logs()
    assert procs.restarts == 1
    await assert_exactly_once(twilio, campaign)
    assert twilio.max_concurrent_live(since="created") <= 3  # max_concurrent
    if point == "before-rest":
        # The killed attempt's try was committed, nothing reached Twilio: after the
        # lease a new task found no call in the Calls list and made the one create.
        assert max(a.rest_tries for a in await attempts_of(campaign)) == 2
    counts = Counter(
        await sync_to_async(list)(campaign.contacts.values_list("status", flat=True))
    )
    assert counts[Contact.Status.EXHAUSTED] == 1  # the busy one, twice
    assert counts[Contact.Status.DONE] == 4  # three people and a machine


REDIS_URL = os.environ.get("REDIS_URL", "")


@pytest.mark.redis
@pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set: two workers share Redis")
async def test_two_workers_on_redis_one_killed_again_and_again(
    flow_settings, service, twilio, start_fake_realtime, tmp_path
):
    """Two workers (threads pools) on Redis, one SIGKILLed every 2 s and started
    again: no attempt gets two calls and every contact ends final."""
    flow_settings.DIALER_LEASE_SECONDS = 3
    campaign = await make_campaign(24, max_concurrent=6, calls_per_second=8)
    far_ends(twilio, await phones(campaign))
    procs = CeleryProcesses(tmp_path, broker_url=REDIS_URL)
    last_kill = [time.monotonic()]

    def chaos() -> None:
        if time.monotonic() - last_kill[0] > 2.0:
            procs.kill_worker(0)
            last_kill[0] = time.monotonic()

    async with start_fake_realtime():
        procs.start_beat()
        procs.start_worker(0, pool="threads")
        procs.start_worker(1, pool="threads")
        try:
            await run_until_finished(procs, campaign, within_s=80, chaos=chaos)
        finally:
            procs.stop()
    assert procs.restarts >= 3
    await assert_exactly_once(twilio, campaign)
    assert twilio.max_concurrent_live(since="created") <= 6  # max_concurrent
