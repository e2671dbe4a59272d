"""Both emulators in one process, for the demo and ``manage.py simulate_call``.

::

    python -m realtime.emulators.run --realtime-port 8765 --twilio-port 8766 \\
        --account-sid AC… --auth-token … --scenario demo

serves the fake OpenAI Realtime server and the Twilio emulator (with the delays
of a real call, ``Timings.realistic()``, unless ``--fast``), and narrates on
stdout what each call does (created, ringing, stream up, conference joined …) so
whoever watches ``make run`` sees the call. Outbound calls reach a human far end
that answers and stays on the line until hung up (or ``--far-end-hangup-after``
seconds).

Another process drives the Twilio side through a small JSON control API on the
Twilio emulator's port, under ``/_emulator/`` only (no auth: it listens on the
loopback interface, like the emulator itself)::

    POST /_emulator/inbound-calls         ring our number → 201 {"sid": "CA…"}
         {"from", "to", "voice_url", "status_callback"?, "script": [step, …]}
    GET  /_emulator/calls                 every call: sid, direction, from, to, status
    GET  /_emulator/calls/<sid>           status, log, heard_ms, stream_up …
    POST /_emulator/calls/<sid>/hang-up   the remote party hangs up → {"sid", "status"}
    POST /_emulator/calls/<sid>/dtmf      {"digit": "0"}: the caller presses a key

Script steps (the simulated caller's, run once the Media Stream is up)::

    {"speak_ms": 1200}                    speech-like audio
    {"pause_ms": 800}                     silence
    {"wait_audio": true, "ms"?: 100, "timeout_s"?: 30}
    {"wait_quiet_ms": 400, "timeout_s"?: 30}
    {"dtmf": "0"}
    {"hang_up": true}

Every other path is the Twilio REST emulator's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from realtime.emulators import scenarios
from realtime.emulators.caller import (
    Dtmf,
    HangUp,
    Pause,
    SimulatedCaller,
    Speak,
    Step,
    WaitForAudio,
    WaitUntilQuiet,
)
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.twilio_api import (
    Behaviour,
    Call,
    FarEnd,
    LogEntry,
    Receive,
    Scope,
    Send,
    StreamStart,
    Timings,
    TwilioEmulator,
)

__all__ = [
    "CONTROL_PREFIX",
    "DEMO_HANDOFF_NUMBER",
    "ControlledTwilioEmulator",
    "ScriptError",
    "call_summary",
    "main",
    "parse_script",
]

CONTROL_PREFIX: Final = "/_emulator/"
DEMO_HANDOFF_NUMBER: Final = "+818070239355"
DEFAULT_WAIT_S: Final = 30.0  # a real-time greeting can last several seconds
MAX_BODY: Final = 1 << 20

log = logging.getLogger("realtime.emulators.run")

_CALL_PATH: Final = re.compile(
    r"^/_emulator/calls/(?P<sid>CA[0-9a-f]{32})(?:/(?P<action>hang-up|dtmf))?$"
)


# -- scripts ---------------------------------------------------------------------


class ScriptError(ValueError):
    """A script step the control API cannot read."""


def _number(step: Mapping[str, Any], key: str, default: float) -> float:
    value = step.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ScriptError(f"{key} must be a non-negative number, got {value!r}")
    return float(value)


def _parse_step(step: Any) -> Step:
    if not isinstance(step, Mapping):
        raise ScriptError(f"a step is a JSON object, got {step!r}")
    if "speak_ms" in step:
        return Speak(ms=int(_number(step, "speak_ms", 0)))
    if "pause_ms" in step:
        return Pause(ms=int(_number(step, "pause_ms", 0)))
    if step.get("wait_audio") is True:
        return WaitForAudio(
            ms=_number(step, "ms", 100.0),
            timeout_s=_number(step, "timeout_s", DEFAULT_WAIT_S),
        )
    if "wait_quiet_ms" in step:
        return WaitUntilQuiet(
            quiet_ms=_number(step, "wait_quiet_ms", 0),
            require_audio=bool(step.get("require_audio", True)),
            timeout_s=_number(step, "timeout_s", DEFAULT_WAIT_S),
        )
    if "dtmf" in step:
        digit = step["dtmf"]
        if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#":
            raise ScriptError(f"dtmf must be one key of 0-9, * or #, got {digit!r}")
        return Dtmf(digit)
    if step.get("hang_up") is True:
        return HangUp()
    raise ScriptError(f"unknown step {dict(step)!r}")


def parse_script(steps: Any) -> list[Step]:
    """Turn the control API's JSON steps into the simulated caller's script."""
    if steps is None:
        return []
    if not isinstance(steps, list):
        raise ScriptError("script must be a list of steps")
    return [_parse_step(step) for step in steps]


# -- what the control API reports ------------------------------------------------


def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-safe, short copy of a log detail (long TwiML is cut)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= 300 else value[:300] + "…"
    if isinstance(value, Mapping) and depth < 3:
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple) and depth < 3:
        return [_plain(v, depth + 1) for v in value]
    return str(value)


def _entry(entry: LogEntry) -> dict[str, Any]:
    return {"at": entry.at, "kind": entry.kind, "detail": _plain(entry.detail)}


def _brief(call: Call) -> dict[str, Any]:
    return {
        "sid": call.sid,
        "direction": call.direction,
        "from": call.from_,
        "to": call.to,
        "status": call.status,
        "parent_call_sid": call.parent_call_sid,
    }


def call_summary(emulator: TwilioEmulator, call: Call) -> dict[str, Any]:
    """What ``GET /_emulator/calls/<sid>`` returns."""
    stream = call.streams[-1] if call.streams else None
    rooms = [
        room.friendly_name
        for room in emulator.conferences.values()
        if call.sid in room.participants
    ]
    return {
        **_brief(call),
        "answered_by": call.answered_by,
        "duration": call.duration,
        "finished": call.is_finished,
        "stream_up": stream is not None and not stream.closed,
        "streams": len(call.streams),
        "heard_ms": sum(s.heard_ms for s in call.streams),
        "violations": [
            f"{v.code}: {v.reason}" for s in call.streams for v in s.violations
        ],
        "conference": rooms[0] if rooms else None,
        "errors": [{"code": e.code, "message": e.message} for e in call.errors],
        "log": [_entry(e) for e in call.log],
    }


# -- the Twilio emulator with its control API ------------------------------------


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _read_json(receive: Receive) -> Any:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            raise _HttpError(413, "body too large")
        if not message.get("more_body", False):
            break
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _HttpError(400, f"invalid JSON: {exc}") from None


async def _reply(send: Send, status: int, payload: Any) -> None:
    data = json.dumps(payload, ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class ControlledTwilioEmulator(TwilioEmulator):
    """The Twilio emulator, plus the ``/_emulator/`` control API on the same port."""

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``/_emulator/…`` here and everything else as Twilio would."""
        if scope["type"] != "http" or not scope["path"].startswith(CONTROL_PREFIX):
            await super().app(scope, receive, send)
            return
        try:
            body = await _read_json(receive)
            status, payload = await self._control(scope["method"], scope["path"], body)
        except _HttpError as exc:
            status, payload = exc.status, {"error": exc.message}
        await _reply(send, status, payload)

    async def _control(
        self, method: str, path: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        if path == "/_emulator/inbound-calls":
            if method != "POST":
                raise _HttpError(405, "use POST")
            return 201, await self._place_inbound(body)
        if path == "/_emulator/calls":
            if method != "GET":
                raise _HttpError(405, "use GET")
            return 200, {"calls": [_brief(c) for c in self.calls.values()]}
        match = _CALL_PATH.match(path)
        if match is None:
            raise _HttpError(404, f"no control endpoint {path}")
        call = self.calls.get(match["sid"])
        if call is None:
            raise _HttpError(404, f"no call {match['sid']}")
        action = match["action"]
        if action is None:
            if method != "GET":
                raise _HttpError(405, "use GET")
            return 200, call_summary(self, call)
        if method != "POST":
            raise _HttpError(405, "use POST")
        if action == "hang-up":
            if not call.is_finished:
                await self.hang_up(call.sid)
            return 200, {"sid": call.sid, "status": call.status}
        return 200, await self._press(call, body)

    async def _place_inbound(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise _HttpError(400, "send a JSON object")
        missing = [k for k in ("from", "to", "voice_url") if not body.get(k)]
        if missing:
            raise _HttpError(400, f"missing {', '.join(missing)}")
        try:
            script = parse_script(body.get("script"))
        except ScriptError as exc:
            raise _HttpError(400, str(exc)) from None
        callback = body.get("status_callback") or None
        handle = await self.inbound_call(
            from_=str(body["from"]),
            to=str(body["to"]),
            voice_url=str(body["voice_url"]),
            caller_script=script,
            status_callback=None if callback is None else str(callback),
        )
        return {"sid": handle.sid, "status": handle.status}

    async def _press(self, call: Call, body: Any) -> dict[str, Any]:
        digit = body.get("digit") if isinstance(body, Mapping) else None
        if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#":
            raise _HttpError(400, "digit must be one key of 0-9, * or #")
        stream = call.streams[-1] if call.streams else None
        if stream is None or stream.closed:
            raise _HttpError(409, f"call {call.sid} has no Media Stream up")
        await stream.send_dtmf(digit)
        call._note("dtmf", digit=digit)
        return {"sid": call.sid, "digit": digit}


# -- narration on stdout ---------------------------------------------------------


def describe(kind: str, detail: Mapping[str, Any]) -> str | None:
    """One line about a call's log entry for a person watching, or None for
    bookkeeping not worth a line (also fed the JSON of ``GET …/calls/<sid>``)."""
    d = detail
    if kind == "status":
        return f"status {d.get('status')}"
    if kind == "say":
        return f"<Say> “{d.get('text')}”"
    if kind == "play":
        return f"<Play> {d.get('url') or d.get('digits')}"
    if kind == "stream-start":
        return f"media stream up ({d.get('stream_sid')}) → {d.get('url')}"
    if kind in ("stream-stop", "stream-end"):
        by = f" by {d['by']}" if "by" in d else " (Twilio sent stop)"
        return f"media stream closed{by}"
    if kind == "conference-join":
        return f"joined conference {d.get('conference')}"
    if kind == "callback":
        code = d.get("status_code")
        mark = "" if isinstance(code, int) and code < 400 else "  ← refused!"
        return f"webhook {d.get('kind')} {d.get('url')} → {code}{mark}"
    if kind == "hangup":
        return f"hung up ({d.get('by')})"
    if kind == "update":
        change = f"Status={d['status']}" if d.get("status") else "new TwiML"
        return f"REST update: {change}"
    if kind in ("verb", "pause"):
        return None
    rest = " ".join(f"{k}={_plain(v)}" for k, v in d.items() if k != "twiml")
    return f"{kind} {rest}".strip()


def _who(call: Call) -> str:
    return f"{call.sid[:10]}… {call.direction} {call.from_} → {call.to}"


async def narrate(
    emulator: TwilioEmulator,
    fake: FakeRealtimeServer | None = None,
    interval_s: float = 0.1,
) -> None:
    """Log what calls, rooms and model sessions do, until cancelled."""
    seen: dict[str, int] = {}
    events_seen: dict[str, int] = {}
    sessions_open: set[int] = set()
    sessions_closed: set[int] = set()
    while True:
        for call in list(emulator.calls.values()):
            if call.sid not in seen:
                seen[call.sid] = 0
                log.info("[twilio] call created: %s", _who(call))
            for entry in call.log[seen[call.sid] :]:
                line = describe(entry.kind, entry.detail)
                if line is not None:
                    log.info("[twilio] %s: %s", call.sid[:10] + "…", line)
            seen[call.sid] = len(call.log)
        for room in list(emulator.conferences.values()):
            done = events_seen.get(room.sid, 0)
            for event in room.events[done:]:
                who = event.params.get("CallSid", "")
                log.info(
                    "[twilio] conference %s: %s %s",
                    room.friendly_name,
                    event.name,
                    (who[:10] + "…") if who else "",
                )
            events_seen[room.sid] = len(room.events)
        for connection in fake.connections if fake is not None else ():
            if connection.index not in sessions_open:
                sessions_open.add(connection.index)
                log.info("[realtime] model session %d opened", connection.index)
            if connection.closed and connection.index not in sessions_closed:
                sessions_closed.add(connection.index)
                log.info(
                    "[realtime] model session %d closed by %s",
                    connection.index,
                    connection.closed_by,
                )
        await asyncio.sleep(interval_s)


# -- the process -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    host: str
    realtime_port: int
    twilio_port: int
    account_sid: str
    auth_token: str
    scenario: str
    api_key: str | None
    fast: bool
    caller_time_scale: float
    twilio_only: bool
    far_ends: tuple[tuple[str, Behaviour], ...]
    far_end_hangup_after_s: float


_BEHAVIOURS: Final[dict[str, Behaviour]] = {
    "answer": "answer",
    "busy": "busy",
    "no-answer": "no-answer",
    "failed": "failed",
    "machine": "machine",
}


def _far_end_arg(text: str) -> tuple[str, Behaviour]:
    number, _, behaviour = text.partition("=")
    if behaviour not in _BEHAVIOURS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use NUMBER=answer|busy|no-answer|failed|machine"
        )
    return number, _BEHAVIOURS[behaviour]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m realtime.emulators.run",
        description="Serve the fake OpenAI Realtime server and the Twilio emulator "
        "(with a /_emulator/ control API) in one process.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--realtime-port", type=int, default=8765)
    parser.add_argument("--twilio-port", type=int, default=8766)
    parser.add_argument(
        "--account-sid",
        default=os.environ.get("TWILIO_ACCOUNT_SID") or "AC" + "0" * 32,
        help="default: $TWILIO_ACCOUNT_SID, else AC000…",
    )
    parser.add_argument(
        "--auth-token",
        default=os.environ.get("TWILIO_AUTH_TOKEN") or "emulator-token",
        help="signs webhooks; the service needs the same (default: "
        "$TWILIO_AUTH_TOKEN, else emulator-token)",
    )
    parser.add_argument(
        "--scenario",
        default="demo",
        choices=sorted(scenarios.SCENARIOS),
        help="what the fake model does (default: demo)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="the only bearer key the fake accepts (default: any non-empty key)",
    )
    parser.add_argument(
        "--fast", action="store_true", help="test delays instead of a real call's"
    )
    parser.add_argument(
        "--caller-time-scale",
        type=float,
        default=1.0,
        help="pace of simulated callers (0.25: four times real time)",
    )
    parser.add_argument(
        "--twilio-only",
        action="store_true",
        help="no fake Realtime server (the service talks to the real model)",
    )
    parser.add_argument(
        "--far-end",
        action="append",
        type=_far_end_arg,
        default=[],
        metavar="NUMBER=BEHAVIOUR",
        help="how an outbound call to NUMBER goes (default: a human answers)",
    )
    parser.add_argument(
        "--far-end-hangup-after",
        type=float,
        default=60.0,
        metavar="S",
        help="a human far end hangs up after S seconds (default 60)",
    )
    return parser


