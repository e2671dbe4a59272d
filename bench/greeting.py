"""The instant greeting (F-73): stream `start` → first greeting frame, cache off and on.

    .venv/bin/python bench/greeting.py [--n 50] [--over 0] [--handshake 0.3]
        [--hold 1] [--no-hit-rate] [--json out.json]

The service runs as `make run` runs it (uvicorn, the serve command's flags; see
bench/service.py) on a throw-away SQLite database migrated and seeded by
`manage.py`; seed_demo's inbound agent 受付デモ speaks first. The fake OpenAI
Realtime server (scenario DEMO: it speaks the greeting when asked) runs in this
process and waits `--handshake` seconds before it answers each model socket's
upgrade (the real model's handshake takes ~300 ms).

Two runs in one invocation, each on a fresh server process and database:

- **before** — `GREETING_CACHE_SIZE=0`: the greeting is asked of the model once its
  socket is up and `session.updated` confirmed; the caller hears its first audio.
- **after** — `GREETING_CACHE_SIZE=256` with an empty cache folder: a warm-up call
  speaks the greeting live and fills the cache (the run waits for its file), then
  every call plays it from the cache the moment `start` arrives.

In each run, after a warm-up call, N calls ring at once (or evenly over `--over`
seconds) through the Twilio emulator: signed voice webhook, TwiML, signed upgrade,
`connected`, `start`, then silent 20 ms frames at real-time pace. Per call, on this
process's monotonic clock: `start` written to the socket → the first `media` frame
from the server received (what the caller would hear first). The calls stream for
`--hold` seconds after the last first frame, then all hang up.

Then (unless `--no-hit-rate`) the demo campaign's hit rate: bench/greeting_hits.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Spread
from bench.report import spread
from bench.service import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    INBOUND_NUMBER,
    ROOT,
    Service,
    base_env,
    database_prepare,
    database_url,
    machine_busy_seconds,
    wait_for_quiet,
)
from realtime.emulators import scenarios
from realtime.emulators.caller import SimulatedCaller
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.twilio_api import TwilioEmulator
from realtime.emulators.twilio_interpreter import StreamStart
from realtime.greeting_cache import FILE_SUFFIX

API_KEY = "sk-bench"
FIRST_FRAME_TIMEOUT_S = 10.0
TARGET_P99_MS = 20.0  # issue 14: N=50, 300 ms model handshake, cache on
CACHE_SIZE = 256


class StartCaller(SimulatedCaller):
    """A caller that notes when its `start` went out and its first media came in."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, time_scale=1.0, **kwargs)
        self.start_sent: float | None = None
        self.first_media: float | None = None
        self.got_media = asyncio.Event()

    async def _send_numbered(self, event: str, body: dict[str, Any]) -> None:
        if event == "start":
            self.start_sent = time.monotonic()
        await super()._send_numbered(event, body)

    async def _handle(self, message: dict[str, Any], now: float) -> None:
        if self.first_media is None and message.get("event") == "media":
            self.first_media = now
            self.got_media.set()
        await super()._handle(message, now)


@dataclass(slots=True)
class RunResult:
    mode: str  # "before" (cache off) or "after" (cache on)
    n: int
    over_s: float
    handshake_s: float
    start_to_first_frame_ms: Spread
    missing: int
    """Calls with no stream or no first frame within 10 s."""
    starts_within_ms: float
    """First `start` sent → last `start` sent: how concurrent the starts were."""
    warmup_cached: bool | None
    server_cpu_s: float
    bench_cpu_s_per_s: float
    others_cpu_s_per_s: float
    elapsed_s: float
    problems: list[str] = field(default_factory=list)


