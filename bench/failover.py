"""Failover benchmarks: calls that outlive a server process (F-68 … F-70).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
    REDIS_URL=redis://127.0.0.1:6379/0 \\
    .venv/bin/python bench/failover.py kill    [--calls 100] [--json out.json]
    .venv/bin/python bench/failover.py rolling [--calls 100] [--json out.json]

The service runs as `make cluster` runs it (`manage.py cluster --no-celery`: two
uvicorn processes behind HAProxy) on a throw-away PostgreSQL database of
DATABASE_URL's server and REDIS_URL's Redis (a database index of its own). The fake
OpenAI Realtime server (the demo scenario: it greets, answers each turn and says
what it is asked to) and the Twilio emulator run in this process; Twilio reaches the
service only through the proxy. Each emulated caller talks at real-time pace: hears
the greeting, says a sentence, hears the answer, then stays on the line (frames
keep flowing). The emulator follows `<Connect action>` as Twilio does when a stream
ends, and its caller script goes on on the new stream.

- `kill`: with every call settled (three saved lines each), SIGKILL the server
  process holding more of them. For each call it held: kill → the first audio
  frame the resumed bridge sends to the caller (what the caller hears first: the
  profile's resume line), and kill → the first caller frame the resumed bridge
  forwards to the model (at the fake). Calls ended, and saved transcript lines
  lost (lines saved before the kill missing afterwards; and how many of them the
  new model sessions were re-seeded with).
- `rolling`: SIGTERM server 1 (drain), wait until `make cluster` has started it
  again and it answers `ok` (and HAProxy has it back), then the same for server 2.
  Calls ended, and for every stream a call changed: the gap the caller hears (the
  old stream closed at a quiet moment → the first audio on the new one, the resume
  line), and how much of it the new stream took to open.

Targets (issue 13): kill p99 ≤ 2 s, zero calls ended, zero lines lost; rolling:
zero calls ended, the longest gap printed. Figures in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.cluster_service import ClusterService, fresh_database
from bench.figures import Spread
from bench.service import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    INBOUND_NUMBER,
    base_env,
    machine_busy_seconds,
)
from realtime.emulators import scenarios
from realtime.emulators.caller import (
    Pause,
    SimulatedCaller,
    Speak,
    WaitForAudio,
    WaitUntilQuiet,
)
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.twilio_api import CallHandle, StreamStart, TwilioEmulator

API_KEY = "sk-bench"
PROXY_RISE_S = 2.5
LINES_SETTLED = 3  # greeting, the caller's sentence, the answer
SCRIPT = [
    WaitForAudio(ms=100, timeout_s=60),
    WaitUntilQuiet(quiet_ms=300, timeout_s=60),
    Speak(ms=1000),
    Pause(ms=800),
    WaitForAudio(ms=100, timeout_s=60),
    WaitUntilQuiet(quiet_ms=300, timeout_s=60),
    Pause(ms=3_600_000),  # on the line until hung up
]
ENDED = {"completed", "failed", "busy", "no-answer", "canceled"}


class TimedCaller(SimulatedCaller):
    """A simulated caller that notes when its socket opened and closed."""

    connecting_at: float | None = None
    """When the emulator had the TwiML and began the WebSocket handshake."""
    connected_at: float | None = None
    closed_at: float | None = None

    async def connect(self) -> None:
        self.connecting_at = time.monotonic()
        await super().connect()
        self.connected_at = time.monotonic()

    async def _receive_loop(self) -> None:
        try:
            await super()._receive_loop()
        finally:
            self.closed_at = time.monotonic()

    def media_times(self) -> list[float]:
        return [r.at for r in self.media_received()]


def timed_caller(start: StreamStart) -> SimulatedCaller:
    return TimedCaller(
        start.url,
        parameters=start.parameters,
        auth_token=start.auth_token,
        account_sid=start.account_sid,
        call_sid=start.call_sid,
        stream_sid=start.stream_sid,
        frame_phase=random.random(),
    )


@dataclass
class Figures:
    scenario: str
    calls: int
    settled: int = 0
    on_server: dict[int, int] = field(default_factory=dict)
    streams_broken: int = 0
    resumed: int = 0
    calls_ended: int = 0
    ended_reasons: list[str] = field(default_factory=list)
    # kill
    kill_to_first_audio_ms: Spread | None = None
    kill_to_first_forwarded_ms: Spread | None = None
    kill_to_twiml_ms: Spread | None = None
    """kill → stream-ended answered (the emulator begins the new stream)."""
    twiml_to_open_ms: Spread | None = None
    """→ WebSocket open (the new stream's handshake)."""
    open_to_audio_ms: Spread | None = None
    """→ the first audio frame the caller hears on it."""
    machine_busy_cores: float | None = None
    """All processes' CPU during the measured part, in cores (2-core machine)."""
    lines_saved_before: int = 0
    lines_lost: int = 0
    lines_reseeded: int = 0
    # rolling
    restart_s: list[float] = field(default_factory=list)
    gap_heard_ms: Spread | None = None
    """Old stream closed (handed over) → the first audio on the new one."""
    dead_line_ms: Spread | None = None
    """Old stream closed → the new stream open (the bridge hears nothing)."""
    longest_gap_heard_ms: float | None = None
    stream_changes: int = 0
    notes: list[str] = field(default_factory=list)


# -- the database, read directly ----------------------------------------------------


def _lines(database_url: str) -> dict[int, set[int]]:
    """Every saved transcript line's id, by call id."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT call_id, id FROM calls_transcriptentry").fetchall()
    lines: dict[int, set[int]] = {}
    for call_id, line_id in rows:
        lines.setdefault(int(call_id), set()).add(int(line_id))
    return lines


def _statuses(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT twilio_call_sid, status FROM calls_callsession"
        ).fetchall()
    return {str(sid): str(status) for sid, status in rows}


# -- calls ----------------------------------------------------------------------------


async def _place(
    twilio: TwilioEmulator, url: str, n: int, rate: float
) -> list[CallHandle]:
    handles = []
    for index in range(n):
        handles.append(
            await twilio.inbound_call(
                from_=f"+81901234{index:04d}",
                to=INBOUND_NUMBER,
                voice_url=f"{url}/api/twilio/voice/incoming",
                caller_script=SCRIPT,
                status_callback=f"{url}/api/twilio/status",
            )
        )
        await asyncio.sleep(1 / rate)
    return handles


def _call_id(handle: CallHandle) -> int | None:
    caller = handle.caller
    return int(caller.parameters["call_id"]) if caller is not None else None


async def _settle(
    handles: list[CallHandle], database_url: str, timeout_s: float
) -> int:
    """Wait until every call has LINES_SETTLED saved lines; return how many have."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = await asyncio.to_thread(_lines, database_url)
        settled = sum(
            1 for h in handles if len(lines.get(_call_id(h) or -1, ())) >= LINES_SETTLED
        )
        if settled == len(handles) or time.monotonic() > deadline:
            return settled
        await asyncio.sleep(0.5)


def _streams(handle: CallHandle) -> list[TimedCaller]:
    return [s for s in handle.call.streams if isinstance(s, TimedCaller)]


def _ended(handles: list[CallHandle], database_url: str, figures: Figures) -> None:
    statuses = _statuses(database_url)
    for handle in handles:
        status = statuses.get(handle.sid, "?")
        if handle.status in ENDED or status != "ai-responding":
            figures.calls_ended += 1
            log = [
                f"{e.kind} {json.dumps(e.detail, default=str)[:160]}"
                for e in handle.log[-4:]
            ]
            figures.ended_reasons.append(
                f"{handle.sid}: twilio {handle.status}, {status}; last: {log}"
            )


# -- the two scenarios ----------------------------------------------------------------


async def _kill(
    cluster: ClusterService,
    fake: FakeRealtimeServer,
    handles: list[CallHandle],
    database_url: str,
    figures: Figures,
) -> None:
    before = await asyncio.to_thread(_lines, database_url)
    victim = max(figures.on_server, key=lambda n: figures.on_server[n])
    first_new_connection = fake.connection_count
    killed_at = time.monotonic()
    cluster.signal_server(victim, signal.SIGKILL)
    broken = []
    deadline = killed_at + 30
    while time.monotonic() < deadline:
        broken = [h for h in handles if _streams(h) and _streams(h)[0].closed]
        resumed = [
            h
            for h in broken
            if len(_streams(h)) > 1 and _streams(h)[-1].media_received()
        ]
        if broken and len(resumed) == len(broken) and time.monotonic() > killed_at + 3:
            break
        await asyncio.sleep(0.05)
    figures.streams_broken = len(broken)
    heard = []
    for handle in broken:
        later = [
            t for s in _streams(handle)[1:] for t in s.media_times() if t > killed_at
        ]
        if later:
            heard.append((min(later) - killed_at) * 1000)
    figures.resumed = len(heard)
    figures.kill_to_first_audio_ms = Spread.of(heard)
    twiml, opened, audio = [], [], []
    for handle in broken:
        new = _streams(handle)[1:2]
        if not new or new[0].connecting_at is None or new[0].connected_at is None:
            continue
        twiml.append((new[0].connecting_at - killed_at) * 1000)
        opened.append((new[0].connected_at - new[0].connecting_at) * 1000)
        if new[0].media_times():
            audio.append((new[0].media_times()[0] - new[0].connected_at) * 1000)
    figures.kill_to_twiml_ms = Spread.of(twiml)
    figures.twiml_to_open_ms = Spread.of(opened)
    figures.open_to_audio_ms = Spread.of(audio)
    forwarded = [
        (c.first_append_at - killed_at) * 1000
        for c in fake.connections[first_new_connection:]
        if c.first_append_at is not None
    ]
    figures.kill_to_first_forwarded_ms = Spread.of(forwarded)
    figures.lines_reseeded = sum(
        1
        for c in fake.connections[first_new_connection:]
        for e in c.received_of("conversation.item.create")
        if e.get("item", {}).get("role") in ("user", "assistant")
    )
    await asyncio.sleep(2.0)  # the resumed bridges go on a little
    after = await asyncio.to_thread(_lines, database_url)
    on_victim = [_call_id(h) for h in broken]
    figures.lines_saved_before = sum(len(before.get(c or -1, ())) for c in on_victim)
    figures.lines_lost = sum(
        len(before.get(c or -1, set()) - after.get(c or -1, set())) for c in on_victim
    )


async def _rolling(
    cluster: ClusterService, handles: list[CallHandle], figures: Figures
) -> None:
    for number in sorted(cluster.servers()):
        began = time.monotonic()
        old = cluster.signal_server(number, signal.SIGTERM)
        try:
            back = await asyncio.to_thread(cluster.wait_replaced, number, old, 60.0)
        except RuntimeError as exc:
            # A rolling restart stops here: draining the next one too would leave
            # no process to take the calls.
            figures.notes.append(
                f"{exc} (its drain done, the process still running); "
                "the rolling restart stopped there"
            )
            break
        figures.restart_s.append(round(back - began, 2))
        # HAProxy takes it back after two good checks (1 s apart): only then is
        # there a process for the next drain's calls besides the one draining.
        await asyncio.sleep(PROXY_RISE_S)
    # Every stream a drain handed over is open again and has been heard.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pending = [
            h
            for h in handles
            if len(_streams(h)) > 1
            and not (_streams(h)[-1].media_received() or _streams(h)[-1].closed)
        ]
        if not pending:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    gaps, reopen = [], []
    for handle in handles:
        streams = _streams(handle)
        for old, new in itertools.pairwise(streams):
            figures.stream_changes += 1
            first_new = new.media_times()[:1]
            if not first_new or old.closed_at is None or new.connected_at is None:
                figures.notes.append(f"{handle.sid}: a new stream was never heard")
                continue
            # Handed over at a quiet moment: the caller heard nothing before the
            # close anyway; the gap is from the close to the resume line.
            gaps.append((first_new[0] - old.closed_at) * 1000)
            reopen.append((new.connected_at - old.closed_at) * 1000)
    figures.resumed = sum(1 for h in handles if len(_streams(h)) > 1)
    figures.gap_heard_ms = Spread.of(gaps)
    figures.dead_line_ms = Spread.of(reopen)
    figures.longest_gap_heard_ms = round(max(gaps), 1) if gaps else None


