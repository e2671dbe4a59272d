"""A fake OpenAI Realtime (GA) server on a real socket, faithful to PROTOCOL A.

Use it in tests::

    async with FakeRealtimeServer(scenario=scenarios.GREET_THEN_ANSWER) as server:
        settings.OPENAI_REALTIME_URL = server.url   # ws://127.0.0.1:PORT/v1/realtime
        ...
    server.assert_complete()

or standalone (serves until Ctrl-C)::

    python -m realtime.emulators.fake_realtime --port 8765 --scenario demo

The handshake (PROTOCOL A1, A7):

- path ``/v1/realtime`` (anything else: HTTP 404); ``?model=`` (or ``call_id``)
  is expected, else a ``missing_model`` violation and model ``gpt-realtime``;
  ``?intent=transcription`` opens a transcription session instead
  (``realtime_transcription``);
- ``Authorization: Bearer <api_key>`` (any non-empty key when ``api_key`` is
  None). A wrong or missing key, with ``auth_failure_mode``:
  ``"accept-then-close"`` (observed): 101, then ``error`` ``invalid_api_key``,
  then close 3000 ``invalid_request_error.invalid_api_key``;
  ``"reject-handshake"``: HTTP 403 with a JSON error body;
- an ``OpenAI-Beta`` header: ``error`` ``beta_api_shape_disabled``, close 4000;
- connect faults (F-71), set with ``handshake_fault=`` or ``fail_handshakes()``
  (the next ``count`` attempts, or all): an HTTP status on the upgrade with the
  API's JSON error body (401/403 ``invalid_api_key``, 429 ``rate_limit_exceeded``,
  5xx ``server_error``), or ``"hang"``: the upgrade is never answered;
- then ``session.created`` and the scenario (see ``realtime_session``).

Violations and unmet expectations are collected per connection;
``assert_complete()`` raises if there are any.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.protocol import State

from realtime.emulators import scenarios
from realtime.emulators.realtime_record import RealtimeConnection, Signal, Violation
from realtime.emulators.realtime_session import FakeSession, IdSource
from realtime.emulators.realtime_transcription import FakeTranscriptionSession
from realtime.emulators.scenarios import Scenario
from realtime.ws_connections import ShortPathServerConnection

__all__ = [
    "AuthFailureMode",
    "FakeRealtimeServer",
    "HandshakeFault",
    "RealtimeConnection",
    "RejectedHandshake",
    "Violation",
    "main",
]

AuthFailureMode = Literal["accept-then-close", "reject-handshake"]
HandshakeFault = int | Literal["hang"]

_FAULT_BODIES: dict[int, tuple[str, str | None, str]] = {
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "invalid_api_key",
        "You are not allowed to use the Realtime API.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
}
_SERVER_ERROR = (
    "server_error",
    None,
    "The server had an error while processing your request. Sorry about that!",
)

_log = logging.getLogger(__name__)

BETA_MESSAGE = (
    "The Realtime Beta API is no longer supported. Please use /v1/realtime for the "
    "GA API."
)


@dataclass(frozen=True, slots=True)
class RejectedHandshake:
    """A connection attempt refused before the upgrade."""

    path: str
    status: int
    headers: dict[str, str]


def _masked(key: str) -> str:
    return key if len(key) < 8 else f"{key[:3]}***{key[-4:]}"


class FakeRealtimeServer:
    """A WebSocket server on 127.0.0.1 that plays ``scenario`` to each connection.

    ``port=0`` picks a free port. ``record_events=False`` keeps only counters
    (for benchmarks). ``compression`` is websockets' setting (None: no
    permessage-deflate, the lean choice).
    """

    def __init__(
        self,
        scenario: Scenario = scenarios.GREET_THEN_ANSWER,
        *,
        api_key: str | None = "sk-test",
        auth_failure_mode: AuthFailureMode = "accept-then-close",
        handshake_delay_s: float = 0.0,
        handshake_fault: HandshakeFault | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        record_events: bool = True,
        compression: str | None = None,
    ) -> None:
        if auth_failure_mode not in ("accept-then-close", "reject-handshake"):
            raise ValueError(f"unknown auth_failure_mode {auth_failure_mode!r}")
        self.scenario = scenario
        self.api_key = api_key
        self.auth_failure_mode = auth_failure_mode
        self.handshake_delay_s = handshake_delay_s + scenario.handshake_delay_s
        self.host = host
        self.port = port
        self.record_events = record_events
        self.compression = compression
        self.connections: list[RealtimeConnection] = []
        self.rejected_handshakes: list[RejectedHandshake] = []
        self._fault: HandshakeFault | None = None
        self._closing = asyncio.Event()
        self._fault_count: int | None = None
        if handshake_fault is not None:
            self.fail_handshakes(handshake_fault)
        self._ids = IdSource()
        self._server: Server | None = None
        self._changed = Signal()

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; ``port`` becomes the bound port."""
        self._closing.clear()
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=self.compression,
            max_size=16 * 1024 * 1024,
            open_timeout=10 + self.handshake_delay_s,
            server_header=None,
            create_connection=ShortPathServerConnection,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close open connections (1001)."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> FakeRealtimeServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def fail_handshakes(
        self, fault: HandshakeFault | None, count: int | None = None
    ) -> None:
        """Fail the next ``count`` connection attempts (all while None) with
        ``fault``: an HTTP status (4xx/5xx) or ``"hang"``; None clears it."""
        if (
            fault is not None
            and fault != "hang"
            and (isinstance(fault, bool) or not 400 <= fault <= 599)
        ):
            raise ValueError(f"a handshake fault is 4xx, 5xx or 'hang': {fault!r}")
        self._fault = fault
        self._fault_count = count

    def _take_fault(self) -> HandshakeFault | None:
        fault = self._fault
        if fault is None:
            return None
        if self._fault_count is not None:
            self._fault_count -= 1
            if self._fault_count <= 0:
                self._fault = None
        return fault

    # -- what tests read -------------------------------------------------------

    @property
    def url(self) -> str:
        """The ``OPENAI_REALTIME_URL`` to configure: ``ws://host:port/v1/realtime``."""
        return f"ws://{self.host}:{self.port}/v1/realtime"

    @property
    def base_url(self) -> str:
        """The SDK's ``websocket_base_url``: ``ws://host:port/v1``."""
        return f"ws://{self.host}:{self.port}/v1"

    @property
    def connection_count(self) -> int:
        """Accepted connections so far (rejected handshakes are not counted)."""
        return len(self.connections)

    @property
    def open_connections(self) -> int:
        """Connections not closed yet."""
        return sum(1 for c in self.connections if not c.closed)

    async def wait_for_connection(
        self, index: int = 0, timeout_s: float = 2.0
    ) -> RealtimeConnection:
        """Wait until connection ``index`` exists; return it."""
        await self._changed.wait_for(
            lambda: len(self.connections) > index, timeout_s, f"connection {index}"
        )
        return self.connections[index]

    def problems(self, allowed: Collection[str] = ()) -> list[str]:
        """Return every broken rule and unmet expectation, minus ``allowed``."""
        found: list[str] = []
        for connection in self.connections:
            found += connection.problems(allowed)
            if (
                self.scenario.expect_session_update
                and connection.authorized
                and connection.session_updates == 0
                and "no_session_update" not in allowed
            ):
                found.append(
                    f"connection {connection.index}: [no_session_update] no "
                    "session.update was accepted"
                )
        return found

    def assert_complete(self, allowed: Collection[str] = ()) -> None:
        """Fail if a protocol rule was broken or an expected event never came.

        ``allowed`` lists violation codes a test provokes on purpose (e.g.
        ``"conversation_already_has_active_response"``, ``"no_session_update"``).
        """
        found = self.problems(allowed)
        if found:
            raise AssertionError(
                "fake Realtime server saw problems:\n" + "\n".join(found)
            )

    # -- handshake and connections ---------------------------------------------

    def _key_ok(self, authorization: str | None) -> bool:
        if authorization is None or not authorization.startswith("Bearer "):
            return False
        key = authorization[len("Bearer ") :]
        return bool(key) if self.api_key is None else key == self.api_key

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if self.handshake_delay_s:
            await asyncio.sleep(self.handshake_delay_s)
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        if urlsplit(request.path).path != "/v1/realtime":
            self.rejected_handshakes.append(
                RejectedHandshake(request.path, 404, headers)
            )
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        fault = self._take_fault()
        if fault == "hang":
            self.rejected_handshakes.append(RejectedHandshake(request.path, 0, headers))
            # Never answered: the client's open time-out (or our close) ends it.
            await self._closing.wait()
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "closing\n")
        elif fault is not None:
            self.rejected_handshakes.append(
                RejectedHandshake(request.path, fault, headers)
            )
            kind, code, message = _FAULT_BODIES.get(fault, _SERVER_ERROR)
            body = {
                "error": {"message": message, "type": kind, "code": code, "param": None}
            }
            response = connection.respond(HTTPStatus(fault), json.dumps(body))
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            if fault == 429:
                response.headers["Retry-After"] = "1"
            return response
        if self.auth_failure_mode == "reject-handshake" and not self._key_ok(
            request.headers.get("Authorization")
        ):
            self.rejected_handshakes.append(
                RejectedHandshake(request.path, 403, headers)
            )
            body = {
                "error": {
                    "message": "Incorrect API key provided.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                    "param": None,
                }
            }
            response = connection.respond(HTTPStatus.FORBIDDEN, json.dumps(body))
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        query = parse_qs(urlsplit(request.path).query)
        model = query["model"][0] if query.get("model") else None
        record = RealtimeConnection(
            index=len(self.connections),
            path=request.path,
            model=model,
            headers={k.lower(): v for k, v in request.headers.raw_items()},
            opened_at=time.monotonic(),
        )
        self.connections.append(record)
        self._changed.notify()
        _log.info("connection %d opened: %s", record.index, request.path)
        try:
            await self._serve_connection(ws, record, query)
        except Exception as error:  # a bug in the fake: fail the test loudly
            record.violations.append(Violation("fake_internal_error", repr(error)))
            raise
        finally:
            if ws.state is not State.CLOSED and record.closed_by != "drop":
                await ws.close()
            await ws.wait_closed()
            record.closed = True
            record.closed_at = time.monotonic()
            record.close_code = ws.close_code
            record.close_reason = ws.close_reason
            if record.closed_by is None:
                record.closed_by = "client"
            record.changed.notify()
            _log.info(
                "connection %d closed by %s (%s)",
                record.index,
                record.closed_by,
                record.close_code,
            )

    async def _serve_connection(
        self,
        ws: ServerConnection,
        record: RealtimeConnection,
        query: dict[str, list[str]],
    ) -> None:
        authorization = ws.request.headers.get("Authorization") if ws.request else None
        if not self._key_ok(authorization):
            record.authorized = False
            key = (authorization or "")[len("Bearer ") :]
            message = (
                f"Incorrect API key provided: {_masked(key)}. You can find your API "
                "key at https://platform.openai.com/account/api-keys."
                if key
                else "You didn't provide an API key. You need to provide your API "
                "key in an Authorization header using Bearer auth."
            )
            await self._refuse(ws, record, "invalid_api_key", message, 3000)
            return
        if ws.request is not None and "OpenAI-Beta" in ws.request.headers:
            record.authorized = False
            record.violations.append(
                Violation(
                    "beta_api_shape_disabled",
                    f"OpenAI-Beta: {ws.request.headers['OpenAI-Beta']} header sent",
                )
            )
            await self._refuse(
                ws, record, "beta_api_shape_disabled", BETA_MESSAGE, 4000
            )
            return
        if query.get("intent") == ["transcription"]:
            # A transcription session (F-75's supervisor): no model in the URL.
            transcription = FakeTranscriptionSession(
                ws,
                record,
                self.scenario,
                self._ids.new,
                record_events=self.record_events,
            )
            await transcription.run()
            return
        if "model" not in query and "call_id" not in query:
            record.violations.append(
                Violation("missing_model", "no ?model= (or call_id) in the URL")
            )
        session = FakeSession(
            ws, record, self.scenario, self._ids, record_events=self.record_events
        )
        await session.run()

    async def _refuse(
        self,
        ws: ServerConnection,
        record: RealtimeConnection,
        code: str,
        message: str,
        close_code: int,
    ) -> None:
        event: dict[str, Any] = {
            "type": "error",
            "event_id": self._ids.new("event"),
            "error": {
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": None,
                "event_id": None,
            },
        }
        record.sent_count += 1
        if self.record_events:
            record.sent.append(event)
        await ws.send(orjson.dumps(event), text=True)
        record.closed_by = "server"
        await ws.close(close_code, f"invalid_request_error.{code}")


