"""Call setup under bursts: N calls arriving over T seconds on one server process.

    .venv/bin/python bench/burst.py [--n 100,200] [--over 2] [--handshake 0.3]
        [--db sqlite|postgres|both] [--postgres URL] [--hold 2] [--json out.json]

The service runs as `make run` runs it (uvicorn, the serve command's flags; see
bench/service.py), on a throw-away database migrated and seeded by `manage.py`:
SQLite (the embedded default, with settings.py's options) and/or PostgreSQL
(`--postgres`, default $BENCH_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/;
a database `burst_bench` is dropped and created there).

The Twilio emulator (realtime/emulators/twilio_api.py) places every call as Twilio
does: the signed voice webhook, the TwiML it answers, the signed WebSocket upgrade
of its `<Connect><Stream>`, then `connected`, `start` and 20 ms probe frames at
real-time pace. Call i rings at i·T/N. The fake OpenAI Realtime server (scenario
ECHO_FRAMES) runs in this process and waits `--handshake` seconds before it answers
each model socket's upgrade (the real model's handshake takes ~300 ms).

Per call (all on this process's monotonic clock):

- webhook reply: voice webhook POST sent → its TwiML received;
- stream connect: WebSocket upgrade sent → 101 received (the consumer accepts
  once its database work is done);
- setup: webhook sent → stream open;
- first audio: webhook sent → the first media frame the bridge sends back (an
  echo of the caller's frames through the model);
- refused: the webhook failed or did not answer a stream, the upgrade failed, or
  the server closed the stream (1008); lost: stream open but no audio back within
  10 s, or the server closed the stream before the caller hung up.

Each call then streams until every call of the burst is set up, plus `--hold`
seconds; then all hang up and the server is stopped once it has no call left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.callers import ProbeCaller, frame_phase
from bench.figures import Spread
from bench.report import spread
from bench.service import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    INBOUND_NUMBER,
    Service,
    base_env,
    database_prepare,
    database_url,
    machine_busy_seconds,
    wait_for_quiet,
)
from realtime.emulators import scenarios
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.twilio_api import Call, TwilioEmulator
from realtime.emulators.twilio_interpreter import StreamStart
from realtime.emulators.twiml import Verb

API_KEY = "sk-bench"
FIRST_AUDIO_TIMEOUT_S = 10.0
POSTGRES_DB = "burst_bench"
POLICY_VIOLATION = 1008

# The targets (one process).
TARGET_100 = {"webhook": 50.0, "connect": 50.0, "first_audio": 400.0}
TARGET_200_SETUP_MS = 150.0


@dataclass(slots=True)
class Leg:
    """One call of the burst, as the emulator saw it (monotonic seconds)."""

    index: int
    sid: str = ""
    webhook_sent: float | None = None
    webhook_answered: float | None = None
    webhook_ok: bool = False
    connect_began: float | None = None
    connect_open: float | None = None
    connect_error: str = ""
    caller: TimedCaller | None = None
    first_audio: float | None = None

    def ms(self, start: float | None, end: float | None) -> float | None:
        if start is None or end is None:
            return None
        return (end - start) * 1000


class TimedCaller(ProbeCaller):
    """A probe caller that notes when its upgrade went out and when it was open."""

    def __init__(self, leg: Leg, stream_url: str, **kwargs: Any) -> None:
        super().__init__(stream_url, **kwargs)
        self.leg = leg

    async def connect(self) -> None:
        self.leg.connect_began = time.monotonic()
        try:
            await super().connect()
        except Exception as exc:
            self.leg.connect_error = f"{type(exc).__name__}: {exc}"
            raise
        # The upgrade's 101 came in just before `connected` and `start` went out.
        self.leg.connect_open = time.monotonic()

    @property
    def first_rx(self) -> float | None:
        return self._rx_times[0] if self._rx_times else None

    async def wait_first_audio(self, timeout_s: float) -> float | None:
        with contextlib.suppress(AssertionError):
            await self._wait(lambda: bool(self._rx_times), timeout_s, "first audio")
        return self.first_rx


class TimedEmulator(TwilioEmulator):
    """The Twilio emulator, timing each call's voice webhook."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.legs_by_from: dict[str, Leg] = {}
        self.legs_by_sid: dict[str, Leg] = {}

    async def _fetch_twiml(
        self,
        call: Call,
        kind: str,
        url: str,
        method: str,
        extra: Mapping[str, str] | None = None,
    ) -> tuple[Verb, ...] | None:
        leg = self.legs_by_from.get(call.from_)
        if kind != "voice" or leg is None or leg.webhook_sent is not None:
            return await super()._fetch_twiml(call, kind, url, method, extra)
        leg.sid = call.sid
        self.legs_by_sid[call.sid] = leg
        leg.webhook_sent = time.monotonic()
        document = await super()._fetch_twiml(call, kind, url, method, extra)
        leg.webhook_answered = time.monotonic()
        leg.webhook_ok = document is not None
        return document


