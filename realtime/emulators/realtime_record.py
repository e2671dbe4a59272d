"""What the fake Realtime server remembers about each connection, for assertions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Expectation", "RealtimeConnection", "Signal", "Violation"]


@dataclass(frozen=True, slots=True)
class Violation:
    """A protocol rule the client broke; ``code`` is the error code it earned.

    Codes are the ``error.code`` the server answered with (``None`` codes are
    recorded as ``invalid_request_error``), or one of: ``binary_frame``,
    ``beta_header``, ``missing_model``, ``audio_format``,
    ``output_audio_buffer_clear``, ``unknown_call_id``, ``fake_internal_error``.
    """

    code: str
    detail: str


@dataclass(slots=True, eq=False)
class Expectation:
    """A client event the scenario is waiting for; ``then`` is expected next."""

    description: str
    matches: Callable[[dict[str, Any]], bool]
    then: Expectation | None = None


class Signal:
    """Wake whoever waits for a condition when something changes."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        """Tell waiters that something changed."""
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait_for(
        self, predicate: Callable[[], bool], timeout_s: float, what: str
    ) -> None:
        """Wait until ``predicate()`` holds; raise AssertionError after the timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    if self._event is None:
                        self._event = asyncio.Event()
                    await self._event.wait()
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what}"
            ) from None


@dataclass(eq=False)
class RealtimeConnection:
    """One accepted WebSocket connection to the fake, as the server saw it.

    ``received`` holds every client frame: the parsed event, or the raw
    ``str``/``bytes`` when it was not JSON. ``sent`` holds every server event.
    Both stay empty when the server runs with ``record_events=False``; the
    counters are kept either way. Times are ``time.monotonic()`` seconds.
    """

    index: int
    path: str
    model: str | None
    headers: dict[str, str]
    opened_at: float
    received: list[Any] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    received_count: int = 0
    sent_count: int = 0
    session: dict[str, Any] | None = None
    """The effective session (as last sent in session.created/updated)."""
    session_updates: int = 0
    input_audio_ms: float = 0.0
    first_append_at: float | None = None
    response_statuses: dict[str, str] = field(default_factory=dict)
    """Final status of each response, by id, in order."""
    violations: list[Violation] = field(default_factory=list)
    expectations: list[Expectation] = field(default_factory=list)
    authorized: bool = True
    closed: bool = False
    closed_at: float | None = None
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: str | None = None
    """``client``, ``server`` (a close frame from the fake) or ``drop`` (abort)."""
    changed: Signal = field(default_factory=Signal, repr=False)
    """Notified on every event in either direction and on close."""

    def received_types(self) -> list[str]:
        """Return the ``type`` of each received JSON event, in order."""
        return [e.get("type", "?") for e in self.received if isinstance(e, dict)]

    def sent_types(self) -> list[str]:
        """Return the ``type`` of each sent event, in order."""
        return [e["type"] for e in self.sent]

    def sent_of(self, event_type: str) -> list[dict[str, Any]]:
        """Return the sent events of one type."""
        return [e for e in self.sent if e["type"] == event_type]

    def received_of(self, event_type: str) -> list[dict[str, Any]]:
        """Return the received events of one type."""
        return [
            e
            for e in self.received
            if isinstance(e, dict) and e.get("type") == event_type
        ]

    async def wait_sent(
        self, event_type: str, *, count: int = 1, timeout_s: float = 2.0
    ) -> dict[str, Any]:
        """Wait until ``count`` events of a type were sent; return the last."""
        await self.changed.wait_for(
            lambda: len(self.sent_of(event_type)) >= count,
            timeout_s,
            f"{count} sent {event_type}",
        )
        return self.sent_of(event_type)[count - 1]

    async def wait_received(
        self, event_type: str, *, count: int = 1, timeout_s: float = 2.0
    ) -> dict[str, Any]:
        """Wait until ``count`` events of a type were received; return the last."""
        await self.changed.wait_for(
            lambda: len(self.received_of(event_type)) >= count,
            timeout_s,
            f"{count} received {event_type}",
        )
        return self.received_of(event_type)[count - 1]

    async def wait_closed(self, timeout_s: float = 2.0) -> None:
        """Wait until the connection has closed."""
        await self.changed.wait_for(
            lambda: self.closed, timeout_s, f"connection {self.index} closed"
        )

    def problems(self, allowed: Collection[str] = ()) -> list[str]:
        """Return the broken rules and unmet expectations, minus ``allowed`` codes."""
        found = [
            f"connection {self.index}: [{v.code}] {v.detail}"
            for v in self.violations
            if v.code not in allowed
        ]
        found += [
            f"connection {self.index}: expected {e.description}, never received"
            for e in self.expectations
        ]
        return found
