"""F-71: the bridge's writes while the database is down or locked.

A failed write is retried, in order, from a bounded buffer; the audio side never
waits on it. What overflowed is counted; nothing is lost otherwise, including
after the call ends (retries go on for a bounded time).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from realtime import bridge_writes
from realtime.bridge import CallBridge
from tests.realtime.test_bridge_unit import MemoryStore, _config

pytestmark = pytest.mark.timeout(20)


class DatabaseDown(Exception):
    """Stands for django.db.OperationalError (the store says it is retryable)."""


class FlakyStore(MemoryStore):
    """Every write fails while `down` is set; `retryable` as DjangoCallStore's."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.attempts = 0
        self.partials: list[str] = []

    def retryable(self, exc: Exception) -> bool:
        return isinstance(exc, DatabaseDown)

    def _check(self) -> None:
        self.attempts += 1
        if self.down:
            raise DatabaseDown("database is locked")

    async def record_event(
        self, type: str, payload: dict[str, Any] | None = None
    ) -> None:
        self._check()
        await super().record_event(type, payload)

    async def save_transcript(self, **kwargs: Any) -> None:
        self._check()
        await super().save_transcript(**kwargs)

    async def broadcast_partial(self, *, speaker, item_id, delta) -> None:
        self.partials.append(delta)

    async def finish(self, *, reason: str, failed: bool = False) -> None:
        self._check()
        await super().finish(reason=reason, failed=failed)


def _bridge(store: MemoryStore) -> CallBridge:
    async def to_twilio(frame: str) -> None:
        pass

    async def close_twilio(code: int) -> None:
        pass

    # The model is never opened: these tests are about the writes only.
    return CallBridge(
        _config("ws://127.0.0.1:9/v1/realtime"),
        store=store,
        send_to_twilio=to_twilio,
        close_twilio=close_twilio,
        signature_verified=False,
    )


def _line(bridge: CallBridge, store: MemoryStore, n: int) -> None:
    bridge._enqueue(
        lambda: store.save_transcript(
            speaker="ai",
            text=f"line {n}",
            item_id=f"i{n}",
            offset_ms=n,
            interrupted=False,
        )
    )


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(bridge_writes, "WRITE_RETRY_DELAYS_S", (0.01, 0.02, 0.05))


async def test_writes_during_an_outage_are_kept_in_order(quick_retries):
    store = FlakyStore()
    bridge = _bridge(store)
    await bridge.start()
    _line(bridge, store, 0)
    await asyncio.sleep(0.05)
    store.down = True
    for n in range(1, 40):
        _line(bridge, store, n)
    # Enqueueing never waits, whatever the database does.
    await asyncio.sleep(0.3)
    assert store.lines == [("ai", "line 0")]
    assert bridge.write_retries > 0
    store.down = False
    await asyncio.sleep(0.2)
    assert store.lines == [("ai", f"line {n}") for n in range(40)]
    assert bridge.writes_dropped == 0
    await bridge.finish("test")


async def test_a_full_buffer_counts_what_it_drops(quick_retries, monkeypatch):
    monkeypatch.setattr(bridge_writes, "MAX_PENDING_WRITES", 10)
    store = FlakyStore()
    store.down = True
    bridge = _bridge(store)
    await bridge.start()
    for n in range(25):
        _line(bridge, store, n)
    await asyncio.sleep(0.05)
    store.down = False
    await asyncio.sleep(0.2)
    # Queued with no pause: ten waited, the rest overflowed and were counted.
    assert bridge.writes_dropped == 25 - 10
    assert store.lines == [("ai", f"line {n}") for n in range(10)]
    await bridge.finish("test")


async def test_partial_text_is_skipped_not_queued_while_writes_fail(quick_retries):
    store = FlakyStore()
    bridge = _bridge(store)
    await bridge.start()
    store.down = True
    _line(bridge, store, 0)
    await asyncio.sleep(0.05)
    for n in range(5):
        bridge._enqueue(
            lambda n=n: store.broadcast_partial(
                speaker="ai", item_id="i", delta=str(n)
            ),
            essential=False,
        )
    assert bridge.writes_skipped == 5
    store.down = False
    await asyncio.sleep(0.1)
    bridge._enqueue(
        lambda: store.broadcast_partial(speaker="ai", item_id="i", delta="live"),
        essential=False,
    )
    await asyncio.sleep(0.05)
    assert store.partials == ["live"]
    assert store.lines == [("ai", "line 0")]
    await bridge.finish("test")


async def test_a_refused_write_is_not_retried(quick_retries):
    """Not a database outage (e.g. an illegal status change): logged, counted, next."""
    store = FlakyStore()
    bridge = _bridge(store)
    await bridge.start()

    async def refused() -> None:
        raise ValueError("illegal transition")

    bridge._enqueue(refused)
    _line(bridge, store, 1)
    await asyncio.sleep(0.1)
    assert store.lines == [("ai", "line 1")]
    assert bridge.writes_dropped == 1
    assert bridge.write_retries == 0
    await bridge.finish("test")


async def test_finish_keeps_retrying_until_the_database_is_back(quick_retries):
    """The call ends during the outage: its last lines and its end are written once
    the database is back, within the finish grace."""
    store = FlakyStore()
    bridge = _bridge(store)
    bridge._stream_claimed = True  # so finish() ends the call in the store
    await bridge.start()
    store.down = True
    for n in range(3):
        _line(bridge, store, n)
    finishing = asyncio.create_task(bridge.finish("caller-hangup"))
    await asyncio.sleep(0.3)
    assert not finishing.done()
    store.down = False
    await asyncio.wait_for(finishing, 5)
    assert store.lines == [("ai", f"line {n}") for n in range(3)]
    assert store.finished == [("caller-hangup", False)]
    assert ("bridge-end", {"reason": "caller-hangup", "mode": "hangup"}) in store.events
    assert bridge.writes_dropped == 0


async def test_finish_gives_up_after_its_grace_and_says_how_many(
    quick_retries, monkeypatch
):
    monkeypatch.setattr(bridge_writes, "FINISH_WRITE_RETRY_S", 0.3)
    store = FlakyStore()
    bridge = _bridge(store)
    await bridge.start()
    store.down = True
    for n in range(3):
        _line(bridge, store, n)
    await asyncio.wait_for(bridge.finish("caller-hangup"), 5)
    assert store.lines == []
    assert bridge.writes_dropped >= 3
