"""The campaign page's socket through the real ASGI app (routing, session, origin)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from calls.campaigns.models import Contact
from calls.campaigns.services import campaign_broadcast, campaign_pause
from tests.agents.factories import OperatorFactory, OrganizationFactory
from tests.calls.campaign_factories import CampaignFactory, ContactFactory
from tests.ui.test_consumers import _connect

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def _world():
    org, other = OrganizationFactory(), OrganizationFactory()
    operator = OperatorFactory(organization=org)
    stranger = OperatorFactory(organization=other)
    campaign = CampaignFactory(organization=org, status="running")
    contacts = [ContactFactory(campaign=campaign) for _ in range(4)]
    return operator, stranger, campaign, contacts


@database_sync_to_async
def _finish(contacts, outcome="booked"):
    for contact in contacts:
        contact.status = Contact.Status.DONE
        contact.outcome = outcome
        contact.save()


async def test_snapshot_on_connect_then_progress_relayed():
    """The socket sends the progress now, then every campaign.progress broadcast."""
    operator, _stranger, campaign, contacts = await _world()
    await _finish(contacts[:1])
    communicator, connected, _ = await _connect(
        f"/ws/campaigns/{campaign.pk}/", operator
    )
    assert connected
    try:
        snapshot = await communicator.receive_json_from(timeout=3)
        assert snapshot == {
            "type": "campaign.snapshot",
            "campaign_id": campaign.pk,
            "status": "running",
            "progress": 25,
            "total": 4,
            "counts": {"done": 1, "pending": 3},
            "outcomes": {"booked": 1},
        }
        await _finish(contacts[1:3])
        await database_sync_to_async(campaign_broadcast)(campaign_id=campaign.pk)
        message = await communicator.receive_json_from(timeout=3)
        assert message["type"] == "campaign.progress"
        assert message["progress"] == 75
        assert message["counts"] == {"done": 3, "pending": 1}
        assert message["outcomes"] == {"booked": 3}
    finally:
        await communicator.disconnect()


async def test_status_change_reaches_the_page():
    """Pausing (a service that broadcasts on commit) shows on the socket."""
    operator, _stranger, campaign, _contacts = await _world()
    communicator, connected, _ = await _connect(
        f"/ws/campaigns/{campaign.pk}/", operator
    )
    assert connected
    try:
        await communicator.receive_json_from(timeout=3)  # the snapshot
        await database_sync_to_async(campaign_pause)(campaign=campaign)
        message = await communicator.receive_json_from(timeout=3)
        assert (message["type"], message["status"]) == ("campaign.progress", "paused")
    finally:
        await communicator.disconnect()


async def test_other_organisations_campaign_is_refused():
    _operator, stranger, campaign, _contacts = await _world()
    _communicator, connected, code = await _connect(
        f"/ws/campaigns/{campaign.pk}/", stranger
    )
    assert (connected, code) == (False, 4403)


async def test_anonymous_and_unknown_campaign_are_refused():
    operator, _stranger, campaign, _contacts = await _world()
    _communicator, connected, code = await _connect(f"/ws/campaigns/{campaign.pk}/")
    assert (connected, code) == (False, 4403)
    _communicator, connected, code = await _connect("/ws/campaigns/999999/", operator)
    assert (connected, code) == (False, 4403)
