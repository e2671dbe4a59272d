"""Deliveries by real Celery processes (F-77): a worker sends, beat's sweep hands
the retries back; every event reaches each endpoint, one of which fails at first,
exactly once as its de-duplicating receiver sees it, all signed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from callcenter.celery import app
from notifications.models import Delivery, WebhookEndpoint
from notifications.services import event_publish
from notifications.tasks import deliver
from tests.agents.factories import OrganizationFactory
from tests.calls.campaigns.workers import CeleryProcesses
from tests.notifications.conftest import SECRET
from tests.notifications.receiver import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

EVENTS = 20


def broker_enqueue(tmp: Path) -> Callable[[int, str], None]:
    """Send `deliver` messages to the processes' own broker folder."""
    folder = str(tmp / "celery" / "queue")

    def enqueue(delivery_id: int, lease: str) -> None:
        with app.connection_for_write(
            "fsatomic://",
            transport_options={
                "data_folder_in": folder,
                "data_folder_out": folder,
                "control_folder": str(tmp / "celery" / "control"),
            },
        ) as connection:
            deliver.apply_async(args=[delivery_id, lease], connection=connection)

    return enqueue


@sync_to_async
def publish_all(tmp: Path, steady: Receiver, flaky: Receiver) -> None:
    org = OrganizationFactory()
    for receiver in (steady, flaky):
        WebhookEndpoint.objects.create(
            organization=org,
            url=receiver.url,
            secret=SECRET,
            events=["job.created"],
        )
    enqueue = broker_enqueue(tmp)
    for n in range(EVENTS):
        event_publish(
            organization_id=org.pk,
            type="job.created",
            data={"job_id": n, "title": f"案件 {n}"},
            enqueue=enqueue,
        )


@sync_to_async
def delivered() -> int:
    return Delivery.objects.filter(state=Delivery.State.DELIVERED).count()


async def test_real_worker_delivers_and_retries(tmp_path):
    steady = Receiver(SECRET).start()
    flaky = Receiver(SECRET, script=[500] * 8 + [503] * 4).start()
    procs = CeleryProcesses(
        tmp_path, ALLOW_PRIVATE_URLS="true", WEBHOOK_FIRST_RETRY_SECONDS="1"
    )
    procs.start_beat()
    procs.start_worker(pool="threads")
    try:
        await publish_all(tmp_path, steady, flaky)
        deadline = time.monotonic() + 60
        while await delivered() < 2 * EVENTS:
            if time.monotonic() > deadline:
                pytest.fail(f"only {await delivered()} delivered\n" + procs.logs())
            await asyncio.sleep(0.3)
    finally:
        procs.stop()
        steady.stop()
        flaky.stop()
    for receiver in (steady, flaky):
        assert len(receiver.seen_ids) == EVENTS
        assert receiver.duplicates == 0
        assert all(r.verified for r in receiver.requests)
    assert len(flaky.requests) == EVENTS + 12  # each failure retried once more
    retried = await sync_to_async(
        lambda: Delivery.objects.filter(attempts__gt=1).count()
    )()
    assert retried >= 1


@sync_to_async
def publish_lost(n: int, receiver: Receiver) -> None:
    """Events whose messages never reach a worker (a broker hiccup, a dead worker)."""
    org = OrganizationFactory()
    WebhookEndpoint.objects.create(
        organization=org, url=receiver.url, secret=SECRET, events=["job.updated"]
    )
    for i in range(n):
        event_publish(
            organization_id=org.pk,
            type="job.updated",
            data={"job_id": i, "changed": ["status"]},
            enqueue=lambda delivery_id, lease: None,  # the message is lost
        )


async def test_the_sweep_recovers_lost_messages_and_a_killed_worker(tmp_path, settings):
    """Nothing is lost: deliveries whose message vanished, and those a SIGKILLed
    worker held mid-request, are handed out again by beat's sweep once their lease
    runs out, and each event still arrives once."""
    receiver = Receiver(SECRET, delay_s=0.5).start()
    procs = CeleryProcesses(
        tmp_path,
        ALLOW_PRIVATE_URLS="true",
        WEBHOOK_FIRST_RETRY_SECONDS="1",
        WEBHOOK_LEASE_SECONDS="2",
    )
    settings.WEBHOOK_LEASE_SECONDS = 2  # as the processes have it
    await publish_lost(10, receiver)
    procs.start_beat()
    procs.start_worker(pool="threads")
    try:
        # Kill the worker while it is inside requests (the receiver is slow).
        deadline = time.monotonic() + 30
        while not receiver.requests:
            if time.monotonic() > deadline:
                pytest.fail("no request\n" + procs.logs())
            await asyncio.sleep(0.05)
        procs.kill_worker(0)
        killed_at = len(receiver.requests)
        procs.start_worker(0, pool="threads")
        deadline = time.monotonic() + 60
        while await delivered() < 10:
            if time.monotonic() > deadline:
                pytest.fail(f"only {await delivered()} delivered\n" + procs.logs())
            await asyncio.sleep(0.3)
    finally:
        procs.stop()
        receiver.stop()
    assert procs.restarts == 1 and killed_at >= 1
    assert len(receiver.seen_ids) == 10
    # A request cut off by the kill may have been accepted and is sent again: the
    # receiver sees the same id twice (at least once), never a lost one.
    assert receiver.duplicates <= killed_at
