"""The Twilio emulator's control API: another process drives the Twilio side.

``ControlledTwilioEmulator`` is the Twilio emulator with a small JSON API on the
same port, under ``/_emulator/`` only (no auth: it listens on the loopback
interface, like the emulator itself); every other path is the Twilio REST
emulator's. ``python -m realtime.emulators.run`` serves it for the demo and
``manage.py simulate_call`` uses it::

    POST /_emulator/inbound-calls         ring our number → 201 {"sid": "CA…"}
         {"from", "to", "voice_url", "status_callback"?, "script": [step, …]}
    GET  /_emulator/calls                 every call: sid, direction, from, to, status
    GET  /_emulator/calls/<sid>           status, log, heard_ms, stream_up …
    POST /_emulator/calls/<sid>/hang-up   the remote party hangs up → {"sid", "status"}
    POST /_emulator/calls/<sid>/dtmf      {"digit": "0"}: the caller presses a key

For an outbound dialer (a Celery worker's test, the demo, a benchmark)::

    GET  /_emulator/far-ends              → the body below, as it stands
    POST /_emulator/far-ends              → 200, the same as GET
         {"far_ends"?: {"+8190…": far_end, …},        who answers each number
          "sequences"?: {"+8190…": [far_end, …], …},  one per call, first
          "default"?: far_end}                        everyone else
         far_end: {"behaviour": "answer"|"busy"|"no-answer"|"failed"|"machine",
                   "ring_s"?: 3.0, "hangup_after_s"?: 20.0,
                   "talk_s"?: [5.0, 40.0], "script"?: [step, …]}
         A number's sequence is used up first (busy, then answer), then its
         far_ends entry or the default applies. Numbers given replace theirs;
         others stay. Refused whole (400) if any far end is wrong.
    GET  /_emulator/settings              → {"cps", "seed",
    POST /_emulator/settings                 "duplicate_status_callbacks",
         {"cps"?: 5 | null, "seed"?: 1,      "reorder_status_callbacks"}
          "duplicate_status_callbacks"?: true, "reorder_status_callbacks"?: true}
         cps null: unlimited; a seed restarts the talk-time draws.
    POST /_emulator/faults                → 201 {"pending": [fault, …]}
         {"status"?: 429|500|503|…, "code"?: 20429, "message"?: "…",
          "create"?: false, "drop"?: false, "delay_s"?: 0, "count"?: 1}
         the next ``count`` POST …/Calls.json fail so (``RestFault``);
         create: the call is made anyway (the ambiguous failure).
    GET  /_emulator/faults                → {"pending": [fault, …],
         "injected": [{"at", "fault", "to", "call_sid"}, …]}
    GET  /_emulator/outbound-calls        → {"calls": [{"sid", "to", "from",
         "status", "answered_by", "duration", "far_end", "talk_s",
         "queue_time_ms", "times": {"created", "dequeued", "answered",
         "ended"}}, …], "max_creates_per_s", "max_dequeues_per_s",
         "max_concurrent"}  (times: time.time() seconds, null until then;
         max_concurrent counts calls from leaving the queue to their end)
    POST /_emulator/reset                 → {"reset": true}: calls, rooms,
         faults and switches gone; far ends and cps as at start

Script steps (the simulated caller's, run once the Media Stream is up)::

    {"speak_ms": 1200}                    speech-like audio
    {"pause_ms": 800}                     silence
    {"wait_audio": true, "ms"?: 100, "timeout_s"?: 30}
    {"wait_quiet_ms": 400, "timeout_s"?: 30}
    {"dtmf": "0"}
    {"hang_up": true}
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

from realtime.emulators.caller import (
    Dtmf,
    HangUp,
    Pause,
    Speak,
    Step,
    WaitForAudio,
    WaitUntilQuiet,
)
from realtime.emulators.speech_script import Utterance, parse_speech_script
from realtime.emulators.twilio_api import (
    BEHAVIOURS,
    Call,
    FarEnd,
    LogEntry,
    Receive,
    RestFault,
    Scope,
    Send,
    TwilioEmulator,
    max_in_window,
)

__all__ = [
    "CONTROL_PREFIX",
    "ControlledTwilioEmulator",
    "ScriptError",
    "call_summary",
    "describe",
    "outbound_summary",
    "parse_far_end",
    "parse_fault",
    "parse_script",
]

_T = TypeVar("_T")

CONTROL_PREFIX: Final = "/_emulator/"
DEFAULT_WAIT_S: Final = 30.0  # a real-time greeting can last several seconds
MAX_BODY: Final = 1 << 20

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


# -- far ends and faults -----------------------------------------------------------


def _optional_number(body: Mapping[str, Any], key: str) -> float | None:
    if body.get(key) is None:
        return None
    return _number(body, key, 0.0)


_FAR_END_FIELDS = frozenset(
    {"behaviour", "ring_s", "hangup_after_s", "talk_s", "script", "speech"}
)


def _speech(lines: Any) -> list[Utterance] | None:
    """The control API's ``"speech": ["say:…", "silent", "hangup"]`` (for
    ``<Gather input="speech">``), or None when absent."""
    if lines is None:
        return None
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise ScriptError('speech must be a list of "say:<text>", "silent", "hangup"')
    try:
        return parse_speech_script(lines)
    except ValueError as exc:
        raise ScriptError(str(exc)) from None


def parse_far_end(body: Any) -> FarEnd:
    """Turn the control API's JSON far end into a ``FarEnd`` (ScriptError)."""
    if not isinstance(body, Mapping):
        raise ScriptError(f"a far end is a JSON object, got {body!r}")
    unknown = set(body) - _FAR_END_FIELDS
    if unknown:
        raise ScriptError(f"unknown far end fields {sorted(unknown)}")
    behaviour = body.get("behaviour", "answer")
    if behaviour not in BEHAVIOURS:
        raise ScriptError(f"behaviour must be one of {', '.join(BEHAVIOURS)}")
    talk = body.get("talk_s")
    talk_s: tuple[float, float] | None = None
    if talk is not None:
        if not isinstance(talk, list) or len(talk) != 2:
            raise ScriptError("talk_s must be [low, high]")
        pair = {"low": talk[0], "high": talk[1]}
        talk_s = (_number(pair, "low", 0.0), _number(pair, "high", 0.0))
    script = body.get("script")
    try:
        return FarEnd(
            behaviour,
            hangup_after_s=_optional_number(body, "hangup_after_s"),
            ring_s=_optional_number(body, "ring_s"),
            caller_script=None if script is None else parse_script(script),
            speech_script=_speech(body.get("speech")),
            talk_s=talk_s,
        )
    except ValueError as exc:
        raise ScriptError(str(exc)) from None