async def run(args: argparse.Namespace) -> Figures:
    pg, redis = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not pg.startswith(("postgres://", "postgresql://")) or not redis:
        sys.exit("Set DATABASE_URL=postgres://… (its server) and REDIS_URL=redis://…")
    redis = urlunsplit(urlsplit(redis)._replace(path="/13"))
    figures = Figures(args.scenario, args.calls)
    workdir = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    with fresh_database(pg) as database_url:
        async with (
            FakeRealtimeServer(scenarios.DEMO, api_key=API_KEY) as fake,
            TwilioEmulator(
                ACCOUNT_SID, AUTH_TOKEN, caller_factory=timed_caller
            ) as twilio,
        ):
            env = base_env(database=database_url, fake_url=fake.url, api_key=API_KEY)
            env.update(
                REDIS_URL=redis,
                CELERY_BROKER_URL="",
                TWILIO_API_BASE_URL=twilio.base_url,
                DRAIN_TIMEOUT=str(args.drain_timeout),
            )
            cluster = ClusterService(env, workdir / "cluster.log")
            print(f"cluster log: {cluster.log_path}", flush=True)
            try:
                await asyncio.to_thread(cluster.wait_ready)
                handles = await _place(twilio, cluster.url, args.calls, args.rate)
                figures.settled = await _settle(handles, database_url, 120)
                for number in sorted(cluster.servers()):
                    health = await asyncio.to_thread(cluster.health, number) or {}
                    figures.on_server[number] = int(
                        health.get("live_calls_in_process", 0)  # type: ignore[call-overload]
                    )
                print(f"settled {figures.settled}/{args.calls}, on {figures.on_server}")
                busy_before, began = machine_busy_seconds(), time.monotonic()
                if args.scenario == "kill":
                    await _kill(cluster, fake, handles, database_url, figures)
                else:
                    await _rolling(cluster, handles, figures)
                figures.machine_busy_cores = round(
                    (machine_busy_seconds() - busy_before) / (time.monotonic() - began),
                    2,
                )
                await asyncio.to_thread(_ended, handles, database_url, figures)
                await asyncio.gather(*(h.hang_up() for h in handles))
            finally:
                await asyncio.to_thread(cluster.stop)
    return figures