def _options(argv: Sequence[str] | None) -> Options:
    args = _parser().parse_args(argv)
    return Options(
        host=args.host,
        realtime_port=args.realtime_port,
        twilio_port=args.twilio_port,
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        scenario=args.scenario,
        api_key=args.api_key,
        fast=args.fast,
        caller_time_scale=args.caller_time_scale,
        twilio_only=args.twilio_only,
        far_ends=tuple(args.far_end),
        far_end_hangup_after_s=args.far_end_hangup_after,
    )


def build_twilio(options: Options) -> ControlledTwilioEmulator:
    """The Twilio emulator the options describe (not started)."""
    scale = options.caller_time_scale

    def caller_factory(start: StreamStart) -> SimulatedCaller:
        return SimulatedCaller(
            start.url,
            parameters=start.parameters,
            auth_token=start.auth_token,
            account_sid=start.account_sid,
            call_sid=start.call_sid,
            stream_sid=start.stream_sid,
            time_scale=scale,
        )

    human = FarEnd("answer", hangup_after_s=options.far_end_hangup_after_s)
    emulator = ControlledTwilioEmulator(
        options.account_sid,
        options.auth_token,
        host=options.host,
        port=options.twilio_port,
        timings=None if options.fast else Timings.realistic(),
        caller_factory=caller_factory,
        default_far_end=human,
    )
    emulator.far_ends[DEMO_HANDOFF_NUMBER] = human
    for number, behaviour in options.far_ends:
        emulator.far_ends[number] = (
            human if behaviour == "answer" else FarEnd(behaviour)
        )
    return emulator


