"""The legacy path's writes behind the reply: in order per call, retried while the
database is down, and a turn never waits on them for long."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError

from calls.legacy import writes
from calls.legacy.writes import write_behind, writes_idle, writes_settled

# The writes run on the DB threads, whose pooled connections are checked first.
pytestmark = pytest.mark.django_db(transaction=True)


async def test_writes_of_a_call_run_in_order():
    done: list[int] = []

    def slow() -> None:
        time.sleep(0.05)
        done.append(1)

    write_behind(7, slow, "first")
    write_behind(7, lambda: done.append(2), "second")
    await writes_idle()
    assert done == [1, 2]


async def test_a_write_is_retried_while_the_database_is_down(monkeypatch):
    monkeypatch.setattr(writes, "RETRY_DELAYS_S", (0.01,))
    tries: list[int] = []

    def flaky() -> None:
        tries.append(1)
        if len(tries) < 3:
            raise OperationalError("database is locked")

    write_behind(8, flaky, "flaky")
    await writes_idle()
    assert len(tries) == 3


async def test_a_refused_write_is_dropped_not_retried():
    tries: list[int] = []

    def refused() -> None:
        tries.append(1)
        raise ValueError("not a database outage")

    write_behind(9, refused, "refused")
    await writes_idle()
    assert tries == [1]


async def test_a_turn_waits_at_most_its_bound():
    release = threading.Event()
    write_behind(10, lambda: release.wait(5), "stuck")
    started = time.monotonic()
    assert await writes_settled(10, within_s=0.1) is False
    assert time.monotonic() - started < 1.0
    release.set()
    await writes_idle()
    assert await writes_settled(10) is True


@pytest.fixture(autouse=True)
async def _no_leftovers():
    yield
    await writes_idle()