def parse_fault(body: Any) -> tuple[RestFault, int]:
    """Turn the control API's JSON fault into a ``RestFault`` and a count."""
    if not isinstance(body, Mapping):
        raise ScriptError("send a JSON object")
    known = {"status", "code", "message", "create", "drop", "delay_s", "count"}
    if set(body) - known:
        raise ScriptError(f"unknown fault fields {sorted(set(body) - known)}")
    status, code, count = (
        body.get("status", 500),
        body.get("code"),
        body.get("count", 1),
    )
    for name, value in (("status", status), ("code", code), ("count", count)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int)
        ):
            raise ScriptError(f"{name} must be an integer")
    if count < 1:
        raise ScriptError("count must be at least 1")
    message = body.get("message")
    if message is not None and not isinstance(message, str):
        raise ScriptError("message must be a string")
    flags = {}
    for name in ("create", "drop"):
        value = body.get(name, False)
        if not isinstance(value, bool):
            raise ScriptError(f"{name} must be true or false")
        flags[name] = value
    try:
        fault = RestFault(
            status,
            code=code,
            message=message,
            create=flags["create"],
            drop=flags["drop"],
            delay_s=_number(body, "delay_s", 0.0),
        )
    except ValueError as exc:
        raise ScriptError(str(exc)) from None
    return fault, count


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


def _outbound(call: Call) -> dict[str, Any]:
    return {
        **_brief(call),
        "answered_by": call.answered_by,
        "duration": call.duration,
        "far_end": None if call.far_end is None else call.far_end.describe(),
        "talk_s": call.talk_s,
        "queue_time_ms": call.queue_time_ms,
        "times": call.times.describe(),
    }


