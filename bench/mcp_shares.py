"""How bench/mcp_tools.py splits a tool call's time between us and the MCP server.

The server's share of a call runs from our request written (its body handed to the
socket: `StampedTransport`, under the pooled session's HTTP transport) to the
server's answer written to its socket (`timing_wrap`, an ASGI wrapper in the server's
process), both on the machine's monotonic clock and named by the call's booking
number; our share is the rest of the call's time (`CallShares`).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx2


def monotonic_ms() -> float:
    """The machine's monotonic clock in ms, the same in every process."""
    return time.clock_gettime(time.CLOCK_MONOTONIC) * 1000


@dataclass(frozen=True, slots=True)
class ServerTiming:
    """One request in the server's process, on the machine's monotonic clock (ms)."""

    app_in: float  # the ASGI app called
    answer_out: float  # the answer's body written to the socket


def timing_wrap(timings: dict[str, ServerTiming]) -> Any:
    """ASGI wrapper: when a request reached the app and when its answer went out,
    named by its booking number."""

    def wrap(app: Any) -> Any:
        async def timed(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            app_in = monotonic_ms()
            answer_out = 0.0
            body = bytearray()

            async def tap() -> Any:
                message = await receive()
                body.extend(message.get("body", b""))
                return message

            async def stamp(message: dict[str, Any]) -> None:
                nonlocal answer_out
                await send(message)
                if message["type"] == "http.response.body" and message.get("body"):
                    answer_out = monotonic_ms()

            await app(scope, tap, stamp)
            with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
                request = json.loads(body)
                booking = request["params"]["arguments"]["booking_id"]
                timings[booking] = ServerTiming(app_in, answer_out)

        return timed

    return wrap


_BOOKING = re.compile(rb'"booking_id":\s*"([^"]+)"')


class _SentBody(httpx2.AsyncByteStream):
    """A request body that stamps when it is handed to the socket."""

    def __init__(self, body: bytes, on_sent: Any) -> None:
        self.body, self.on_sent = body, on_sent

    async def __aiter__(self) -> Any:
        # The transport frames and writes the chunk it gets with no await in between
        # (httpcore2's h11 send, anyio's transport.write); it yields to the loop only
        # after the write, so a stamp taken on resuming would be late by our loop's
        # other work, time the request already was the server's. Stamped here, it is
        # early by the framing alone (µs).
        self.on_sent()
        yield self.body


class StampedTransport(httpx2.AsyncBaseTransport):
    """The pool's own HTTP transport, stamping when a tool call's request went out."""

    def __init__(self, sent: dict[str, float]) -> None:
        from realtime.mcp_pool import http_transport

        self.inner = http_transport()
        self.sent = sent

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = b"".join([chunk async for chunk in request.stream])
        found = _BOOKING.search(body)
        if found is not None:
            booking = found.group(1).decode()

            def on_sent() -> None:
                self.sent[booking] = monotonic_ms()

            request.stream = _SentBody(body, on_sent)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True, slots=True)
class CallShares:
    """One tool call's time split between us and the server (ms)."""

    total: float  # function call in → output JSON ready
    sent: float  # our request's last byte written (the machine's monotonic clock)
    at_server: ServerTiming

    @property
    def server(self) -> float:
        """Request written → answer written: the server's share."""
        return self.at_server.answer_out - self.sent

    @property
    def ours(self) -> float:
        return self.total - self.server

    @property
    def server_app(self) -> float:
        return self.at_server.answer_out - self.at_server.app_in

    @property
    def server_queue(self) -> float:
        return self.at_server.app_in - self.sent

    @property
    def ours_asgi(self) -> float:
        return self.total - self.server_app


def pair_shares(
    totals: dict[str, float], sent: dict[str, float], timings: dict[str, ServerTiming]
) -> list[CallShares]:
    """The calls seen on both sides (by booking number), with their shares."""
    return [
        CallShares(totals[k], sent[k], timings[k])
        for k in totals
        if k in sent and k in timings
    ]
