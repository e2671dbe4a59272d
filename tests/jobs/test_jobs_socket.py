"""`ws/jobs/` (F-77): the organisation's pages hear job cards made and changed."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from jobs.services import job_create, job_update
from tests.agents.factories import OperatorFactory, OrganizationFactory
from tests.ui.test_consumers import _connect

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def _world():
    org, other = OrganizationFactory(), OrganizationFactory()
    return org, OperatorFactory(organization=org), OperatorFactory(organization=other)


async def test_job_created_and_updated_reach_the_organisations_socket_only():
    org, operator, stranger = await _world()
    mine, ok, _ = await _connect("/ws/jobs/", operator)
    theirs, ok2, _ = await _connect("/ws/jobs/", stranger)
    assert ok and ok2
    try:
        job = await database_sync_to_async(job_create)(organization=org, title="修理")
        message = await mine.receive_json_from(timeout=5)
        assert message["type"] == "job.created"
        assert message["job_id"] == job.pk and message["title"] == "修理"
        assert message["url"] == f"/jobs/{job.pk}/"
        await database_sync_to_async(job_update)(job=job, status="accepted")
        message = await mine.receive_json_from(timeout=5)
        assert message["type"] == "job.updated" and message["changed"] == ["status"]
        assert await theirs.receive_nothing(timeout=0.3)
    finally:
        await mine.disconnect()
        await theirs.disconnect()


async def test_anonymous_is_refused():
    communicator, connected, _ = await _connect("/ws/jobs/")
    assert not connected
    assert isinstance(communicator, WebsocketCommunicator)
