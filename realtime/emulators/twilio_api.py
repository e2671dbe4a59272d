"""Twilio emulator: the Calls REST API, status callbacks, TwiML, conferences.

An ASGI app (no Django) that our code reaches through the real ``twilio``
library (``client.api.base_url = emulator.base_url``, PROTOCOL B5.1), plus the
telephone network behind it: scripted far ends for outbound calls, inbound
calls that post our voice webhook, a TwiML interpreter whose
``<Connect><Stream>`` opens a simulated caller against our bridge, and
conference rooms. Everything a call did is recorded for assertions.

::

    async with TwilioEmulator(account_sid=AC, auth_token=TOKEN) as emu:
        emu.far_ends["+818070239355"] = FarEnd("busy")
        client = emu.twilio_client()          # twilio.rest.Client, pointed here
        handle = await emu.inbound_call(from_=…, to=…, voice_url=…)
        await handle.hang_up()

Objects::

    TwilioEmulator        REST app (``.app``), server (``async with``), network
    ├── Call              one call: resource fields, log, callbacks, errors
    │   └── CallHandle    what tests hold: hang_up(), wait_finished(), caller
    ├── ConferenceRoom    one conference: participants, events, recording
    ├── FarEnd            scripted callee of an outbound call, per number
    ├── RestFault         how the next ``POST Calls.json`` fails (injected)
    │   └── FaultRecord   one injected fault as it happened
    ├── Timings           delays; small by default, ``Timings.realistic()``
    └── Callback          one webhook the emulator sent, with its HTTP status

The Calls list (``GET …/Calls.json``) filters by ``To``, ``From``,
``ParentCallSid``, ``Status``, ``StartTime``/``EndTime`` and their
inequalities (``StartTime>``/``StartTime<``, sent for ``StartTime>=``/``<=``),
newest first, paged by ``PageSize``/``Page``/``PageToken``. ``start_time`` is
set when a call is dialed, so a call still waiting in the CPS queue has none
and no ``StartTime`` filter matches it (Twilio: "empty if the call has not yet
been dialed"); ``To=`` alone or ``Status=queued`` finds it.

Where things live: this module is the emulator itself (the ASGI app, the
Calls API, CPS queueing, the call lifecycle, AMD, webhooks and status
callbacks); ``twilio_interpreter`` runs TwiML (``TwimlInterpreter``, with
Media Streams and ``<Dial>``), ``twilio_conferences`` keeps rooms and
recordings (``ConferenceRules``), ``twilio_participants`` the Participants
resource (``ParticipantRules``); all are mixed into ``TwilioEmulator``.
``twilio_resources`` holds calls and rooms as REST resources and records,
``twilio_rest`` the REST plumbing (forms, errors, list filters, pages),
``twilio_far_ends`` far-end scripts, timings and REST faults. Every public
name is re-exported here.

Run standalone: ``python -m realtime.emulators.twilio_api --port 8766
--account-sid AC… --auth-token …``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import random
import secrets
import time
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    MutableMapping,
    Sequence,
)
from typing import Any, Final, Literal
from urllib.parse import urlencode, urlsplit

import httpx

from realtime.emulators import twiml
from realtime.emulators.asgi_server import EmbeddedServer
from realtime.emulators.caller import SimulatedCaller, Step
from realtime.emulators.caller_webhook import sign_request
from realtime.emulators.speech_script import Utterance
from realtime.emulators.twilio_far_ends import (
    BEHAVIOURS,
    Behaviour,
    FarEnd,
    FaultRecord,
    RestFault,
    Timings,
    max_in_window,
    max_overlap,
)
from realtime.emulators.twilio_interpreter import (
    CallerFactory,
    StreamStart,
    TwimlInterpreter,
    default_caller,
)
from realtime.emulators.twilio_participants import PARTICIPANTS_PATH, ParticipantRules
from realtime.emulators.twilio_resources import (
    API_VERSION,
    CALL_STATUSES,
    FINAL_STATUSES,
    STATUS_EVENTS,
    Call,
    Callback,
    CallError,
    CallOptions,
    CallTimes,
    ConferenceEvent,
    ConferenceRoom,
    LogEntry,
    Participant,
    rfc2822,
    utc_now,
)
from realtime.emulators.twilio_rest import (
    CALL_PATH,
    TIME_PARAMS,
    Form,
    InjectedFault,
    Query,
    RestError,
    TimeFilter,
    check_url,
    list_page,
)
from realtime.emulators.twiml import TwimlError

__all__ = [
    "BEHAVIOURS",
    "Behaviour",
    "Call",
    "CallError",
    "CallHandle",
    "CallTimes",
    "Callback",
    "ConferenceEvent",
    "ConferenceRoom",
    "FarEnd",
    "FaultRecord",
    "LogEntry",
    "Participant",
    "RestFault",
    "StreamStart",
    "Timings",
    "TwilioEmulator",
    "default_caller",
    "main",
    "max_in_window",
    "max_overlap",
]

logger = logging.getLogger(__name__)

TWIML_MAX_CHARS: Final = 4000  # Twiml parameter of the Calls API
TWIML_MAX_BYTES: Final = 64 * 1024  # a fetched TwiML document (error 11750)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class CallHandle:
    """A call as a test or a command holds it."""

    def __init__(self, emulator: TwilioEmulator, call: Call) -> None:
        self.emulator = emulator
        self.call = call

    @property
    def sid(self) -> str:
        return self.call.sid

    @property
    def status(self) -> str:
        return self.call.status

    @property
    def resource(self) -> dict[str, Any]:
        """The call as ``GET …/Calls/{sid}.json`` returns it."""
        return self.call.resource()

    @property
    def log(self) -> list[LogEntry]:
        return self.call.log

    @property
    def caller(self) -> SimulatedCaller | None:
        """The simulated caller of the latest Media Stream, if one was opened."""
        return self.call.streams[-1] if self.call.streams else None

    async def wait_stream(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        count: int = 1,
    ) -> SimulatedCaller:
        """Wait until ``count`` Media Streams were connected (the first by default;
        2 for the one that resumed it, …) and return the latest one's caller."""
        async with asyncio.timeout(timeout), self.call.streams_changed:
            await self.call.streams_changed.wait_for(
                lambda: len(self.call.streams) >= count
            )
        caller = self.caller
        assert caller is not None
        return caller

    async def wait_status(self, *statuses: str, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """Wait until the call reaches one of ``statuses`` and return it."""
        async with asyncio.timeout(timeout), self.call.status_changed:
            await self.call.status_changed.wait_for(
                lambda: self.call.status in statuses
            )
        return self.call.status

    async def wait_finished(self, timeout: float = 5.0) -> Call:  # noqa: ASYNC109
        """Wait until the call is over and every callback about it was sent."""
        await asyncio.wait_for(self.call.finished.wait(), timeout)
        return self.call

    async def hang_up(self) -> None:
        """Hang up the remote party (the caller of an inbound call, the callee
        of an outbound one): the stream gets ``stop``, then the call completes."""
        await self.emulator.hang_up(self.call.sid)


# --------------------------------------------------------------------------
# The emulator


class TwilioEmulator(TwimlInterpreter, ParticipantRules):
    """The Calls API, the telephone network behind it and the TwiML runtime.

    ``transport`` replaces the network for the emulator's own requests
    (webhooks, callbacks): an ``httpx.MockTransport`` or ``httpx.ASGITransport``
    in tests. ``caller_factory`` builds the ``SimulatedCaller`` of each Media
    Stream (default: ``default_caller``, real-time pace).

    Outbound dialling, for a campaign dialer:

    - ``cps``: the account's calls per second (None: unlimited). Creates are
      always accepted (201, ``queued``, ``queue_time`` an estimate in ms); the
      calls leave the queue one at a time, at least ``1/cps`` s apart, in
      creation order. Settable at any time.
    - ``far_ends[number]``, ``default_far_end``; ``far_end_sequences[number]``
      is a list of ``FarEnd`` consumed one per call to that number, before
      ``far_ends`` applies (busy first, then answer). ``seed`` seeds
      ``random``, which draws ``FarEnd.talk_s``.
    - ``inject_fault(RestFault(…), count)``: the next ``count`` creates fail;
      ``pending_faults`` are still to come, ``faults`` (``FaultRecord``) are
      those that happened.
    - ``duplicate_status_callbacks``: every status callback is posted twice;
      ``reorder_status_callbacks``: all but the final one are held and posted
      after it, newest first (``Callback.delivery`` says which).
    - ``outbound_calls()``, ``create_times()``, ``dequeue_times()``,
      ``max_concurrent_live()``, with ``max_in_window()`` for rates.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timings: Timings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        caller_factory: CallerFactory = default_caller,
        default_far_end: FarEnd | None = None,
        cps: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = port
        self.timings = timings or Timings()
        self.far_ends: dict[str, FarEnd] = {}
        self.far_end_sequences: dict[str, list[FarEnd]] = {}
        self.default_far_end = default_far_end or FarEnd("answer")
        if cps is not None and cps <= 0:
            raise ValueError("cps must be positive (None: unlimited)")
        self.cps = cps
        self.seed = seed
        self.random = random.Random(seed)
        self.pending_faults: list[RestFault] = []
        self.faults: list[FaultRecord] = []
        self.duplicate_status_callbacks = False
        self.reorder_status_callbacks = False
        self._queue_lock = asyncio.Lock()  # FIFO: calls leave the queue in order
        self._last_dequeue = -math.inf  # time.monotonic()
        self._queued = 0
        self._at_start: tuple[Any, ...] | None = None
        self.calls: dict[str, Call] = {}
        self.conferences: dict[str, ConferenceRoom] = {}  # by ConferenceSid
        self.callbacks: list[Callback] = []
        self._rooms: dict[tuple[str, str], ConferenceRoom] = {}  # live, by name
        self._participant_legs: dict[str, tuple[ConferenceRoom, twiml.Conference]] = {}
        self._transport = transport
        self.caller_factory = caller_factory
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: EmbeddedServer | None = None
        self._serve_task: asyncio.Task[None] | None = None

    # Serving ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server (``client.api.base_url``)."""
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> TwilioEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Serve the REST app on ``host:port`` (port 0 picks a free port)."""
        self._remember_settings()
        self._server, self._serve_task, self.port = await EmbeddedServer.start(
            self.app,
            host=self.host,
            port=self.port,
            what="the Twilio emulator's server",
        )

    async def aclose(self) -> None:
        """Stop every call and the server."""
        await self._stop_calls()
        if self._server is not None and self._serve_task is not None:
            await self._server.stop(self._serve_task)
            self._server = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _stop_calls(self) -> None:
        """Cancel whatever calls are doing (no callbacks); hang up streams."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for call in self.calls.values():
            for stream in call.streams:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(stream.hang_up(), 1)

    def _remember_settings(self) -> None:
        self._at_start = (
            dict(self.far_ends),
            {number: list(seq) for number, seq in self.far_end_sequences.items()},
            self.default_far_end,
            self.cps,
            self.seed,
        )

    async def reset(self) -> None:
        """Drop every call, room, callback and fault (live calls stop without
        callbacks) and restore the far ends and settings of ``start()``."""
        await self._stop_calls()
        self.calls.clear()
        self.conferences.clear()
        self._rooms.clear()
        self._participant_legs.clear()
        self.callbacks.clear()
        self.pending_faults.clear()
        self.faults.clear()
        self.duplicate_status_callbacks = False
        self.reorder_status_callbacks = False
        self._last_dequeue = -math.inf
        self._queued = 0
        if self._at_start is None:
            self._remember_settings()
        assert self._at_start is not None
        far_ends, sequences, default, cps, seed = self._at_start
        self.far_ends = dict(far_ends)
        self.far_end_sequences = {n: list(seq) for n, seq in sequences.items()}
        self.default_far_end = default
        self.cps = cps
        self.seed = seed
        self.random = random.Random(seed)

    def twilio_client(self) -> Any:
        """Return a ``twilio.rest.Client`` for this account, pointed here."""
        from twilio.rest import Client

        client = Client(self.account_sid, self.auth_token)
        client.api.base_url = self.base_url
        return client

    # Queries --------------------------------------------------------------------

    def call(self, sid: str) -> CallHandle:
        """Return a handle on the call ``sid`` (KeyError if unknown)."""
        return CallHandle(self, self.calls[sid])

    def calls_to(self, number: str) -> list[Call]:
        """Return the calls placed to ``number``, oldest first."""
        return [c for c in self.calls.values() if c.to == number]

    def outbound_calls(self) -> list[Call]:
        """Return the calls created through the REST API, oldest first."""
        return [c for c in self.calls.values() if c.direction == "outbound-api"]

    def create_times(self) -> list[float]:
        """Return when each REST-created call was created (``time.time()``)."""
        return [c.times.created for c in self.outbound_calls()]

    def dequeue_times(self) -> list[float]:
        """Return when each REST-created call left the CPS queue, if it did."""
        return [
            c.times.dequeued
            for c in self.outbound_calls()
            if c.times.dequeued is not None
        ]

    def max_concurrent_live(
        self, since: Literal["created", "dequeued", "answered"] = "dequeued"
    ) -> int:
        """Return the most REST-created calls live at once, each counted from
        ``since`` (created, left the queue, answered) until it ended."""
        intervals = []
        for call in self.outbound_calls():
            start = getattr(call.times, since)
            if start is not None:
                intervals.append((start, call.times.ended))
        return max_overlap(intervals)

    def far_end_for(self, number: str) -> FarEnd:
        """Return (and consume) the far end the next call to ``number`` reaches."""
        sequence = self.far_end_sequences.get(number)
        if sequence:
            return sequence.pop(0)
        return self.far_ends.get(number, self.default_far_end)

    def inject_fault(self, fault: RestFault, count: int = 1) -> None:
        """Make the next ``count`` ``POST …/Calls.json`` fail as ``fault`` says."""
        self.pending_faults.extend([fault] * count)

    def conference(self, friendly_name: str) -> ConferenceRoom:
        """Return the latest conference with this room name (KeyError if none)."""
        rooms = [
            r for r in self.conferences.values() if r.friendly_name == friendly_name
        ]
        if not rooms:
            raise KeyError(friendly_name)
        return rooms[-1]

    async def wait_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until every call so far has finished."""
        async with asyncio.timeout(timeout):
            for call in list(self.calls.values()):
                await call.finished.wait()

    # Inbound calls -------------------------------------------------------------

    async def inbound_call(
        self,
        *,
        from_: str,
        to: str,
        voice_url: str,
        method: str = "POST",
        caller_script: Sequence[Step] | None = None,
        speech_script: Sequence[Utterance] | None = None,
        status_callback: str | None = None,
        status_callback_method: str = "POST",
        status_callback_events: Iterable[str] = ("completed",),
    ) -> CallHandle:
        """Ring our number: post the signed voice webhook and run its TwiML.

        Returns once the webhook has answered (the TwiML then runs in the
        background); ``handle.wait_stream()`` gives the simulated caller.
        """
        options = CallOptions(
            url=voice_url,
            method=method.upper(),
            status_callback=status_callback,
            status_callback_method=status_callback_method.upper(),
            status_callback_events=frozenset(status_callback_events),
        )
        call = Call(
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            direction="inbound",
            options=options,
            status="ringing",
            caller_script=caller_script,
            speech_script=speech_script,
        )
        call.start_time = utc_now()
        self.calls[call.sid] = call
        call._note("status", status="ringing")
        await self._status_event(call, "ringing")
        document = await self._fetch_twiml(call, "voice", voice_url, options.method)
        await self._answer(call)
        if document is None:
            # The caller hears "an application error has occurred", then Twilio
            # hangs up.
            call._note("application-error")
            await self._end_call(call, "completed")
            return CallHandle(self, call)
        self._start_interpreter(call, document, voice_url)
        return CallHandle(self, call)

    async def hang_up(self, call_sid: str) -> None:
        """Hang up the remote party of ``call_sid`` and wait for the call to end."""
        call = self.calls[call_sid]
        call._note("hangup", by="remote party")
        await self._end_call(call, "completed" if call._answered_at else "canceled")

    # ASGI app -----------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The REST API as an ASGI app."""
        if scope["type"] == "lifespan":
            return
        if scope["type"] != "http":
            raise RuntimeError(f"unsupported ASGI scope {scope['type']!r}")
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope["headers"]
        }
        extra: list[tuple[bytes, bytes]] = []
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            status, payload = await self._route(
                scope["method"], scope["path"], headers, body, query
            )
        except InjectedFault as exc:
            await self._sleep(exc.fault.delay_s)
            if exc.fault.drop:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 201,
                        "headers": [
                            (b"content-type", b"application/json; charset=utf-8"),
                            (b"content-length", b"1024"),
                        ],
                    }
                )
                # Headers, then nothing: the server closes the connection.
                raise ConnectionAbortedError("emulated dropped connection") from None
            status, payload = exc.fault.status, exc.body()
        except RestError as exc:
            status, payload = exc.status, exc.body()
            if exc.status == 401:
                extra.append((b"www-authenticate", b'Basic realm="Twilio API"'))
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(data)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def _route(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        query: str = "",
    ) -> tuple[int, dict[str, Any]]:
        if path in ("/", "/health"):
            return 200, {"emulator": "twilio", "calls": len(self.calls)}
        self._authenticate(headers.get("authorization", ""))
        if PARTICIPANTS_PATH.match(path):  # twilio_participants
            return self._participants_route(method, path, body)
        match = CALL_PATH.match(path)
        if match is None or match["account"] != self.account_sid:
            raise RestError(404, 20404, f"The requested resource {path} was not found")
        sid = match["sid"]
        form = Form(body)
        if match["kind"] == "Conferences":
            if method != "GET":
                raise RestError(405, 20004, "Method not allowed")
            if sid is None:
                rooms = list(reversed(self.conferences.values()))
                return 200, list_page("conferences", rooms, path, Query(query), [])
            room = self.conferences.get(sid)
            if room is None:
                raise RestError(
                    404, 20404, f"The requested resource {path} was not found"
                )
            return 200, room.resource()
        if sid is None:
            if method == "POST":
                return 201, self._create_with_faults(form).resource()
            if method == "GET":
                return 200, self._list_calls(path, Query(query))
            raise RestError(405, 20004, "Method not allowed")
        call = self.calls.get(sid)
        if call is None or call.account_sid != self.account_sid:
            raise RestError(404, 20404, f"The requested resource {path} was not found")
        if method == "GET":
            return 200, call.resource()
        if method == "POST":
            return 200, self._update_call(call, form).resource()
        raise RestError(405, 20004, "Method not allowed")

    def _authenticate(self, authorization: str) -> None:
        scheme, _, encoded = authorization.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        ok = scheme.lower() == "basic" and secrets.compare_digest(
            f"{user}:{password}", f"{self.account_sid}:{self.auth_token}"
        )
        if not ok:
            raise RestError(401, 20003, "Authenticate")

    # Calls API ------------------------------------------------------------------

    def _create_with_faults(self, form: Form) -> Call:
        """Create a call, unless an injected fault says otherwise (or also)."""
        fault = self.pending_faults[0] if self.pending_faults else None
        if fault is None:
            return self._create_call(form)
        # A fault that lets the call be made waits for a create that succeeds
        # (a 400 stays a 400); the others answer before any validation.
        call = self._create_call(form) if fault.create else None
        self.pending_faults.pop(0)
        if call is not None:
            call._note("rest-fault", **fault.describe())
        self.faults.append(
            FaultRecord(
                at=time.time(),
                fault=fault,
                to=form.get("To"),
                call_sid=None if call is None else call.sid,
            )
        )
        logger.info("injected REST fault %s (call %s)", fault, call)
        raise InjectedFault(fault)

    def _list_calls(self, path: str, query: Query) -> dict[str, Any]:
        """``GET …/Calls.json``: filtered, newest first, paged."""
        to, from_ = query.get("To"), query.get("From")
        parent = query.get("ParentCallSid")
        status = query.get("Status")
        if status is not None and status not in CALL_STATUSES:
            raise RestError(400, 21200, f"Invalid Status: {status}")
        start_filter = TimeFilter.read(query, "StartTime")
        end_filter = TimeFilter.read(query, "EndTime")
        calls = [
            c
            for c in reversed(self.calls.values())
            if (to is None or c.to == to)
            and (from_ is None or c.from_ == from_)
            and (parent is None or c.parent_call_sid == parent)
            and (status is None or c.status == status)
            and start_filter.matches(c.start_time)
            and end_filter.matches(c.end_time)
        ]
        keep = ("To", "From", "ParentCallSid", "Status", *TIME_PARAMS)
        filters = [(k, v) for k, v in query.pairs if k in keep]
        return list_page("calls", calls, path, query, filters)

    def _create_call(self, form: Form) -> Call:
        to, from_ = form.get("To"), form.get("From")
        if not to:
            raise RestError(400, 21201, "No 'To' number is specified")
        if not from_:
            raise RestError(400, 21213, "No 'From' number is specified")
        if not twiml.is_phone_number(to):
            raise RestError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not twiml.is_phone_number(from_):
            raise RestError(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        url = check_url("Url", form.get("Url"))
        document = form.get("Twiml") or None
        if url is None and document is None:
            if form.get("ApplicationSid"):
                raise RestError(
                    400, 21218, "ApplicationSid is not emulated; use Url or Twiml"
                )
            raise RestError(400, 21205, "Url parameter is required.")
        if url is None and document is not None and len(document) > TWIML_MAX_CHARS:
            raise RestError(
                400,
                32018,
                f"Twiml size exceeded maximum allowed value of {TWIML_MAX_CHARS}",
            )
        events = frozenset(form.getlist("StatusCallbackEvent")) or frozenset(
            {"completed"}
        )
        unknown = events - STATUS_EVENTS
        if unknown:
            raise RestError(
                400, 21200, f"Invalid StatusCallbackEvent {sorted(unknown)}"
            )
        detection = form.get("MachineDetection") or None
        if detection not in (None, "Enable", "DetectMessageEnd"):
            raise RestError(400, 21200, f"Invalid MachineDetection {detection!r}")
        async_amd = form.get("AsyncAmd") or "false"
        if async_amd not in ("true", "false"):
            raise RestError(
                400, 21200, f"AsyncAmd must be true or false, got {async_amd!r}"
            )
        options = CallOptions(
            url=url,
            method=form.method("Method"),
            twiml=None if url else document,
            status_callback=check_url("StatusCallback", form.get("StatusCallback")),
            status_callback_method=form.method("StatusCallbackMethod"),
            status_callback_events=events,
            machine_detection=detection,
            async_amd=async_amd == "true",
            async_amd_status_callback=check_url(
                "AsyncAmdStatusCallback", form.get("AsyncAmdStatusCallback")
            ),
            async_amd_status_callback_method=form.method(
                "AsyncAmdStatusCallbackMethod"
            ),
            record=(form.get("Record") or "").lower() == "true",
            recording_status_callback=check_url(
                "RecordingStatusCallback", form.get("RecordingStatusCallback")
            ),
            recording_status_callback_method=form.method(
                "RecordingStatusCallbackMethod"
            ),
            timeout=form.integer("Timeout", 60, 1, 600),
            time_limit=form.integer("TimeLimit", 14400, 1, 86400),
        )
        far_end = self.far_end_for(to)
        call = Call(
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            direction="outbound-api",
            options=options,
            status="queued",
            caller_script=far_end.caller_script,
            speech_script=far_end.speech_script,
            far_end=far_end,
        )
        self.calls[call.sid] = call
        call.queue_estimate_ms = self._queue_estimate_ms()
        call._note("status", status="queued")
        call._note("far-end", **far_end.describe())
        self._queued += 1
        self._spawn(call, self._outbound(call, far_end))
        return call

    def _queue_estimate_ms(self) -> int:
        """How long a call created now will wait in the CPS queue, roughly."""
        if self.cps is None:
            return 0
        gap = 1.0 / self.cps
        free = max(time.monotonic(), self._last_dequeue + gap)
        wait = free + self._queued * gap - time.monotonic()
        return max(0, round(wait * 1000))

    async def _leave_queue(self, call: Call) -> None:
        """Wait for the call's turn under the account's CPS, then dequeue it."""
        try:
            async with self._queue_lock:
                while self.cps is not None:
                    wait = self._last_dequeue + 1.0 / self.cps - time.monotonic()
                    if wait <= 0:
                        break
                    await asyncio.sleep(min(wait, 0.05))  # cps may change
                self._last_dequeue = time.monotonic()
        finally:
            self._queued -= 1
        call.times.dequeued = time.time()
        call.queue_time_ms = round((call.times.dequeued - call.times.created) * 1000)
        call._note("dequeued", queue_time_ms=call.queue_time_ms)

    def _update_call(self, call: Call, form: Form) -> Call:
        status = form.get("Status")
        url = check_url("Url", form.get("Url"))
        document = form.get("Twiml") or None
        if status not in (None, "completed", "canceled"):
            raise RestError(
                400, 21200, f"Status must be completed or canceled, got {status!r}"
            )
        if document is not None and len(document) > TWIML_MAX_CHARS:
            raise RestError(
                400,
                32018,
                f"Twiml size exceeded maximum allowed value of {TWIML_MAX_CHARS}",
            )
        if call._ending or call.status in FINAL_STATUSES:
            if status is not None and url is None and document is None:
                return call  # hanging up a finished call changes nothing
            raise RestError(400, 21220, "Call is not in-progress. Cannot redirect.")
        if form.get("StatusCallback"):
            call.options.status_callback = check_url(
                "StatusCallback", form.get("StatusCallback")
            )
            call.options.status_callback_method = form.method("StatusCallbackMethod")
        if form.get("TimeLimit"):
            call.options.time_limit = form.integer("TimeLimit", 14400, 1, 86400)
        if status is not None:
            answered = call._answered_at is not None
            if status == "canceled" and answered:
                return call  # canceled only affects queued or ringing calls
            call._note("update", status=status)
            self._begin_end(call, "completed" if answered else "canceled")
            self._spawn(None, self._finish_end(call))
            return call
        if url is None and document is None:
            return call
        call._note("update", url=url, twiml=None if url else document)
        if call._answered_at is None:  # not answered yet: it will run this instead
            call.options.url, call.options.twiml = url, None if url else document
            call.options.method = form.method("Method")
            return call
        self._spawn(None, self._redirect(call, url, form.method("Method"), document))
        return call

    # Call lifecycle -------------------------------------------------------------

    def _spawn(
        self, call: Call | None, coro: Coroutine[Any, Any, Any]
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_crash)
        if call is not None:
            call._tasks.add(task)
            task.add_done_callback(call._tasks.discard)
        return task

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    async def _outbound(self, call: Call, far_end: FarEnd) -> None:
        await self._leave_queue(call)
        await self._sleep(self.timings.setup_s)
        call.start_time = utc_now()  # dialed
        call.date_updated = call.start_time
        await self._status_event(call, "initiated")
        if far_end.behaviour == "failed":
            await self._end_call(call, "failed")
            return
        if far_end.behaviour == "busy":
            await self._sleep(self.timings.ring_s)
            await self._end_call(call, "busy")
            return
        await self._set_status(call, "ringing")
        await self._status_event(call, "ringing")
        if far_end.behaviour == "no-answer":
            wait = self.timings.no_answer_s
            await self._sleep(call.options.timeout if wait is None else wait)
            await self._end_call(call, "no-answer")
            return
        ring = self.timings.ring_s if far_end.ring_s is None else far_end.ring_s
        await self._sleep(ring)
        # An update that arrives while the call is being answered waits, then
        # replaces the TwiML started here.
        async with call._redirect_lock:
            await self._answer(call)
            extra: dict[str, str] = {}
            if call.options.machine_detection is not None:
                if call.options.async_amd:
                    # The TwiML runs now; the result is posted when detection ends.
                    self._spawn(call, self._async_amd(call, far_end))
                else:
                    await self._detect_machine(call, far_end)
                    extra["MachineDetectionDuration"] = str(
                        call.machine_detection_duration_ms
                    )
            call.talk_s = self._talk_time(far_end)
            if call.talk_s is not None:
                self._spawn(call, self._hang_up_later(call, call.talk_s))
            await self._run_first_twiml(call, extra)

    def _talk_time(self, far_end: FarEnd) -> float | None:
        """How long the far end stays on the line after answering (None: on)."""
        if far_end.talk_s is not None:
            return self.random.uniform(*far_end.talk_s)
        return far_end.hangup_after_s

    async def _async_amd(self, call: Call, far_end: FarEnd) -> None:
        """Detect in the background, then post ``AsyncAmdStatusCallback``."""
        await self._detect_machine(call, far_end)
        url = call.options.async_amd_status_callback
        if url is None or call.answered_by is None:
            return
        params = {
            "AccountSid": call.account_sid,
            "CallSid": call.sid,
            "AnsweredBy": call.answered_by,
            "MachineDetectionDuration": str(call.machine_detection_duration_ms),
        }
        await self._request(
            "amd", url, call.options.async_amd_status_callback_method, params, call
        )

    async def _run_first_twiml(
        self, call: Call, extra: Mapping[str, str] | None = None
    ) -> None:
        if call.options.twiml is not None:
            try:
                document = twiml.parse_twiml(call.options.twiml)
            except TwimlError as exc:
                await self._fail(call, exc.code, exc.reason)
                return
            self._start_interpreter(call, document, None)
            return
        assert call.options.url is not None
        fetched = await self._fetch_twiml(
            call, "voice", call.options.url, call.options.method, extra
        )
        if fetched is None:
            await self._end_call(call, "completed")
            return
        self._start_interpreter(call, fetched, call.options.url)

    async def _detect_machine(self, call: Call, far_end: FarEnd) -> None:
        began = time.monotonic()
        end_of_message = call.options.machine_detection == "DetectMessageEnd"
        if far_end.behaviour != "machine":
            await self._sleep(self.timings.amd_s)
            call.answered_by = "human"
        elif end_of_message:
            await self._sleep(self.timings.message_end_s)
            call.answered_by = "machine_end_beep"
        else:
            await self._sleep(self.timings.amd_s)
            call.answered_by = "machine_start"
        call.machine_detection_duration_ms = round((time.monotonic() - began) * 1000)
        call._note(
            "amd",
            answered_by=call.answered_by,
            duration_ms=call.machine_detection_duration_ms,
        )

    async def _answer(self, call: Call) -> None:
        call._answered_at = time.monotonic()
        call.times.answered = time.time()
        if call.start_time is None:
            call.start_time = utc_now()
        await self._set_status(call, "in-progress")
        self._spawn(
            call, self._hang_up_later(call, call.options.time_limit, "time-limit")
        )
        await self._status_event(call, "answered")

    async def _hang_up_later(
        self, call: Call, delay: float, why: str = "far end"
    ) -> None:
        await self._sleep(delay)
        call._note("hangup", by=why)
        await self._end_call(call, "completed")

    async def _set_status(self, call: Call, status: str) -> None:
        call._set_status(status)
        async with call.status_changed:
            call.status_changed.notify_all()

    def _begin_end(self, call: Call, status: str) -> bool:
        """Mark the call over (synchronously); False if it already was."""
        if call._ending:
            return False
        call._ending = True
        call._ended_at = time.monotonic()
        call.times.ended = time.time()
        call.end_time = utc_now()
        call._set_status(status)
        return True

    async def _finish_end(self, call: Call) -> None:
        """Stop what the call was doing, then send its final callbacks."""
        current = asyncio.current_task()
        running = [t for t in call._tasks if t is not current and not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
        async with call.status_changed:
            call.status_changed.notify_all()
        await self._status_event(call, "completed")
        await self._post_held(call)
        if call.options.record and call._answered_at is not None:
            await self._call_recording(call)
        call.finished.set()

    async def _end_call(self, call: Call, status: str) -> None:
        if self._begin_end(call, status):
            await self._finish_end(call)
        elif asyncio.current_task() not in call._tasks:
            await call.finished.wait()

    async def _fail(self, call: Call, code: int, message: str) -> None:
        """Record a Twilio error; the caller hears an application error; hang up."""
        call.errors.append(CallError(code, message))
        call._note("error", code=code, message=message)
        logger.info("call %s: Twilio error %s: %s", call.sid, code, message)
        await self._end_call(call, "completed" if call._answered_at else "failed")

    # Webhooks -------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                transport=self._transport,
                timeout=self.timings.callback_timeout_s,
                trust_env=False,
                follow_redirects=True,
            )
        return self._http

    def _call_params(self, call: Call) -> dict[str, str]:
        params = {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": call.direction,
            "From": call.from_,
            "To": call.to,
        }
        if call.parent_call_sid:
            params["ParentCallSid"] = call.parent_call_sid
        if call.answered_by:
            params["AnsweredBy"] = call.answered_by
        return params

    async def _request(
        self,
        kind: str,
        url: str,
        method: str,
        params: Mapping[str, str],
        call: Call | None,
        *,
        delivery: str = "normal",
        token: str | None = None,
    ) -> httpx.Response | None:
        """Make one signed webhook request and record it; None if it failed."""
        if method == "GET":
            joiner = "&" if urlsplit(url).query else "?"
            url = url + joiner + urlencode(params)
            signature = sign_request(self.auth_token, url, {})
            request_kwargs: dict[str, Any] = {}
        else:
            signature = sign_request(self.auth_token, url, params)
            request_kwargs = {"data": dict(params)}
        headers = {
            "X-Twilio-Signature": signature,
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": token or secrets.token_hex(16),
        }
        response: httpx.Response | None = None
        error: str | None = None
        try:
            response = await self._client().request(
                method, url, headers=headers, **request_kwargs
            )
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        record = Callback(
            kind=kind,
            url=url,
            method=method,
            params=dict(params),
            signature=signature,
            status_code=None if response is None else response.status_code,
            error=error,
            call_sid=None if call is None else call.sid,
            at=time.monotonic(),
            response_text="" if response is None else response.text[:2000],
            delivery=delivery,
        )
        self.callbacks.append(record)
        if call is not None:
            call.callbacks.append(record)
            call._note("callback", kind=kind, url=url, status_code=record.status_code)
        return response

    async def _status_event(self, call: Call, event: str) -> None:
        """Post the call progress ``event`` if the call asked for it."""
        options = call.options
        if (
            options.status_callback is None
            or event not in options.status_callback_events
        ):
            return
        params = self._call_params(call)
        params["CallStatus"] = {"initiated": "initiated", "ringing": "ringing"}.get(
            event, call.status
        )
        params["CallbackSource"] = "call-progress-events"
        params["SequenceNumber"] = str(call._sequence)
        params["Timestamp"] = rfc2822(utc_now()) or ""
        if event == "completed":
            params["CallDuration"] = str(call.duration or 0)
            params["Duration"] = str(math.ceil((call.duration or 0) / 60))
        call._sequence += 1
        if self.reorder_status_callbacks and event != "completed":
            call._held.append(params)
            call._note("callback-held", event=event)
            return
        await self._post_status(call, params, "normal")

    async def _post_status(
        self, call: Call, params: Mapping[str, str], delivery: str
    ) -> None:
        options = call.options
        assert options.status_callback is not None
        token = secrets.token_hex(16)
        copies = 2 if self.duplicate_status_callbacks else 1
        for copy in range(copies):
            await self._request(
                "status",
                options.status_callback,
                options.status_callback_method,
                params,
                call,
                delivery="duplicate" if copy else delivery,
                token=token,
            )

    async def _post_held(self, call: Call) -> None:
        """Post the status callbacks held back, after the final one, newest first."""
        held, call._held = call._held, []
        for params in reversed(held):
            await self._post_status(call, params, "late")

    async def _fetch_twiml(
        self,
        call: Call,
        kind: str,
        url: str,
        method: str,
        extra: Mapping[str, str] | None = None,
    ) -> tuple[twiml.Verb, ...] | None:
        """Fetch and parse TwiML; on failure record the error and return None."""
        params = self._call_params(call)
        params.update(extra or {})
        response = await self._request(kind, url, method, params, call)
        code, message = 0, ""
        if response is None:
            code, message = 11200, f"HTTP retrieval failure: {call.callbacks[-1].error}"
        elif not response.is_success:
            code, message = (
                11200,
                f"HTTP retrieval failure: {url} returned {response.status_code}",
            )
        elif len(response.content) > TWIML_MAX_BYTES:
            code, message = 11750, "TwiML response body too large"
        elif "xml" not in response.headers.get("content-type", "text/xml"):
            code = 12300
            message = f"Invalid Content-Type {response.headers.get('content-type')!r}"
        else:
            try:
                return twiml.parse_twiml(response.content)
            except TwimlError as exc:
                code, message = exc.code, exc.reason
        call.errors.append(CallError(code, message))
        call._note("error", code=code, message=message)
        return None


def _log_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("Twilio emulator task crashed", exc_info=task.exception())


# --------------------------------------------------------------------------
# Standalone


def _far_end_arg(text: str) -> tuple[str, FarEnd]:
    number, _, behaviour = text.partition("=")
    if behaviour not in ("answer", "busy", "no-answer", "failed", "machine"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: use NUMBER=answer|busy|no-answer|failed|machine"
        )
    return number, FarEnd(behaviour)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--account-sid", default="AC" + "0" * 32)
    parser.add_argument("--auth-token", default="emulator-token")
    parser.add_argument(
        "--far-end",
        action="append",
        type=_far_end_arg,
        default=[],
        metavar="NUMBER=BEHAVIOUR",
    )
    parser.add_argument("--realistic", action="store_true", help="real-world delays")
    parser.add_argument(
        "--cps", type=float, default=None, help="calls per second (default: no limit)"
    )
    args = parser.parse_args(argv)

    async def serve() -> None:
        emulator = TwilioEmulator(
            args.account_sid,
            args.auth_token,
            host=args.host,
            port=args.port,
            timings=Timings.realistic() if args.realistic else None,
            cps=args.cps,
        )
        emulator.far_ends.update(dict(args.far_end))
        async with emulator:
            print(
                f"Twilio emulator on {emulator.base_url} (account {args.account_sid})"
            )
            await asyncio.Event().wait()

    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
