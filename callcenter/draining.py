"""Whether this server process is draining, and the drain of its live calls (F-69).

SIGTERM (see `realtime.server`) calls `begin()`: from then on `/api/health` answers
503 `draining`, so balancers stop sending new calls. `drain_all()` first gives them
DRAIN_NOTICE seconds to see it (a balancer takes a check interval or three to take a
process out; meanwhile new streams are still taken here and drained with the rest),
then refuses new streams (`refusing_streams()`) and asks every registered live call
to hand itself over at its next quiet moment, all within one deadline. A call handed
over closes its stream without ending; Twilio's `<Connect action>` then resumes it on
another process (F-68). Handing over before the balancer noticed would send that
resume back here, to be refused: two refusals in a row end the call (F-68's bound).

Process-wide and loop-bound: the flag is a plain module global (read from request
threads too: a bool read needs no lock), the registry belongs to the server's
event loop. No Django here, so the server can import it before the app loads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

# After the deadline each call is handed over at once; writing its last lines and
# closing its sockets takes a moment more (the bridge bounds its own flush).
HAND_OVER_GRACE_S = 12.0


class Drainable(Protocol):
    """A live call that can hand itself over (`realtime.bridge.CallBridge`)."""

    async def drain(self, within_s: float) -> bool:
        """Hand over at the next quiet moment or after `within_s`; True if quiet."""
        ...


_draining = False
_refusing = False
_began_at: float | None = None
_live: set[Drainable] = set()
_wake: asyncio.Event | None = None


def is_draining() -> bool:
    """Whether this process is draining (health 503, new streams refused)."""
    return _draining


def refusing_streams() -> bool:
    """Whether new media streams are refused (draining, past the notice)."""
    return _refusing


def refuse_streams() -> None:
    global _refusing
    _refusing = True


def begin() -> bool:
    """Start draining; False when it had already begun. Safe in a signal handler."""
    global _draining, _began_at
    if _draining:
        return False
    _draining = True
    _began_at = time.monotonic()
    return True


def reset() -> None:
    """Not draining any more, nothing registered (tests; a process drains once)."""
    global _draining, _refusing, _began_at, _wake
    _draining = _refusing = False
    _began_at = None
    _live.clear()
    _wake = None


def register(call: Drainable) -> None:
    """Count a live call in; a call that arrives while draining is drained too."""
    _live.add(call)
    if _wake is not None:
        _wake.set()


def unregister(call: Drainable) -> None:
    _live.discard(call)
    if _wake is not None:
        _wake.set()


def live_count() -> int:
    return len(_live)


@dataclass(frozen=True, slots=True)
class DrainReport:
    calls: int  # handed over (or ended by themselves) during the drain
    quiet: int  # of which at a quiet moment
    timed_out: int  # handed over at the deadline, mid-turn
    left: int  # still registered when the grace ran out
    seconds: float


async def drain_all(timeout_s: float, notice_s: float = 0.0) -> DrainReport:
    """Drain every live call (and any registered meanwhile) within `timeout_s`,
    after `notice_s` for the balancers to see the health check turn.

    Each call gets the time left to the shared deadline; the wait ends when none is
    registered, or `HAND_OVER_GRACE_S` after the deadline.
    """
    global _wake
    begin()
    started = time.monotonic()
    if notice_s > 0:
        log.warning(
            "draining: health answers 503; new streams still taken for %.1f s "
            "while balancers notice",
            notice_s,
        )
        await asyncio.sleep(notice_s)
    refuse_streams()
    deadline = time.monotonic() + max(timeout_s, 0.0)
    wake = _wake = asyncio.Event()
    tasks: dict[Drainable, asyncio.Task[bool]] = {}
    log.warning(
        "draining: %d live call(s), handing each over at its next quiet moment "
        "(at most %.1f s); new streams refused",
        len(_live),
        timeout_s,
    )
    try:
        while True:
            now = time.monotonic()
            for call in list(_live):
                if call not in tasks:
                    tasks[call] = asyncio.create_task(
                        call.drain(max(deadline - now, 0.0)), name="drain-call"
                    )
            running = [t for t in tasks.values() if not t.done()]
            if not _live and not running:
                break
            left_s = deadline + HAND_OVER_GRACE_S - now
            if left_s <= 0:
                break
            wake.clear()
            waiter = asyncio.create_task(wake.wait())
            await asyncio.wait(
                [waiter, *running],
                timeout=left_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
    finally:
        _wake = None
    results = [
        t.result()
        for t in tasks.values()
        if t.done() and not t.cancelled() and t.exception() is None
    ]
    for task in tasks.values():
        if not task.done():
            task.cancel()
    report = DrainReport(
        calls=len(tasks),
        quiet=sum(results),
        timed_out=len(results) - sum(results),
        left=len(_live),
        seconds=round(time.monotonic() - started, 3),
    )
    log.warning(
        "drained: %d call(s) handed over (%d at a quiet moment, %d at the deadline), "
        "%d left, in %.3f s",
        report.calls,
        report.quiet,
        report.timed_out,
        report.left,
        report.seconds,
    )
    return report


__all__ = [
    "DrainReport",
    "Drainable",
    "begin",
    "drain_all",
    "is_draining",
    "live_count",
    "refuse_streams",
    "refusing_streams",
    "register",
    "reset",
    "unregister",
]
