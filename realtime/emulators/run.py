"""Both emulators in one process, for the demo and ``manage.py simulate_call``.

::

    python -m realtime.emulators.run --realtime-port 8765 --twilio-port 8766 \\
        --account-sid AC… --auth-token … --scenario demo

serves the fake OpenAI Realtime server and the Twilio emulator (with the delays
of a real call, ``Timings.realistic()``, unless ``--fast``) plus the Twilio
emulator's ``/_emulator/`` control API (``realtime.emulators.control``), through
which another process places inbound calls, reads them, presses keys and hangs
up. It narrates on stdout what each call does (created, ringing, stream up,
conference joined …) so whoever watches ``make run`` sees the call. Outbound
calls (the demo handoff number's among them) reach a human far end that answers
and stays on the line until hung up, or ``--far-end-hangup-after`` seconds (or a
seeded uniform draw from ``--talk-time A:B``).

For a dialer's benchmark or demo: ``--cps N`` queues creates beyond N calls
per second, as Twilio does; ``--far-end NUMBER=busy,answer`` makes NUMBER busy
on the first call and a human after (the last behaviour stays for later calls).

The account SID and auth token default to ``$TWILIO_ACCOUNT_SID`` and
``$TWILIO_AUTH_TOKEN``, so a parent process can keep the token out of argv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from realtime.emulators import scenarios
from realtime.emulators.caller import SimulatedCaller
from realtime.emulators.control import (
    CONTROL_PREFIX,
    ControlledTwilioEmulator,
    ScriptError,
    describe,
    parse_script,
)
from realtime.emulators.demo_mcp import DemoMcpServer
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.fake_responses import FakeResponsesServer
from realtime.emulators.fake_summaries import FakeSummariesServer
from realtime.emulators.twilio_api import (
    Behaviour,
    Call,
    FarEnd,
    StreamStart,
    Timings,
    TwilioEmulator,
)

__all__ = [
    "CONTROL_PREFIX",
    "DEMO_HANDOFF_NUMBER",
    "ControlledTwilioEmulator",
    "ScriptError",
    "build_twilio",
    "describe",
    "main",
    "narrate",
    "parse_script",
    "serve",
]

DEMO_HANDOFF_NUMBER: Final = "+818070239355"

log = logging.getLogger("realtime.emulators.run")


# -- narration on stdout ---------------------------------------------------------


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
    far_ends: tuple[tuple[str, tuple[Behaviour, ...]], ...]
    far_end_hangup_after_s: float
    talk_time_s: tuple[float, float] | None = None
    cps: float | None = None
    seed: int | None = None
    # The fake Responses API (the legacy path's text model); None: not served.
    responses_port: int | None = None
    # The fake Responses API of call summaries (F-76); None: not served.
    summaries_port: int | None = None
    # The demo's MCP server, the 予約システム (issue 18); None: not served.
    mcp_port: int | None = None


_BEHAVIOURS: Final[dict[str, Behaviour]] = {
    "answer": "answer",
    "busy": "busy",
    "no-answer": "no-answer",
    "failed": "failed",
    "machine": "machine",
}


def _far_end_arg(text: str) -> tuple[str, tuple[Behaviour, ...]]:
    number, _, behaviours = text.partition("=")
    names = behaviours.split(",")
    if not number or any(name not in _BEHAVIOURS for name in names):
        raise argparse.ArgumentTypeError(
            f"{text!r}: use NUMBER=BEHAVIOUR[,BEHAVIOUR…], each one of "
            "answer|busy|no-answer|failed|machine"
        )
    return number, tuple(_BEHAVIOURS[name] for name in names)


def _talk_time_arg(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    try:
        pair = (float(low), float(high))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use LOW:HIGH seconds") from None
    if not 0 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= LOW <= HIGH")
    return pair


def _cps_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of calls") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("--cps must be positive")
    return value


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
        "--responses-port",
        type=int,
        default=None,
        help="also serve the fake OpenAI Responses API (legacy path) on this port",
    )
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
        metavar="NUMBER=BEHAVIOUR[,BEHAVIOUR…]",
        help="how outbound calls to NUMBER go, one behaviour per call, the last "
        "for every later call (default: a human answers)",
    )
    parser.add_argument(
        "--far-end-hangup-after",
        type=float,
        default=60.0,
        metavar="S",
        help="a human far end hangs up after S seconds (default 60)",
    )
    parser.add_argument(
        "--talk-time",
        type=_talk_time_arg,
        default=None,
        metavar="LOW:HIGH",
        help="a human far end hangs up after uniform(LOW, HIGH) seconds instead",
    )
    parser.add_argument(
        "--cps",
        type=_cps_arg,
        default=None,
        metavar="N",
        help="the account's calls per second: creates beyond it wait queued "
        "(default: no limit)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seeds the talk-time draws"
    )
    parser.add_argument(
        "--summaries-port",
        type=int,
        default=None,
        metavar="PORT",
        help="also serve the fake OpenAI Responses API for call summaries (F-76) "
        "on PORT (base URL http://host:PORT/summaries/v1)",
    )
    parser.add_argument(
        "--mcp-port",
        type=int,
        default=None,
        metavar="PORT",
        help="also serve the demo MCP server (予約システム) on PORT "
        "(URL http://host:PORT/mcp)",
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
        talk_time_s=args.talk_time,
        cps=args.cps,
        seed=args.seed,
        responses_port=args.responses_port,
        summaries_port=args.summaries_port,
        mcp_port=args.mcp_port,
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

    if options.talk_time_s is None:
        human = FarEnd("answer", hangup_after_s=options.far_end_hangup_after_s)
    else:
        human = FarEnd("answer", talk_s=options.talk_time_s)
    emulator = ControlledTwilioEmulator(
        options.account_sid,
        options.auth_token,
        host=options.host,
        port=options.twilio_port,
        timings=None if options.fast else Timings.realistic(),
        caller_factory=caller_factory,
        default_far_end=human,
        cps=options.cps,
        seed=options.seed,
    )
    emulator.far_ends[DEMO_HANDOFF_NUMBER] = human
    for number, behaviours in options.far_ends:
        far_ends = [human if b == "answer" else FarEnd(b) for b in behaviours]
        *first, last = far_ends
        emulator.far_end_sequences[number] = first
        emulator.far_ends[number] = last
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
        if options.responses_port is not None and not options.twilio_only:
            responses = FakeResponsesServer(
                api_key=options.api_key,
                host=options.host,
                port=options.responses_port,
                record=False,
            )
            await stack.enter_async_context(responses)
            log.info(
                "[responses] fake OpenAI Responses API (legacy path) at %s",
                responses.base_url,
            )
        if fake is not None:
            await stack.enter_async_context(fake)
            log.info(
                "[realtime] fake OpenAI Realtime (scenario %s) at %s",
                options.scenario,
                fake.url,
            )
        if options.summaries_port is not None and not options.twilio_only:
            summaries = FakeSummariesServer(
                host=options.host, port=options.summaries_port, api_key=options.api_key
            )
            await stack.enter_async_context(summaries)
            log.info(
                "[summaries] fake OpenAI Responses API (call summaries) at %s",
                summaries.base_url,
            )
        if options.mcp_port is not None and not options.twilio_only:
            booking = DemoMcpServer(host=options.host, port=options.mcp_port)
            await stack.enter_async_context(booking)
            log.info("[mcp] demo MCP server (予約システム) at %s", booking.url)
        await stack.enter_async_context(twilio)
        pace = "test delays" if options.fast else "real-call delays"
        if options.cps is not None:
            pace += f", {options.cps:g} calls per second"
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
