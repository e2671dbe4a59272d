"""The legacy path's writes behind the reply (F-72, like the bridge's writer, F-71).

A turn's TwiML does not depend on saving the caller's line, the AI's line, the
events, the usage or the latency, so they are written after the reply is on its
way: `write_behind(call_id, write)` runs `write` (sync, one transaction) on a DB
thread, after the call's earlier writes in this process, retrying while the
database is down or locked (up to WRITE_GIVE_UP_S, then logged and dropped).
`writes_settled(call_id)` waits for a call's writes (the next turn does, before it
reads the conversation); `writes_idle()` waits for all of them (tests, shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from django.db import InterfaceError, OperationalError

from callcenter.db import db_sync_to_async

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (0.1, 0.25, 0.5, 1.0, 2.0)
WRITE_GIVE_UP_S = 60.0

_pending: dict[int, asyncio.Task[None]] = {}


async def _run(call_id: int, write: Callable[[], None], what: str) -> None:
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            await db_sync_to_async(write)()
            return
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() - started > WRITE_GIVE_UP_S:
                log.error(
                    "legacy %s not saved after %.0f s: %s",
                    what,
                    WRITE_GIVE_UP_S,
                    exc,
                    extra={"call_id": call_id},
                )
                return
            await asyncio.sleep(RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)])
            attempt += 1
        except Exception:
            log.exception("legacy %s not saved", what, extra={"call_id": call_id})
            return


def write_behind(call_id: int, write: Callable[[], None], what: str) -> None:
    """Queue `write` for the call, after its earlier ones; never waits."""
    previous = _pending.get(call_id)

    async def chained() -> None:
        if previous is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(previous)
        await _run(call_id, write, what)

    task = asyncio.create_task(chained(), name=f"legacy-write-{call_id}")
    _pending[call_id] = task

    def forget(done: asyncio.Task[None]) -> None:
        if _pending.get(call_id) is done:
            del _pending[call_id]

    task.add_done_callback(forget)


async def writes_settled(call_id: int, *, within_s: float = 1.0) -> bool:
    """Wait (at most `within_s`: a turn must answer Twilio in time, even while the
    database is down and the writes retry) until the call's queued writes in this
    process are done; False if they are not."""
    task = _pending.get(call_id)
    if task is None:
        return True
    with contextlib.suppress(Exception):  # TimeoutError: not yet
        await asyncio.wait_for(asyncio.shield(task), within_s)
    return task.done()


async def writes_idle() -> None:
    """Wait until every queued write is done."""
    while _pending:
        await asyncio.gather(
            *(asyncio.shield(t) for t in list(_pending.values())),
            return_exceptions=True,
        )