def outbound_summary(emulator: TwilioEmulator) -> dict[str, Any]:
    """What ``GET /_emulator/outbound-calls`` returns."""
    return {
        "calls": [_outbound(c) for c in emulator.outbound_calls()],
        "max_creates_per_s": max_in_window(emulator.create_times()),
        "max_dequeues_per_s": max_in_window(emulator.dequeue_times()),
        "max_concurrent": emulator.max_concurrent_live(),
    }


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
    if kind == "gather":
        return f"<Gather input={d.get('input')} language={d.get('language')}> listening"
    if kind == "gather-end":
        if d.get("result") == "speech":
            return f"caller says “{d.get('text')}”"
        return "caller says nothing"
    if kind == "update":
        change = f"Status={d['status']}" if d.get("status") else "new TwiML"
        return f"REST update: {change}"
    if kind in ("verb", "pause"):
        return None
    rest = " ".join(f"{k}={_plain(v)}" for k, v in d.items() if k != "twiml")
    return f"{kind} {rest}".strip()


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
        dialer = _DIALER_ENDPOINTS.get(path)
        if dialer is not None:
            allowed, handler = dialer
            if method not in allowed:
                raise _HttpError(405, f"use {' or '.join(allowed)}")
            try:
                return await handler(self, method, body)
            except ScriptError as exc:
                raise _HttpError(400, str(exc)) from None
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
            speech = _speech(body.get("speech"))
        except ScriptError as exc:
            raise _HttpError(400, str(exc)) from None
        callback = body.get("status_callback") or None
        handle = await self.inbound_call(
            from_=str(body["from"]),
            to=str(body["to"]),
            voice_url=str(body["voice_url"]),
            caller_script=script,
            speech_script=speech,
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

    # -- for an outbound dialer ----------------------------------------------------

    async def _far_ends(self, method: str, body: Any) -> tuple[int, dict[str, Any]]:
        if method == "POST":
            if not isinstance(body, Mapping):
                raise ScriptError("send a JSON object")
            unknown = set(body) - {"far_ends", "sequences", "default"}
            if unknown:
                raise ScriptError(f"unknown fields {sorted(unknown)}")
            far_ends = _per_number(body.get("far_ends"), parse_far_end)
            sequences = _per_number(body.get("sequences"), _parse_sequence)
            default = body.get("default")
            self.far_ends.update(far_ends)
            self.far_end_sequences.update(sequences)
            if default is not None:
                self.default_far_end = parse_far_end(default)
        return 200, {
            "far_ends": {n: f.describe() for n, f in self.far_ends.items()},
            "sequences": {
                n: [f.describe() for f in seq]
                for n, seq in self.far_end_sequences.items()
            },
            "default": self.default_far_end.describe(),
        }

    async def _settings(self, method: str, body: Any) -> tuple[int, dict[str, Any]]:
        if method == "POST":
            if not isinstance(body, Mapping):
                raise ScriptError("send a JSON object")
            switches = ("duplicate_status_callbacks", "reorder_status_callbacks")
            unknown = set(body) - {"cps", "seed", *switches}
            if unknown:
                raise ScriptError(f"unknown settings {sorted(unknown)}")
            for name in switches:
                if name in body and not isinstance(body[name], bool):
                    raise ScriptError(f"{name} must be true or false")
            cps = body.get("cps")
            if cps is not None and _number(body, "cps", 0.0) <= 0:
                raise ScriptError("cps must be positive, or null for no limit")
            seed = body.get("seed")
            if seed is not None and (
                isinstance(seed, bool) or not isinstance(seed, int)
            ):
                raise ScriptError("seed must be an integer")
            if "cps" in body:
                self.cps = None if body["cps"] is None else float(body["cps"])
            if "seed" in body:
                self.seed = seed
                self.random.seed(seed)
            for name in switches:
                if name in body:
                    setattr(self, name, body[name])
        return 200, {
            "cps": self.cps,
            "seed": self.seed,
            "duplicate_status_callbacks": self.duplicate_status_callbacks,
            "reorder_status_callbacks": self.reorder_status_callbacks,
        }

    async def _faults(self, method: str, body: Any) -> tuple[int, dict[str, Any]]:
        pending = {"pending": [f.describe() for f in self.pending_faults]}
        if method == "POST":
            fault, count = parse_fault(body)
            self.inject_fault(fault, count)
            return 201, {"pending": [f.describe() for f in self.pending_faults]}
        injected = [
            {
                "at": r.at,
                "fault": r.fault.describe(),
                "to": r.to,
                "call_sid": r.call_sid,
            }
            for r in self.faults
        ]
        return 200, {**pending, "injected": injected}

    async def _outbound_calls(
        self, method: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        return 200, outbound_summary(self)

    async def _reset(self, method: str, body: Any) -> tuple[int, dict[str, Any]]:
        await self.reset()
        return 200, {"reset": True}


def _parse_sequence(body: Any) -> list[FarEnd]:
    if not isinstance(body, list) or not body:
        raise ScriptError("a sequence is a non-empty list of far ends")
    return [parse_far_end(item) for item in body]


def _per_number(body: Any, parse: Callable[[Any], _T]) -> dict[str, _T]:
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise ScriptError("give far ends as {number: …}")
    return {str(number): parse(value) for number, value in body.items()}


_Handler = Callable[
    [ControlledTwilioEmulator, str, Any], Awaitable[tuple[int, dict[str, Any]]]
]
_DIALER_ENDPOINTS: Final[dict[str, tuple[tuple[str, ...], _Handler]]] = {
    "/_emulator/far-ends": (("GET", "POST"), ControlledTwilioEmulator._far_ends),
    "/_emulator/settings": (("GET", "POST"), ControlledTwilioEmulator._settings),
    "/_emulator/faults": (("GET", "POST"), ControlledTwilioEmulator._faults),
    "/_emulator/outbound-calls": (
        ("GET",),
        ControlledTwilioEmulator._outbound_calls,
    ),
    "/_emulator/reset": (("POST",), ControlledTwilioEmulator._reset),
}
