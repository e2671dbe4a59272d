"""The bridge's write queue (F-71): a call's database writes, in order, never waited on.

Every write the bridge makes (transcript lines, events, figures, the end of the call)
goes through one bounded queue drained by one task, so the audio loops never wait on
the database and the transcript keeps its order:

- essential writes are kept and retried with back-off while the database is down or
  locked (the others wait behind the failing one, in order); once the call has
  ended they are retried for ``FINISH_WRITE_RETRY_S``, then counted as dropped;
- live-only writes (partial text for the monitors) are tried once and skipped while
  the writer is behind: their content reaches the monitors with the saved line.

Nothing here imports Django; the store decides which failures are worth a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = [
    "FINISH_WRITE_RETRY_S",
    "MAX_PENDING_WRITES",
    "WRITE_RETRY_DELAYS_S",
    "BridgeWrites",
]

log = logging.getLogger("realtime.bridge")

MAX_PENDING_WRITES = 1000
# A failed write (database down or locked) is tried again after these pauses, the
# last one repeating, while the writes behind it wait in order (F-71).
WRITE_RETRY_DELAYS_S = (0.1, 0.25, 0.5, 1.0)
# Once the call ends, its remaining writes are retried this long, then dropped.
FINISH_WRITE_RETRY_S = 60.0

Write = Callable[[], Awaitable[None]]


class _BestEffort:
    """A live-only write: tried once, never retried, skipped when behind."""

    __slots__ = ("write",)

    def __init__(self, write: Write) -> None:
        self.write = write

    def __call__(self) -> Awaitable[None]:
        return self.write()


class BridgeWrites:
    """One call's queue of writes and the task that carries them out."""

    def __init__(
        self,
        *,
        call_id: int | None,
        clock: Callable[[], float],
        retryable: Callable[[Exception], bool],
    ) -> None:
        self._call_id = call_id
        self._clock = clock
        self._retryable = retryable
        self._queue: asyncio.Queue[Write | None] = asyncio.Queue(MAX_PENDING_WRITES)
        self._task: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._failing = False
        self._failing_since = 0.0
        self._deadline: float | None = None
        self.dropped = 0  # essential writes lost (buffer full or given up)
        self.skipped = 0  # live-only writes skipped while behind
        self.retries = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bridge-writer")

    def enqueue(self, write: Write, *, essential: bool = True) -> None:
        """Queue a write; never waits. A live-only one is skipped when behind."""
        if not essential:
            if self._failing or self._queue.qsize() >= MAX_PENDING_WRITES // 2:
                self.skipped += 1
                return
            write = _BestEffort(write)
        try:
            self._queue.put_nowait(write)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.error(
                    "write buffer full (%d writes waiting); %d dropped so far",
                    MAX_PENDING_WRITES,
                    self.dropped,
                    extra={"call_id": self._call_id},
                )

    async def drain(self) -> None:
        """Let the writer finish what is queued, retrying for a bounded time."""
        self._deadline = self._clock() + FINISH_WRITE_RETRY_S
        self._stop()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.shield(self._task), timeout=FINISH_WRITE_RETRY_S + 5
                )
        if self.dropped:
            log.error(
                "bridge ended with %d writes dropped",
                self.dropped,
                extra={"call_id": self._call_id},
            )

    def _stop(self) -> None:
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            # Full of writes waiting for the database: stop once they are done.
            task = asyncio.get_running_loop().create_task(self._queue.put(None))
            self._stopping.add(task)  # referenced until done
            task.add_done_callback(self._stopping.discard)

    async def _run(self) -> None:
        """Carry out writes one at a time, in order; retry a failed one.

        While the database is down or locked the failed write is tried again with
        back-off and the others wait behind it in the bounded queue, so nothing is
        lost and the order holds. After ``drain``, retries go on until its
        deadline, then what is left is counted and logged as dropped.
        """
        while True:
            write = await self._queue.get()
            try:
                if write is None:
                    return
                await self._write_with_retry(write)
            finally:
                self._queue.task_done()

    async def _write_with_retry(self, write: Write) -> None:
        attempt = 0
        while True:
            try:
                await write()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(write, _BestEffort):
                    log.debug("live-only write failed", exc_info=True)
                    return
                deadline = self._deadline
                if not self._retryable(exc) or (
                    deadline is not None and self._clock() >= deadline
                ):
                    self.dropped += 1
                    log.exception(
                        "bridge write failed for good (%d dropped)",
                        self.dropped,
                        extra={"call_id": self._call_id},
                    )
                    return
                if not self._failing:
                    self._failing = True
                    self._failing_since = self._clock()
                    log.warning(
                        "bridge writes failing (%s); retrying, %d waiting",
                        f"{type(exc).__name__}: {exc}"[:300],
                        self._queue.qsize(),
                        extra={"call_id": self._call_id},
                    )
                self.retries += 1
                delay = WRITE_RETRY_DELAYS_S[
                    min(attempt, len(WRITE_RETRY_DELAYS_S) - 1)
                ]
                attempt += 1
                await asyncio.sleep(delay)
                continue
            if self._failing:
                self._failing = False
                outage_ms = int((self._clock() - self._failing_since) * 1000)
                log.warning(
                    "bridge writes back after %d ms; %d waiting, %d dropped",
                    outage_ms,
                    self._queue.qsize(),
                    self.dropped,
                    extra={"call_id": self._call_id},
                )
            return