def _print(figures: Figures) -> None:
    def spread(name: str, value: Spread | None) -> None:
        if value is not None and value.count:
            print(
                f"  {name}: p50 {value.p50:.0f} ms, p99 {value.p99:.0f} ms, "
                f"max {value.max:.0f} ms (n={value.count})"
            )

    print(
        f"\n{figures.scenario}: {figures.calls} calls, on servers {figures.on_server}"
    )
    if figures.scenario == "kill":
        print(f"  streams broken by the kill: {figures.streams_broken}")
        print(f"  resumed and heard again: {figures.resumed}")
        spread("kill → first audio the caller hears", figures.kill_to_first_audio_ms)
        spread(
            "kill → first caller frame forwarded to the model",
            figures.kill_to_first_forwarded_ms,
        )
        spread("  of which kill → stream-ended answered", figures.kill_to_twiml_ms)
        spread("  then → new stream open", figures.twiml_to_open_ms)
        spread("  then → first audio heard", figures.open_to_audio_ms)
        print(
            f"  saved lines of those calls: {figures.lines_saved_before}, lost "
            f"{figures.lines_lost}; re-seeded into the new sessions "
            f"{figures.lines_reseeded}"
        )
    else:
        print(f"  restarts (drain → back up), s: {figures.restart_s}")
        print(
            f"  calls moved: {figures.resumed}, stream changes {figures.stream_changes}"
        )
        spread("gap heard (old stream closed → first audio new)", figures.gap_heard_ms)
        spread("  of which closed → new stream open", figures.dead_line_ms)
        print(f"  longest gap a caller heard: {figures.longest_gap_heard_ms} ms")
    print(f"  calls ended: {figures.calls_ended}")
    print(f"  machine busy meanwhile: {figures.machine_busy_cores} cores")
    for line in figures.ended_reasons[:10] + figures.notes[:10]:
        print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=("kill", "rolling"))
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument(
        "--rate", type=float, default=20.0, help="calls placed a second"
    )
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    _print(figures)
    if args.json:
        args.json.write_text(json.dumps(asdict(figures), indent=2, default=str))


if __name__ == "__main__":
    main()
