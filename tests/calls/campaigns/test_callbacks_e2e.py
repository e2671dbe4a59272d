"""Campaign calls through the service's status webhook with Twilio's callbacks
posted as they come, twice each, or held and delivered after the final one newest
first (the emulator's `duplicate_status_callbacks` / `reorder_status_callbacks`):
every attempt and contact ends in the same state (F-64)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from calls.campaigns.dialer import dialer_tick
from calls.campaigns.dialing import attempt_dial
from calls.campaigns.models import Attempt
from calls.campaigns.selectors import FINAL_CONTACT_STATUSES
from realtime.emulators.twilio_api import FarEnd
from tests.calls.campaigns.factories import DialerContactFactory, RunningCampaignFactory
from tests.realtime.flow import conftest as flow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

flow_settings = flow.flow_settings
service = flow.service
start_fake_realtime = flow.start_fake_realtime
twilio = flow.twilio

BEHAVIOURS = ("answer", "busy", "machine", "no-answer")


@sync_to_async
def claim_all():
    campaign = RunningCampaignFactory(
        max_concurrent=10, retry_on=["busy"], max_attempts=1
    )
    contacts = DialerContactFactory.create_batch(len(BEHAVIOURS), campaign=campaign)
    ids = []
    dialer_tick(dispatch=lambda a, lease: ids.append(a))
    return campaign, [c.phone for c in contacts], ids


@sync_to_async
def outcome(campaign):
    rows = Attempt.objects.filter(contact__campaign=campaign).order_by("contact_id")
    return [
        (
            a.contact.status,
            a.state,
            a.result,
            a.answered_by,
            a.twilio_status,
        )
        for a in rows.select_related("contact")
    ]


@sync_to_async
def all_final(campaign) -> bool:
    return not campaign.contacts.exclude(status__in=FINAL_CONTACT_STATUSES).exists()


def dial(attempt_id):
    try:
        return attempt_dial(attempt_id=attempt_id)
    finally:
        connections.close_all()


@pytest.mark.parametrize("delivery", ["as-sent", "twice", "reordered"])
async def test_duplicate_and_reordered_callbacks_end_the_same(
    flow_settings, service, twilio, start_fake_realtime, delivery
):
    twilio.duplicate_status_callbacks = delivery == "twice"
    twilio.reorder_status_callbacks = delivery == "reordered"
    campaign, phones, attempt_ids = await claim_all()
    for phone, behaviour in zip(phones, BEHAVIOURS, strict=True):
        twilio.far_ends[phone] = FarEnd(
            behaviour, hangup_after_s=0.5 if behaviour == "answer" else None
        )
    async with start_fake_realtime():
        await asyncio.gather(*(asyncio.to_thread(dial, a) for a in attempt_ids))
        await twilio.wait_idle(timeout=20)
        assert await flow.wait_until(lambda: all_final(campaign), within_s=10)
    assert await outcome(campaign) == [
        ("done", "finished", "completed", "human", "completed"),
        ("exhausted", "finished", "busy", "", "busy"),
        ("done", "finished", "machine", "machine_start", "completed"),
        ("failed", "finished", "no-answer", "", "no-answer"),
    ]


@sync_to_async
def campaign_with(machine_action, voicemail, behaviour_count=1):
    campaign = RunningCampaignFactory(machine_action=machine_action, retry_on=[])
    campaign.agent.voicemail_message = voicemail
    campaign.agent.save(update_fields=["voicemail_message"])
    contact = DialerContactFactory(campaign=campaign)
    ids = []
    dialer_tick(dispatch=lambda a, lease: ids.append(a))
    return campaign, contact.phone, ids[0]


@pytest.mark.parametrize(
    ("action", "verdict", "said"),
    [
        ("hangup", "machine_start", []),
        ("voicemail", "machine_end_beep", ["またお電話いたします。"]),
    ],
)
async def test_async_amd_sends_a_machine_the_message_or_hangs_up(
    flow_settings, service, twilio, start_fake_realtime, action, verdict, said
):
    """The AI takes the call at once (AsyncAmd); AMD's later verdict `machine`
    replaces the TwiML: the voicemail message after the beep, or a hang-up."""
    campaign, phone, attempt_id = await campaign_with(action, "またお電話いたします。")
    twilio.far_ends[phone] = FarEnd("machine")
    async with start_fake_realtime():
        sid = await asyncio.to_thread(dial, attempt_id)
        finished = await twilio.call(sid).wait_finished(timeout=20)
        assert await flow.wait_until(lambda: all_final(campaign), within_s=10)
    assert finished.options.async_amd
    assert finished.answered_by == verdict
    assert finished.said() == said
    [(status, state, result, answered_by, _)] = await outcome(campaign)
    assert (status, state, result, answered_by) == (
        "done",
        "finished",
        "machine",
        verdict,
    )
