"""Where the async server does its database work: a bounded pool of DB threads.

Channels' `database_sync_to_async` (asgiref, thread_sensitive=True) runs every
call outside a request on ONE thread per process, shared by every consumer; and
with CONN_MAX_AGE=0 it opens and closes a connection around each call. Under a
burst of calls the stream connects queued there behind each other's connection
churn (bench/burst.py, bench/README.md "Call setup under bursts").

`db_sync_to_async(func)` runs `func` instead on one of `DB_THREADS` threads of its
lane (`lane="setup"` for what a call's setup waits for, else the bridges' lane)
(`ThreadPoolExecutor`, thread_sensitive=False). Each thread keeps its own
connection (Django's connections are per thread) between calls: it is checked
before each call (CONN_HEALTH_CHECKS-style) and closed after an error that left
it unusable, or once it is `POOL_CONN_MAX_AGE_S` old. A function runs whole on one
thread, so its transactions never span threads; nothing else may share its
connection. The thread also knows the event loop that called it
(`caller_loop()`), so that it can hand async work (a monitor broadcast) back to
the loop without waiting for it.

When a sync caller sits above (a test, a management command: `async_to_sync`
from a sync thread), that thread owns the connection and its transaction, so the
work runs there and the connection is left to its owner.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver

P = ParamSpec("P")
R = TypeVar("R")

# A pool thread's connection is replaced after this long (server-side limits,
# credentials rotated, a failover that kept the old socket alive).
POOL_CONN_MAX_AGE_S = 300.0

_local = threading.local()
# Lanes of DB threads: "setup" (webhooks, stream connects, stream claims: a caller
# is waiting for them) and "calls" (the bridges' writes: transcript lines, events,
# figures), so that setting up a call never queues behind the writes of the calls
# already up. Each lane has DB_THREADS threads.
LANES = ("calls", "setup")
_executors: dict[str, ThreadPoolExecutor] = {}
_executor_lock = threading.Lock()


def db_executor(lane: str = "calls") -> ThreadPoolExecutor:
    """The process's DB threads of `lane` (created on first use)."""
    if lane not in LANES:
        raise ValueError(f"unknown DB lane {lane!r}")
    with _executor_lock:
        executor = _executors.get(lane)
        if executor is None:
            executor = _executors[lane] = ThreadPoolExecutor(
                max_workers=settings.DB_THREADS,
                thread_name_prefix="db" if lane == "calls" else f"db-{lane}",
                initializer=_thread_init,
            )
        return executor


def db_executor_reset() -> None:
    """Let the current threads finish and start new ones on next use (tests)."""
    with _executor_lock:
        executors = list(_executors.values())
        _executors.clear()
    for executor in executors:
        executor.submit(close_old_connections)
        executor.shutdown(wait=True)


def _thread_init() -> None:
    _local.pooled = True


def in_db_thread() -> bool:
    """Whether the current thread is one of the pool's."""
    return getattr(_local, "pooled", False)


def caller_loop() -> asyncio.AbstractEventLoop | None:
    """In a pool thread: the event loop whose coroutine is waiting for this call."""
    return getattr(_local, "loop", None)


@receiver(connection_created)
def _pooled_connection_lives_on(
    sender: type[BaseDatabaseWrapper], connection: BaseDatabaseWrapper, **kwargs: Any
) -> None:
    """A pool thread's connection outlives the call (Django's CONN_MAX_AGE=0 would
    close it after each one) and is checked before each reuse."""
    if in_db_thread():
        connection.close_at = time.monotonic() + POOL_CONN_MAX_AGE_S
        connection.health_check_enabled = True


def _run_pooled(
    loop: asyncio.AbstractEventLoop, func: Callable[..., R], *args: Any, **kwargs: Any
) -> R:
    _local.loop = loop
    # Closes a connection that is broken, in an unexpected state or too old;
    # keeps a healthy one (see _pooled_connection_lives_on).
    close_old_connections()
    try:
        return func(*args, **kwargs)
    finally:
        close_old_connections()
        _local.loop = None


def db_sync_to_async(
    func: Callable[P, R], *, lane: str = "calls"
) -> Callable[P, Coroutine[Any, Any, R]]:
    """`func` as a coroutine function that runs it on a DB thread of `lane`."""
    if lane not in LANES:
        raise ValueError(f"unknown DB lane {lane!r}")
    # The sync caller's thread owns its connection (and a test's transaction):
    # run there, and leave the connection alone.
    under_sync_caller = sync_to_async(func, thread_sensitive=True)

    @functools.wraps(func)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if getattr(AsyncToSync.executors, "current", None) is not None:
            return await under_sync_caller(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await sync_to_async(
            _run_pooled, thread_sensitive=False, executor=db_executor(lane)
        )(loop, func, *args, **kwargs)

    run.func = func  # type: ignore[attr-defined]  # as asgiref's wrappers have it
    return run


# The latest send handed to each loop; the next one starts after it (same order as
# the DB threads handed them over).
_tails: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def send_in_order(
    loop: asyncio.AbstractEventLoop,
    make: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    """From any thread: run `make()` on `loop` after every coroutine handed over
    before it; do not wait for it. Its exceptions are its own to handle."""

    def start() -> None:
        previous = _tails.get(loop)

        async def after_previous() -> None:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # its outcome is its own
            await make()

        _tails[loop] = loop.create_task(after_previous(), name="db-handover")

    loop.call_soon_threadsafe(start)


class RequestThreads:
    """A fixed set of single-thread executors for Django's sync request steps.

    Django's ASGI handler gives each request a thread of its own for its sync
    steps (sync middleware hooks, signal receivers, sync views): a new thread per
    request, started from the event loop (which waits for it to run), and another
    to join it at the end. Here a request is pinned to one of `count` long-lived
    threads instead (the least busy), so its sync steps still share one thread,
    as Django expects, and nothing is started per request.
    """

    def __init__(self, count: int) -> None:
        self._executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"request-{i}")
            for i in range(count)
        ]
        self._busy = [0] * count

    def pick(self) -> int:
        index = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[index] += 1
        return index

    def executor(self, index: int) -> ThreadPoolExecutor:
        return self._executors[index]

    def release(self, index: int) -> None:
        self._busy[index] -= 1
