"""How many calls this process is bridging right now (for `/api/health`).

A per-process figure, not the admission count: `calls.selectors.live_call_count`
counts live calls across every process from the database. The bridge wraps each call
in `live_call_counted()` (or calls the increment/decrement pair itself); the counter
is guarded by a lock because sync services run in worker threads beside the loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_count = 0


def live_calls_increment() -> int:
    """Count one more call bridged by this process; return the new figure."""
    global _count
    with _lock:
        _count += 1
        return _count


def live_calls_decrement() -> int:
    """Count one call fewer (never below zero); return the new figure."""
    global _count
    with _lock:
        _count = max(_count - 1, 0)
        return _count


def live_calls_in_process() -> int:
    """Return the number of calls this process is bridging now."""
    with _lock:
        return _count


@contextmanager
def live_call_counted() -> Iterator[None]:
    """Count the enclosed block as one live call, however it ends."""
    live_calls_increment()
    try:
        yield
    finally:
        live_calls_decrement()
