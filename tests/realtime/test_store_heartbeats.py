"""Heartbeats of every bridge in a process go to the database in one statement."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calls.models import CallSession
from realtime import store
from realtime.store import DjangoCallStore, HeartbeatBatch
from tests.calls.factories import CallSessionFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


@pytest.fixture
def quick_gather(monkeypatch):
    monkeypatch.setattr(store, "HEARTBEAT_GATHER_S", 0.05)


async def _calls(count: int) -> list[CallSession]:
    return await database_sync_to_async(
        lambda: [CallSessionFactory(heartbeat_at=None) for _ in range(count)]
    )()


async def _heartbeats(ids: list[int]) -> list:
    return await database_sync_to_async(
        lambda: list(
            CallSession.objects.filter(pk__in=ids)
            .order_by("pk")
            .values_list("heartbeat_at", flat=True)
        )
    )()


async def test_beats_of_many_calls_are_one_update(quick_gather, monkeypatch):
    batch = HeartbeatBatch()
    monkeypatch.setattr(store, "heartbeats", batch)
    calls = await _calls(3)
    ids = [c.pk for c in calls]
    saved: list[list[int]] = []
    original = store.heartbeats_save

    async def counting_save(call_ids: list[int]) -> None:
        saved.append(list(call_ids))
        await original(call_ids)

    monkeypatch.setattr(store, "heartbeats_save", counting_save)
    for call in calls:
        await DjangoCallStore(call).heartbeat()
    await asyncio.sleep(0.3)

    assert saved == [sorted(ids)]
    beats = await _heartbeats(ids)
    assert None not in beats
    assert len(set(beats)) == 1  # one statement, one timestamp


async def test_a_beat_during_a_save_starts_the_next_batch(quick_gather, monkeypatch):
    batch = HeartbeatBatch()
    monkeypatch.setattr(store, "heartbeats", batch)
    first, second = await _calls(2)
    release = asyncio.Event()
    saved: list[list[int]] = []

    async def slow_save(call_ids: list[int]) -> None:
        saved.append(list(call_ids))
        if len(saved) == 1:
            await release.wait()

    monkeypatch.setattr(store, "heartbeats_save", slow_save)
    batch.beat(first.pk)
    await asyncio.sleep(0.1)  # the first batch is saving now
    batch.beat(second.pk)
    release.set()
    await asyncio.sleep(0.2)

    assert saved == [[first.pk], [second.pk]]


def test_the_update_touches_only_the_given_calls(db):
    calls = [CallSessionFactory(heartbeat_at=None) for _ in range(3)]
    with CaptureQueriesContext(connection) as queries:
        store.heartbeats_save.func([calls[0].pk, calls[2].pk])
    assert len(queries) == 1
    beats = dict(CallSession.objects.values_list("pk", "heartbeat_at"))
    assert beats[calls[1].pk] is None
    assert beats[calls[0].pk] is not None and beats[calls[2].pk] is not None


async def test_a_failed_save_is_retried_soon_with_the_beats_that_came_meanwhile(
    quick_gather, monkeypatch
):
    """Database down or locked (F-71): heartbeats are written as soon as it is back,
    not a beat period later, so the reaper never takes a live call for dead."""
    from django.db import OperationalError

    monkeypatch.setattr(store, "HEARTBEAT_RETRY_FIRST_S", 0.05)
    monkeypatch.setattr(store, "HEARTBEAT_RETRY_MAX_S", 0.1)
    batch = HeartbeatBatch()
    monkeypatch.setattr(store, "heartbeats", batch)
    first, second = await _calls(2)
    tries: list[list[int]] = []
    original = store.heartbeats_save

    async def failing_twice(call_ids: list[int]) -> None:
        tries.append(list(call_ids))
        if len(tries) <= 2:
            raise OperationalError("database is locked")
        await original(call_ids)

    monkeypatch.setattr(store, "heartbeats_save", failing_twice)
    batch.beat(first.pk)
    await asyncio.sleep(0.1)  # the first try failed; a retry is pending
    batch.beat(second.pk)
    await asyncio.sleep(0.5)

    assert tries[0] == [first.pk]
    assert tries[-1] == sorted([first.pk, second.pk])
    assert len(tries) == 3
    assert None not in await _heartbeats([first.pk, second.pk])
