"""The fake Responses API (realtime.emulators.fake_summaries) on a thread of its own,
for tests whose code under test is synchronous (the summary service, a worker)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from realtime.emulators.fake_summaries import FakeSummariesServer


@contextmanager
def fake_responses_thread(**options: object) -> Iterator[FakeSummariesServer]:
    """Serve a FakeSummariesServer on a free port until the block ends."""
    fake = FakeSummariesServer(**options)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with fake:
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    assert ready.wait(10), "the fake Responses server did not start"
    try:
        yield fake
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
