"""The drain's orchestration (callcenter/draining.py) and DrainingServer's signal
handling, without sockets to Twilio: fake calls that hand over when told."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
import uvicorn

from callcenter import draining
from realtime.server import DrainingServer


@pytest.fixture(autouse=True)
def not_draining():
    draining.reset()
    yield
    draining.reset()


class FakeCall:
    """Hands over after `quiet_after_s` (None: never quiet, only at the deadline)."""

    def __init__(self, quiet_after_s: float | None, *, stuck: bool = False) -> None:
        self.quiet_after_s = quiet_after_s
        self.stuck = stuck  # its hand-over never completes
        self.given_s: float | None = None
        self.handed_over = asyncio.Event()

    async def drain(self, within_s: float) -> bool:
        self.given_s = within_s
        quiet = self.quiet_after_s is not None and self.quiet_after_s <= within_s
        await asyncio.sleep(self.quiet_after_s if quiet else within_s)
        if self.stuck:
            await asyncio.sleep(3600)
        self.handed_over.set()
        draining.unregister(self)  # as the consumer does when the socket closes
        return quiet


async def test_each_call_is_drained_within_the_shared_deadline():
    calls = [FakeCall(0.05), FakeCall(0.2), FakeCall(None)]
    for call in calls:
        draining.register(call)
    began = time.monotonic()
    report = await draining.drain_all(0.5)
    elapsed = time.monotonic() - began
    assert draining.is_draining()
    assert (report.calls, report.quiet, report.timed_out, report.left) == (3, 2, 1, 0)
    assert 0.5 <= elapsed < 1.0
    assert all(call.given_s == pytest.approx(0.5, abs=0.05) for call in calls)


async def test_a_call_registered_during_the_drain_is_drained_too():
    """A stream accepted just before the flag was seen registers late: it gets the
    time left, not a fresh timeout."""
    first = FakeCall(0.3)
    draining.register(first)
    task = asyncio.create_task(draining.drain_all(1.0))
    await asyncio.sleep(0.1)
    late = FakeCall(0.05)
    draining.register(late)
    report = await task
    assert late.handed_over.is_set()
    assert late.given_s is not None and late.given_s < 0.95
    assert (report.calls, report.quiet, report.left) == (2, 2, 0)


async def test_no_hand_over_and_no_refusal_before_the_notice_is_over():
    call = FakeCall(0.0)
    draining.register(call)
    task = asyncio.create_task(draining.drain_all(5, notice_s=0.3))
    await asyncio.sleep(0.2)
    assert draining.is_draining()  # health says so at once
    assert not draining.refusing_streams()
    assert call.given_s is None and not call.handed_over.is_set()
    report = await task
    assert draining.refusing_streams()
    assert call.given_s == pytest.approx(5, abs=0.05)  # the timeout starts after it
    assert (report.calls, report.quiet) == (1, 1)


async def test_nothing_live_returns_at_once():
    began = time.monotonic()
    report = await draining.drain_all(30)
    assert report.calls == 0
    assert time.monotonic() - began < 0.1


async def test_a_hand_over_that_never_ends_is_given_up_after_the_grace(monkeypatch):
    monkeypatch.setattr(draining, "HAND_OVER_GRACE_S", 0.2)
    draining.register(FakeCall(None, stuck=True))
    began = time.monotonic()
    report = await draining.drain_all(0.2)
    assert time.monotonic() - began < 1.0
    assert (report.calls, report.left) == (1, 1)


async def _app(scope, receive, send):  # pragma: no cover - never reached
    raise AssertionError("no request in these tests")


async def _served(server: DrainingServer) -> asyncio.Task[None]:
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            return task
        await asyncio.sleep(0.01)
    raise AssertionError("server did not start")


def _server(timeout_s: float) -> DrainingServer:
    config = uvicorn.Config(_app, host="127.0.0.1", port=0, lifespan="off")
    return DrainingServer(config, drain_timeout=timeout_s, drain_notice=0.0)


async def test_sigterm_drains_first_and_exits_after_the_last_call():
    """handle_exit (the signal handler) only flags and wakes the loop: the server
    keeps serving while the call finishes its turn, then exits by itself."""
    call = FakeCall(0.3)
    draining.register(call)
    server = _server(5.0)
    task = await _served(server)
    server.handle_exit(signal.SIGTERM, None)
    assert draining.is_draining()
    assert not server.should_exit  # uvicorn's own shutdown has not begun
    await asyncio.sleep(0.1)
    assert not task.done() and not call.handed_over.is_set()
    await asyncio.wait_for(task, timeout=5)
    assert call.handed_over.is_set()
    assert server.should_exit and not server.force_exit
    assert server._captured_signals == []  # exits 0, no signal raised again


async def test_a_second_signal_stops_at_once():
    """While draining, another SIGTERM/SIGINT is uvicorn's usual exit."""
    call = FakeCall(None)  # never quiet: the drain would take the whole timeout
    draining.register(call)
    server = _server(30.0)
    task = await _served(server)
    server.handle_exit(signal.SIGTERM, None)
    await asyncio.sleep(0.05)
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit
    # As plain uvicorn, it re-raises that signal once served (the process ends by
    # it); not in this test process.
    assert server._captured_signals == [signal.SIGTERM]
    server._captured_signals.clear()
    await asyncio.wait_for(task, timeout=5)
    assert not call.handed_over.is_set()
    assert server.drain_task is not None
    server.drain_task.cancel()
