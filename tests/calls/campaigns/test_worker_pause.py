"""Pause, resume and cancel against real Celery processes (F-64): after a pause or
a cancel, no create reaches Twilio more than 2 s later; resume dials again."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from calls.campaigns.models import Campaign
from calls.campaigns.services import campaign_cancel, campaign_pause, campaign_resume
from realtime.emulators.twilio_api import FarEnd
from tests.calls.campaigns.factories import DialerContactFactory, RunningCampaignFactory
from tests.calls.campaigns.workers import CeleryProcesses
from tests.realtime.flow import conftest as flow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

flow_settings = flow.flow_settings
service = flow.service
twilio = flow.twilio


@sync_to_async
def make_campaign() -> Campaign:
    campaign = RunningCampaignFactory(max_concurrent=5, calls_per_second=2, retry_on=[])
    DialerContactFactory.create_batch(40, campaign=campaign)
    return campaign


async def wait_for_creates(twilio, n: int, within_s: float, procs) -> None:
    deadline = time.monotonic() + within_s
    while len(twilio.create_times()) < n:
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {n} creates\n" + procs.logs())
        await asyncio.sleep(0.1)


async def test_pause_resume_cancel_with_real_workers(
    flow_settings, service, twilio, tmp_path
):
    twilio.default_far_end = FarEnd("busy")  # quick calls, no media
    campaign = await make_campaign()
    procs = CeleryProcesses(tmp_path)
    procs.start_beat()
    procs.start_worker(pool="threads")
    try:
        await wait_for_creates(twilio, 3, 30, procs)
        await sync_to_async(campaign_pause)(campaign=campaign)
        paused_at = time.time()
        await asyncio.sleep(2.5)
        late = [t for t in twilio.create_times() if t > paused_at + 2.0]
        assert late == []
        made = len(twilio.create_times())

        await sync_to_async(campaign_resume)(campaign=campaign)
        await wait_for_creates(twilio, made + 2, 10, procs)
        await sync_to_async(campaign_cancel)(campaign=campaign)
        canceled_at = time.time()
        await asyncio.sleep(2.5)
        late = [t for t in twilio.create_times() if t > canceled_at + 2.0]
        assert late == []
    finally:
        procs.stop()
    assert len(twilio.create_times()) < 40