async def _call(
    emulator: TwilioEmulator,
    service: Service,
    callers: dict[str, StartCaller],
    index: int,
    at: float,
) -> tuple[str, StartCaller | None]:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    handle = await emulator.inbound_call(
        from_=f"+8190{index:08d}",
        to=INBOUND_NUMBER,
        voice_url=f"{service.base_url}/api/twilio/voice/incoming",
    )
    deadline = time.monotonic() + FIRST_FRAME_TIMEOUT_S
    while handle.sid not in callers and time.monotonic() < deadline:
        if handle.call.finished.is_set():
            return handle.sid, None
        await asyncio.sleep(0.005)
    caller = callers.get(handle.sid)
    if caller is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                caller.got_media.wait(), max(0.1, deadline - time.monotonic())
            )
    return handle.sid, caller


def _wait_for_entry(cache_dir: Path, within_s: float = 10.0) -> bool:
    """Whether a cache file shows up in `cache_dir` in time."""
    deadline = time.monotonic() + within_s
    while not any(cache_dir.glob(f"*{FILE_SUFFIX}")):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _hit_rate() -> dict[str, Any]:
    """bench/greeting_hits.py in its own process (it sets Django up)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, "bench/greeting_hits.py", "--json", out.name],
            cwd=ROOT,
            check=True,
        )
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
        return result


async def run_mode(
    mode: str,
    *,
    fake: FakeRealtimeServer,
    tmp: Path,
    n: int,
    over_s: float,
    hold_s: float,
    handshake_s: float,
) -> RunResult:
    cache_dir = tmp / f"greetings-{mode}"
    env = base_env(
        database=database_url(tmp / f"greeting-{mode}.sqlite3"),
        fake_url=fake.url,
        api_key=API_KEY,
    )
    env.update(
        GREETING_CACHE_SIZE="0" if mode == "before" else str(CACHE_SIZE),
        GREETING_CACHE_DIR=str(cache_dir),
    )
    await asyncio.to_thread(database_prepare, env)
    service = Service("uvicorn", env, tmp / "server.log")
    callers: dict[str, StartCaller] = {}

    def caller_for(start: StreamStart) -> StartCaller:
        caller = callers[start.call_sid] = StartCaller(
            start.url,
            parameters=start.parameters,
            auth_token=start.auth_token,
            account_sid=start.account_sid,
            call_sid=start.call_sid,
            stream_sid=start.stream_sid,
        )
        return caller

    problems: list[str] = []
    warmup_cached: bool | None = None
    try:
        await asyncio.to_thread(service.wait_ready)
        async with TwilioEmulator(
            ACCOUNT_SID, AUTH_TOKEN, caller_factory=caller_for
        ) as emulator:
            # Warm-up: lazy imports, first connections; fills the cache when on.
            sid, caller = await _call(emulator, service, callers, n, time.monotonic())
            if caller is None or caller.first_media is None:
                problems.append("warm-up call heard nothing")
            else:
                await caller.wait_until_quiet(600.0, timeout_s=20)
            await emulator.hang_up(sid)
            if mode == "after":
                warmup_cached = await asyncio.to_thread(_wait_for_entry, cache_dir)
                if not warmup_cached:
                    problems.append("the warm-up call's greeting was not cached")
            await asyncio.to_thread(service.wait_idle)
            await asyncio.to_thread(wait_for_quiet, max_busy_cores=0.3, timeout_s=20)
            callers.clear()
            cpu_before = service.cpu_seconds()
            busy_before = machine_busy_seconds()
            bench_before = time.process_time()
            began = time.monotonic()
            legs = await asyncio.gather(
                *(
                    _call(emulator, service, callers, i, began + i * over_s / n)
                    for i in range(n)
                )
            )
            await asyncio.sleep(hold_s)
            elapsed = time.monotonic() - began
            server_cpu = service.cpu_seconds() - cpu_before
            bench_cpu = time.process_time() - bench_before  # callers and the fake
            others = (
                machine_busy_seconds() - busy_before - server_cpu - bench_cpu
            ) / elapsed
            await asyncio.gather(
                *(emulator.hang_up(sid) for sid, _ in legs if sid),
                return_exceptions=True,
            )
        await asyncio.to_thread(service.wait_idle, 30.0)
    finally:
        await asyncio.to_thread(service.stop)
    values: list[float] = []
    starts = [c.start_sent for _, c in legs if c is not None and c.start_sent]
    missing = 0
    for index, (sid, caller) in enumerate(legs):
        if caller is None or caller.start_sent is None or caller.first_media is None:
            missing += 1
            problems.append(f"call {index} ({sid}): no first frame")
            continue
        values.append((caller.first_media - caller.start_sent) * 1000)
    return RunResult(
        mode=mode,
        n=n,
        over_s=over_s,
        handshake_s=handshake_s,
        start_to_first_frame_ms=Spread.of(values),
        missing=missing,
        starts_within_ms=round((max(starts) - min(starts)) * 1000, 1) if starts else 0,
        warmup_cached=warmup_cached,
        server_cpu_s=round(server_cpu, 2),
        bench_cpu_s_per_s=round(bench_cpu / elapsed, 2),
        others_cpu_s_per_s=round(others, 2),
        elapsed_s=round(elapsed, 2),
        problems=problems[:10],
    )


def report(results: list[RunResult]) -> str:
    lines = [
        "| run | greeting cache | N (over s) | starts within ms "
        "| start → first greeting frame ms p50 / p99 / max | missing "
        "| server CPU s over s | bench / others CPU s/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        cache = "off" if r.mode == "before" else f"on ({CACHE_SIZE})"
        lines.append(
            f"| {r.mode} | {cache} | {r.n} ({r.over_s:g}) | {r.starts_within_ms:.0f} "
            f"| {spread(r.start_to_first_frame_ms)} | {r.missing} "
            f"| {r.server_cpu_s:.2f} over {r.elapsed_s:.1f} "
            f"| {r.bench_cpu_s_per_s:.2f} / {r.others_cpu_s_per_s:.2f} |"
        )
    lines.append("")
    for r in results:
        if r.mode != "after":
            continue
        p99 = r.start_to_first_frame_ms.p99
        ok = r.missing == 0 and p99 <= TARGET_P99_MS
        lines.append(
            f"  {'PASS' if ok else 'FAIL'}  N={r.n} start → first greeting frame "
            f"p99 ≤ {TARGET_P99_MS:g} ms with a {r.handshake_s * 1000:g} ms model "
            f"handshake: {p99:.1f} ms ({r.n - r.missing}/{r.n} calls)"
        )
    for r in results:
        lines += [f"  {r.mode}: {problem}" for problem in r.problems]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="concurrent call starts")
    parser.add_argument("--over", type=float, default=0.0, help="ring over, s")
    parser.add_argument("--handshake", type=float, default=0.3, help="model, s")
    parser.add_argument("--hold", type=float, default=1.0, help="streaming after, s")
    parser.add_argument("--no-hit-rate", action="store_true")
    parser.add_argument("--json", type=Path)
    return parser


async def _main(args: argparse.Namespace) -> int:
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="greeting-bench-") as tmp:
        async with FakeRealtimeServer(
            scenarios.DEMO,
            api_key=API_KEY,
            record_events=False,
            handshake_delay_s=args.handshake,
        ) as fake:
            for mode in ("before", "after"):
                print(f"{mode}: N={args.n} …", end=" ", flush=True)
                result = await run_mode(
                    mode,
                    fake=fake,
                    tmp=Path(tmp),
                    n=args.n,
                    over_s=args.over,
                    hold_s=args.hold,
                    handshake_s=args.handshake,
                )
                results.append(result)
                print(f"p99 {result.start_to_first_frame_ms.p99:.1f} ms", flush=True)
    print()
    print(
        f"{os.cpu_count()} CPUs; one uvicorn process; SQLite; N calls ring "
        f"{'at once' if not args.over else f'evenly over {args.over:g} s'}; "
        f"model handshake {args.handshake * 1000:g} ms"
    )
    print(report(results))
    hits: dict[str, Any] | None = None
    if not args.no_hit_rate:
        print()
        hits = await asyncio.to_thread(_hit_rate)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"starts": [asdict(r) for r in results], "hit_rate": hits},
                indent=2,
                ensure_ascii=False,
            )
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