@dataclass(slots=True)
class BurstResult:
    database: str
    n: int
    over_s: float
    handshake_s: float
    webhook_ms: Spread
    connect_ms: Spread
    setup_ms: Spread
    first_audio_ms: Spread
    refused: int
    lost: int
    server_cpu_s: float
    server_cpu_wait_s: float
    """Time the server's threads were ready to run but waited for a CPU."""
    elapsed_s: float
    bench_cpu_s_per_s: float
    """This process: callers, Twilio emulator, fake model."""
    others_cpu_s_per_s: float
    server_idle_after: bool
    problems: list[str] = field(default_factory=list)


def _renice(server_pid: int, nice: int) -> None:
    """On a shared machine: the server under test (every thread so far; new ones
    inherit it) and this process (the callers) before unrelated work. Root only."""
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        os.setpriority(os.PRIO_PROCESS, int(task.name), nice)


def runqueue_wait_s(pid: int) -> float:
    """Time all threads of `pid` have spent runnable but not running (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def postgres_prepare(base_url: str) -> str:
    """Drop and create `burst_bench` on the server of `base_url`; its URL."""
    parts = urlsplit(base_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    for sql in (
        f"DROP DATABASE IF EXISTS {POSTGRES_DB} WITH (FORCE)",
        f"CREATE DATABASE {POSTGRES_DB}",
    ):
        subprocess.run(
            ["psql", admin, "-q", "-c", sql], check=True, stdout=subprocess.DEVNULL
        )
    return urlunsplit(parts._replace(path=f"/{POSTGRES_DB}"))


async def _place(
    emulator: TimedEmulator, service: Service, leg: Leg, at: float
) -> None:
    """Ring at `at`; the webhook, TwiML and stream run as Twilio runs them."""
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    number = f"+8190{leg.index:08d}"
    emulator.legs_by_from[number] = leg
    handle = await emulator.inbound_call(
        from_=number,
        to=INBOUND_NUMBER,
        voice_url=f"{service.base_url}/api/twilio/voice/incoming",
    )
    leg.sid = handle.sid
    if not leg.webhook_ok:
        return
    deadline = time.monotonic() + FIRST_AUDIO_TIMEOUT_S
    while leg.caller is None and time.monotonic() < deadline:
        if handle.call.finished.is_set() or leg.connect_error:
            return
        await asyncio.sleep(0.005)
    if leg.caller is None:
        return
    leg.first_audio = await leg.caller.wait_first_audio(
        max(0.1, deadline - time.monotonic())
    )


async def run_burst(
    *,
    database: str,
    env: dict[str, str],
    n: int,
    over_s: float,
    hold_s: float,
    handshake_s: float,
    log_path: Path,
    nice: int = 0,
) -> BurstResult:
    service = Service("uvicorn", env, log_path)
    legs = [Leg(index=i) for i in range(n)]
    warm = Leg(index=n)
    try:
        await asyncio.to_thread(service.wait_ready)
        if nice:
            _renice(service.pid, nice)

        def caller_for(start: StreamStart) -> TimedCaller:
            leg = emulator.legs_by_sid[start.call_sid]
            leg.caller = TimedCaller(
                leg,
                start.url,
                parameters=start.parameters,
                auth_token=start.auth_token,
                account_sid=start.account_sid,
                call_sid=start.call_sid,
                stream_sid=start.stream_sid,
                frame_phase=frame_phase(leg.index),
            )
            return leg.caller

        emulator = TimedEmulator(ACCOUNT_SID, AUTH_TOKEN, caller_factory=caller_for)
        async with emulator:
            # Warm-up: the first call pays for lazy imports and first connections.
            await _place(emulator, service, warm, time.monotonic())
            await emulator.hang_up(warm.sid)
            await asyncio.to_thread(service.wait_idle)
            await asyncio.to_thread(wait_for_quiet, max_busy_cores=0.3, timeout_s=20)
            gc.collect()
            gc.disable()
            profiler = _profiler_start(service, database, n)
            cpu_before = service.cpu_seconds()
            waited_before = runqueue_wait_s(service.pid)
            busy_before = machine_busy_seconds()
            bench_before = time.process_time()
            began = time.monotonic()
            try:
                await asyncio.gather(
                    *(
                        _place(emulator, service, leg, began + leg.index * over_s / n)
                        for leg in legs
                    )
                )
                await asyncio.sleep(hold_s)
            finally:
                gc.enable()
                _profiler_stop(profiler)
            elapsed = time.monotonic() - began
            server_cpu = service.cpu_seconds() - cpu_before
            server_waited = runqueue_wait_s(service.pid) - waited_before
            bench_cpu = time.process_time() - bench_before
            others = (
                machine_busy_seconds() - busy_before - server_cpu - bench_cpu
            ) / elapsed
            lost_by_close = [
                leg
                for leg in legs
                if leg.caller is not None
                and leg.caller.closed_by_server is not None
                and leg.first_audio is not None
            ]
            await asyncio.gather(
                *(emulator.hang_up(leg.sid) for leg in legs if leg.sid),
                return_exceptions=True,
            )
        idle = await asyncio.to_thread(service.wait_idle, 30.0)
    finally:
        await asyncio.to_thread(service.stop)

    refused = lost = 0
    problems: list[str] = []
    for leg in legs:
        closed = leg.caller.closed_by_server if leg.caller is not None else None
        if not leg.webhook_ok or leg.connect_error or leg.connect_open is None:
            refused += 1
            problems.append(
                f"call {leg.index}: refused ({leg.connect_error or 'webhook'})"
            )
        elif closed is not None and closed[0] == POLICY_VIOLATION:
            refused += 1
            problems.append(f"call {leg.index}: stream closed {closed}")
        elif leg.first_audio is None or leg in lost_by_close:
            lost += 1
            problems.append(f"call {leg.index}: lost (closed {closed})")
    return BurstResult(
        database=database,
        n=n,
        over_s=over_s,
        handshake_s=handshake_s,
        webhook_ms=_spread(
            leg.ms(leg.webhook_sent, leg.webhook_answered) for leg in legs
        ),
        connect_ms=_spread(leg.ms(leg.connect_began, leg.connect_open) for leg in legs),
        setup_ms=_spread(leg.ms(leg.webhook_sent, leg.connect_open) for leg in legs),
        first_audio_ms=_spread(
            leg.ms(leg.webhook_sent, leg.first_audio) for leg in legs
        ),
        refused=refused,
        lost=lost,
        server_cpu_s=round(server_cpu, 2),
        server_cpu_wait_s=round(server_waited, 2),
        bench_cpu_s_per_s=round(bench_cpu / elapsed, 2),
        elapsed_s=round(elapsed, 2),
        others_cpu_s_per_s=round(others, 2),
        server_idle_after=idle,
        problems=problems[:10],
    )


def _profiler_start(
    service: Service, database: str, n: int
) -> subprocess.Popen[bytes] | None:
    """With BENCH_PY_SPY=<py-spy binary>: sample the server (every thread, idle
    included) during the burst into BENCH_PROFILE_DIR (collapsed stacks)."""
    binary = os.environ.get("BENCH_PY_SPY")
    if not binary:
        return None
    out = Path(os.environ.get("BENCH_PROFILE_DIR", ".")) / f"burst-{database}-{n}.txt"
    return subprocess.Popen(
        [
            *(binary, "record", "-p", str(service.pid), "-o", str(out), "-f", "raw"),
            *("-r", "250", "--threads", "--idle", "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _profiler_stop(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=30)


def _spread(values: Any) -> Spread:
    return Spread.of([v for v in values if v is not None])


def report(results: Sequence[BurstResult]) -> str:
    lines = [
        "| database | N over s | webhook reply ms p50 / p99 / max | stream connect ms p50 / p99 / max "
        "| setup ms p50 / p99 / max | webhook → first audio ms p50 / p99 / max | refused / lost "
        "| server CPU s (waited for a CPU) over s | bench / others CPU s/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.database} | {r.n} over {r.over_s:g} | {_pp(r.webhook_ms)} "
            f"| {_pp(r.connect_ms)} | {_pp(r.setup_ms)} | {_pp(r.first_audio_ms)} "
            f"| {r.refused} / {r.lost} | {r.server_cpu_s:.2f} ({r.server_cpu_wait_s:.2f}) "
            f"over {r.elapsed_s:.1f} "
            f"| {r.bench_cpu_s_per_s:.2f} / {r.others_cpu_s_per_s:.2f} |"
        )
    lines.append("")
    for r in results:
        lines.extend(_verdicts(r))
    for r in results:
        for problem in r.problems:
            lines.append(f"  {r.database} N={r.n}: {problem}")
        if not r.server_idle_after:
            lines.append(f"  {r.database} N={r.n}: calls still live at the end")
    return "\n".join(lines)


def _pp(s: Spread) -> str:
    return spread(s) if s.count else "–"


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}"


def _verdicts(r: BurstResult) -> list[str]:
    out: list[str] = []

    def check(ok: bool, what: str, got: str) -> None:
        out.append(f"  {'PASS' if ok else 'FAIL'}  {r.database} {what}: {got}")

    if r.n == 100:
        for key, figure in (
            ("webhook", r.webhook_ms),
            ("connect", r.connect_ms),
            ("first_audio", r.first_audio_ms),
        ):
            limit = TARGET_100[key]
            check(
                figure.count == r.n and figure.p99 <= limit,
                f"N=100 {key} p99 ≤ {limit:g} ms",
                f"{_ms(figure.p99)} ms ({figure.count}/{r.n} calls)",
            )
    if r.n == 200:
        check(
            r.refused == 0 and r.lost == 0,
            "N=200 no call refused or lost",
            f"{r.refused} refused, {r.lost} lost",
        )
        check(
            r.setup_ms.count == r.n and r.setup_ms.p99 <= TARGET_200_SETUP_MS,
            f"N=200 setup p99 ≤ {TARGET_200_SETUP_MS:g} ms",
            f"{_ms(r.setup_ms.p99)} ms",
        )
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="100,200", help="calls per burst (list)")
    parser.add_argument("--over", type=float, default=2.0, help="burst length, s")
    parser.add_argument("--handshake", type=float, default=0.3, help="model, s")
    parser.add_argument("--hold", type=float, default=2.0, help="streaming after, s")
    parser.add_argument("--db", default="both", choices=["sqlite", "postgres", "both"])
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/"
        ),
        help="a PostgreSQL server URL (database burst_bench is recreated there)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the server (repeatable)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the server and this process at this niceness (e.g. -10; root)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--loop", default="uvloop", choices=["uvloop", "asyncio"], help="bench loop"
    )
    return parser


async def _main(args: argparse.Namespace) -> int:
    ns = [int(x) for x in args.n.split(",") if x.strip()]
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results: list[BurstResult] = []
    with tempfile.TemporaryDirectory(prefix="burst-bench-") as tmp:
        log_path = Path(tmp) / "server.log"
        async with FakeRealtimeServer(
            scenarios.ECHO_FRAMES,
            api_key=API_KEY,
            record_events=False,
            handshake_delay_s=args.handshake,
        ) as fake:
            for database in databases:
                for n in ns:
                    if database == "sqlite":
                        url = database_url(Path(tmp) / f"burst-{n}.sqlite3")
                    else:
                        url = await asyncio.to_thread(postgres_prepare, args.postgres)
                    env = base_env(database=url, fake_url=fake.url, api_key=API_KEY)
                    env.update(item.split("=", 1) for item in args.server_env)
                    print(f"{database:<8} N={n:<4} preparing …", end=" ", flush=True)
                    await asyncio.to_thread(database_prepare, env)
                    print("burst …", end=" ", flush=True)
                    result = await run_burst(
                        database=database,
                        env=env,
                        n=n,
                        over_s=args.over,
                        hold_s=args.hold,
                        handshake_s=args.handshake,
                        log_path=log_path,
                        nice=args.nice,
                    )
                    results.append(result)
                    print(
                        f"setup p99 {_ms(result.setup_ms.p99)} ms, "
                        f"{result.refused} refused, {result.lost} lost",
                        flush=True,
                    )
        log = _tail(log_path)
    print()
    print(
        f"{os.cpu_count()} CPUs; one uvicorn process; calls ring evenly over "
        f"{args.over:g} s; model handshake {args.handshake * 1000:g} ms"
    )
    print(report(results))
    if log:
        print("\nserver log (WARNING and up), last lines:\n" + log)
    if args.json:
        args.json.write_text(
            json.dumps([asdict(r) for r in results], indent=2, ensure_ascii=False)
        )
    return 0


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