async def serve(options: Options, ready: asyncio.Event | None = None) -> None:
    """Run both emulators until SIGINT or SIGTERM (or cancellation)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    fake: FakeRealtimeServer | None = None
    if not options.twilio_only:
        fake = FakeRealtimeServer(
            scenarios.by_name(options.scenario),
            api_key=options.api_key,
            host=options.host,
            port=options.realtime_port,
            record_events=False,
        )
    twilio = build_twilio(options)
    async with contextlib.AsyncExitStack() as stack:
        if fake is not None:
            await stack.enter_async_context(fake)
            log.info(
                "[realtime] fake OpenAI Realtime (scenario %s) at %s",
                options.scenario,
                fake.url,
            )
        await stack.enter_async_context(twilio)
        pace = "test delays" if options.fast else "real-call delays"
        log.info(
            "[twilio] Twilio emulator (%s, account %s) at %s; control API at %s%s",
            pace,
            options.account_sid,
            twilio.base_url,
            twilio.base_url,
            CONTROL_PREFIX,
        )
        narrator = asyncio.create_task(narrate(twilio, fake))
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            narrator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await narrator
            log.info("emulators stopping")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve both emulators until interrupted."""
    options = _options(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter("%(asctime)s [emulators] %(message)s", "%H:%M:%S")
    )
    emulators = logging.getLogger("realtime.emulators")
    emulators.addHandler(handler)
    emulators.setLevel(logging.INFO)
    emulators.propagate = False
    # The narrator reports model sessions; the fake's own lines would repeat them.
    logging.getLogger("realtime.emulators.fake_realtime").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(options))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # a port in use, most likely
        print(f"emulators: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