# -- standalone ------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m realtime.emulators.fake_realtime",
        description="Serve a fake OpenAI Realtime (GA) WebSocket API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--scenario",
        default="demo",
        choices=sorted(scenarios.SCENARIOS),
        help="what the fake model does (default: demo)",
    )
    parser.add_argument("--api-key", default="sk-test", help="the accepted key")
    parser.add_argument(
        "--any-key", action="store_true", help="accept any non-empty bearer key"
    )
    parser.add_argument(
        "--auth-failure-mode",
        default="accept-then-close",
        choices=["accept-then-close", "reject-handshake"],
    )
    parser.add_argument("--handshake-delay", type=float, default=0.0, metavar="S")
    parser.add_argument(
        "--handshake-fault",
        default=None,
        metavar="STATUS|hang",
        help="refuse every upgrade with this HTTP status (401, 429, 500…) or hang",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log connections as they come"
    )
    return parser


def _fault_arg(value: str | None) -> HandshakeFault | None:
    if value is None:
        return None
    return "hang" if value == "hang" else int(value)


async def _serve(args: argparse.Namespace) -> None:
    server = FakeRealtimeServer(
        scenarios.by_name(args.scenario),
        api_key=None if args.any_key else args.api_key,
        auth_failure_mode=args.auth_failure_mode,
        handshake_delay_s=args.handshake_delay,
        handshake_fault=_fault_arg(args.handshake_fault),
        host=args.host,
        port=args.port,
        record_events=False,
    )
    async with server:
        key = "any key" if args.any_key else f"key {args.api_key}"
        print(
            f"Fake OpenAI Realtime ({args.scenario}, {key}) at {server.url}", flush=True
        )
        print("Ctrl-C to stop.", flush=True)
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake until Ctrl-C."""
    args = _parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
