"""Supervise benchmark: phone calls with supervisors listening (F-75, issue 16).

    .venv/bin/python bench/supervise.py [--n 50] [--listeners 10] [--seconds 20]
        [--server uvicorn|daphne] [--barge] [--json out.json] [--quiet-wait 30]

One invocation, three runs of the same N probe callers (bench/relay.py's
machinery: signed webhook → TwiML → stream, 20 ms probe frames at real time, the
fake model echoing every frame, scenario ECHO_FRAMES, in this process):

1. direct: the callers against the direct echo, no service (the floor);
2. baseline: a fresh service process, the N calls, nobody listening;
3. listening: a fresh service process, the N calls, and ``--listeners`` aiortc
   supervisors (bench/supervise_client.py, a process of their own, logged in as
   the demo operator, which is given ``calls.supervise_call``) each listening to
   one call through ``POST /calls/<id>/supervise/offer/`` and pinging, without a
   microphone track (as the page until it barges). With ``--barge`` each sends a
   tone from its microphone and barges in through the supervision API
   (``/api/calls/<id>/supervise/``), so the frames go on to Twilio.

Figures:
- the calls' added p99 (round trip of a probe frame less the direct loop's) and
  CPU seconds per call-minute (the server process, steady window), baseline and
  listening side by side;
- the listen path: a Twilio media frame's arrival → its Opus packet's RTP out to
  a supervisor, from the calls' hubs (event ``supervise-media``, 0.5 ms bins);
- the barge path: a supervisor's RTP packet in → ``on_supervisor_audio``
  returned (with ``--barge``, after the μ-law frame went to Twilio), same event;
- what the supervisors received: caller and AI packets, and of the packets
  decoded for a level check (one a second), how many carried sound.

Targets: listen ≤ 20 ms p99, barge ≤ 20 ms p99, the calls' added p99 ≤ 6 ms and
≤ 0.5 CPU s per call-minute while 10 supervisors listen to 10 of 50 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.callers import ProbeCaller, frame_phase, inbound_call
from bench.figures import RunResult, Spread, added
from bench.relay import Leg, _stream, run_direct
from bench.report import spread
from bench.service import (
    AUTH_TOKEN,
    ROOT,
    Service,
    base_env,
    database_prepare,
    database_url,
    wait_for_quiet,
)
from bench.supervise_client import supervisor_worker
from bench.web_calls import histogram_merge
from realtime.emulators import scenarios
from realtime.emulators.fake_realtime import FakeRealtimeServer

API_KEY = "sk-bench-supervise"
QUIET_CORES = 0.3
TARGET_LISTEN_P99_MS = 20.0
TARGET_BARGE_P99_MS = 20.0
TARGET_ADDED_P99_MS = 6.0
TARGET_CPU_S_PER_CALL_MIN = 0.5

GRANT = """
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from agents.models import Operator
from calls.models import CallSession
permission, _ = Permission.objects.get_or_create(
    codename="supervise_call",
    content_type=ContentType.objects.get_for_model(CallSession),
    defaults={"name": "Can supervise live calls"},
)
Operator.objects.get(username="demo").user_permissions.add(permission)
"""


@dataclass
class SuperviseResult:
    n: int
    listeners: int
    seconds: float
    server: str
    direct: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    listening: dict[str, Any] = field(default_factory=dict)
    listen_p50_ms: float | None = None
    listen_p99_ms: float | None = None
    listen_samples: int = 0
    barged: bool = False  # the supervised calls hear their supervisor, not the echo
    barge_p50_ms: float | None = None
    barge_p99_ms: float | None = None
    barge_samples: int = 0
    ai_frames_skipped: int = 0
    supervisors: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _prepare(env: dict[str, str], db_path: Path) -> None:
    database_prepare(env)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", GRANT],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with sqlite3.connect(db_path) as db:
        # The echo has no VAD, so no turns: no idle prompt and goodbye mid-window.
        db.execute("update agents_agentprofile set idle_timeout_s = 3600")


def _call_id(db_path: Path, call_sid: str) -> int:
    with sqlite3.connect(db_path, timeout=10) as db:
        row = db.execute(
            "select id from calls_callsession where twilio_call_sid = ?", (call_sid,)
        ).fetchone()
    assert row, f"no call for {call_sid}"
    return int(row[0])


class Supervisors:
    """The supervisors' process, driven over a pipe (bench/supervise_client.py)."""

    def __init__(self, base_url: str, *, mic: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=supervisor_worker, args=(base_url, child, mic), daemon=True
        )
        self.process.start()

    async def ask(self, *command: Any) -> tuple[Any, ...]:
        self.conn.send(command)
        return tuple(await asyncio.to_thread(self.conn.recv))

    async def ready(self) -> None:
        reply = await asyncio.to_thread(self.conn.recv)
        assert reply[0] == "ready", reply

    async def stop(self) -> dict[str, int]:
        kind, stats = await self.ask("stop")
        assert kind == "done", kind
        await asyncio.to_thread(self.process.join, 10)
        return dict(stats)


async def run_calls(
    *,
    args: argparse.Namespace,
    listeners: int,
    env: dict[str, str],
    fake: FakeRealtimeServer,
    db_path: Path,
    result: SuperviseResult,
) -> tuple[RunResult, list[int]]:
    """N calls through a fresh service; ``listeners`` of them supervised."""
    service = Service(args.server, env, Path(env["BENCH_LOG"]))
    supervisors: Supervisors | None = None
    supervised: list[int] = []
    try:
        await asyncio.to_thread(service.wait_ready)
        if listeners:
            supervisors = Supervisors(service.base_url, mic=args.barge)
            await supervisors.ready()
        async with httpx.AsyncClient(timeout=30) as client:

            async def dial(index: int) -> Leg:
                call_sid, stream = await inbound_call(client, service.base_url, index)
                caller = ProbeCaller(
                    stream.url,
                    frame_phase=frame_phase(index),
                    parameters=stream.parameters,
                    auth_token=AUTH_TOKEN,
                    call_sid=call_sid,
                )
                slot = fake.connection_count
                dialled = time.monotonic()
                await caller.connect()
                leg = Leg(caller, dialled, time.monotonic())
                model = leg.model = await fake.wait_for_connection(slot, 10.0)
                await model.changed.wait_for(
                    lambda: model.session_updates > 0, 10.0, "session.update"
                )
                leg.model_ready_at = time.monotonic()
                if supervisors is not None and index < listeners:
                    await _supervise(supervisors, db_path, call_sid, args, result)
                    supervised.append(_call_id(db_path, call_sid))
                return leg

            _, run = await _stream(args.n, args.seconds, dial, service)
            if supervisors is not None:
                result.supervisors = await supervisors.stop()
            run.server_idle_after = await asyncio.to_thread(service.wait_idle, 30)
    finally:
        await asyncio.to_thread(service.stop)
    return run, supervised


async def _supervise(
    supervisors: Supervisors,
    db_path: Path,
    call_sid: str,
    args: argparse.Namespace,
    result: SuperviseResult,
) -> None:
    call_id = _call_id(db_path, call_sid)
    reply = await supervisors.ask("listen", call_id)
    if reply[0] != "listening":
        result.notes.append(f"call {call_id}: no listener ({reply[1]})")
        return
    if args.barge:
        _, status = await supervisors.ask("barge", call_id, reply[1])
        if status != 200:
            result.notes.append(f"call {call_id}: barge refused ({status})")


def _hub_figures(db_path: Path, call_ids: list[int], result: SuperviseResult) -> None:
    if not call_ids:
        return
    with sqlite3.connect(db_path) as db:
        marks = ",".join("?" * len(call_ids))
        rows = db.execute(
            "select payload from calls_callevent where type = 'supervise-media'"
            f" and call_id in ({marks})",
            call_ids,
        ).fetchall()
    events = [json.loads(payload) for (payload,) in rows]
    if len(events) != len(call_ids):
        result.notes.append(f"{len(events)} of {len(call_ids)} hubs saved figures")
    listen = histogram_merge(events, "listen_histogram")
    barge = histogram_merge(events, "barge_histogram")
    result.listen_p50_ms = listen.percentile(0.5)
    result.listen_p99_ms = listen.percentile(0.99)
    result.listen_samples = listen.total
    result.barge_p50_ms = barge.percentile(0.5)
    result.barge_p99_ms = barge.percentile(0.99)
    result.barge_samples = barge.total
    result.ai_frames_skipped = sum(e.get("ai_frames_skipped", 0) for e in events)


def _run_figures(run: RunResult, direct: RunResult) -> dict[str, Any]:
    return {
        "round_trip_ms": asdict(run.latency_ms),
        "added_ms": asdict(added(run.latency_ms, direct.latency_ms)),
        "frames_lost": run.frames_lost,
        "cpu_s_per_call_min": run.cpu_s_per_call_min,
        "others_cores": run.others_cpu_s_per_s,
        "idle_after": run.server_idle_after,
    }


async def run(args: argparse.Namespace) -> SuperviseResult:
    result = SuperviseResult(
        n=args.n,
        listeners=args.listeners,
        seconds=args.seconds,
        server=args.server,
        barged=args.barge,
    )
    with tempfile.TemporaryDirectory(prefix="supervise-bench-") as tmp:
        db_path = Path(tmp) / "bench.sqlite3"
        async with FakeRealtimeServer(
            scenarios.ECHO_FRAMES, api_key=API_KEY, record_events=False
        ) as fake:
            env = base_env(
                database=database_url(db_path), fake_url=fake.url, api_key=API_KEY
            )
            env.update(
                BENCH_LOG=str(Path(tmp) / "server.log"),
                WEBRTC_HOST_ADDRESSES="127.0.0.1",
                WEBRTC_ICE_SERVERS="[]",
            )
            print(f"preparing {db_path} …", flush=True)
            await asyncio.to_thread(_prepare, env, db_path)
            print(f"direct    N={args.n} …", flush=True)
            await asyncio.to_thread(
                wait_for_quiet, max_busy_cores=QUIET_CORES, timeout_s=args.quiet_wait
            )
            direct = await run_direct(args.n, args.seconds)
            print(f"baseline  N={args.n}, nobody listening …", flush=True)
            await asyncio.to_thread(
                wait_for_quiet, max_busy_cores=QUIET_CORES, timeout_s=args.quiet_wait
            )
            baseline, _ = await run_calls(
                args=args,
                listeners=0,
                env=env,
                fake=fake,
                db_path=db_path,
                result=result,
            )
            print(f"listening N={args.n}, {args.listeners} supervisors …", flush=True)
            await asyncio.to_thread(
                wait_for_quiet, max_busy_cores=QUIET_CORES, timeout_s=args.quiet_wait
            )
            listening, supervised = await run_calls(
                args=args,
                listeners=args.listeners,
                env=env,
                fake=fake,
                db_path=db_path,
                result=result,
            )
        _hub_figures(db_path, supervised, result)
    result.direct = {"round_trip_ms": asdict(direct.latency_ms)}
    result.baseline = _run_figures(baseline, direct)
    result.listening = _run_figures(listening, direct)
    return result


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(result: SuperviseResult) -> str:
    base, listen = result.baseline, result.listening
    sup = result.supervisors
    listen_added = listen["added_ms"]["p99"]
    cpu = listen["cpu_s_per_call_min"] or 0.0
    lines = [
        f"supervise: N={result.n} phone calls, {result.listeners} supervised,"
        f" {result.seconds:g} s steady, {result.server}; {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.2f}",
        f"  direct loop round trip p50/p99/max:"
        f" {_spread(result.direct['round_trip_ms'])} ms",
        f"  baseline (nobody listening): added p50/p99/max"
        f" {_spread(base['added_ms'])} ms, CPU {base['cpu_s_per_call_min']} s"
        f" per call-minute, lost {base['frames_lost']},"
        f" others {base['others_cores']:.2f} cores",
        f"  listening ({result.listeners} supervisors): added p50/p99/max"
        f" {_spread(listen['added_ms'])} ms, CPU {listen['cpu_s_per_call_min']} s"
        f" per call-minute, lost {listen['frames_lost']},"
        f" others {listen['others_cores']:.2f} cores",
        f"  listen path (Twilio frame in → RTP out): p50 {_ms(result.listen_p50_ms)}"
        f" ms, p99 {_ms(result.listen_p99_ms)} ms ({result.listen_samples} packets)",
        f"  barge path (RTP in → on_supervisor_audio returned):"
        f" p50 {_ms(result.barge_p50_ms)} ms, p99 {_ms(result.barge_p99_ms)} ms"
        f" ({result.barge_samples} frames)",
        f"  supervisors received: caller {sup.get('caller_packets', 0)} packets"
        f" (loud {sup.get('caller_loud', 0)} of {sup.get('caller_checked', 0)}"
        f" checked), AI {sup.get('ai_packets', 0)} (loud {sup.get('ai_loud', 0)}"
        f" of {sup.get('ai_checked', 0)}); mic sent {sup.get('mic_packets', 0)};"
        f" AI frames skipped to follow the marks {result.ai_frames_skipped}",
        f"  verdict: listen p99 ≤ {TARGET_LISTEN_P99_MS:g} ms:"
        f" {_yes((result.listen_p99_ms or 1e9) <= TARGET_LISTEN_P99_MS)};"
        f" barge p99 ≤ {TARGET_BARGE_P99_MS:g} ms:"
        f" {_barge_verdict(result)};"
        f" calls' added p99 ≤ {TARGET_ADDED_P99_MS:g} ms: "
        f"{_calls_verdict(result, listen_added)};"
        f" CPU ≤ {TARGET_CPU_S_PER_CALL_MIN:g} s/call-min:"
        f" {_yes(cpu <= TARGET_CPU_S_PER_CALL_MIN)}",
        *[f"  note: {note}" for note in result.notes],
    ]
    return "\n".join(lines)


def _spread(values: dict[str, float]) -> str:
    return spread(Spread(**values))


def _calls_verdict(result: SuperviseResult, added_p99: float) -> str:
    if result.barged:
        # A barged call's model is paused (no echo) and its caller hears the
        # supervisor: its probe frames are lost by design. Judge the calls without
        # --barge.
        return "not judged with --barge (barged calls' probes go unanswered)"
    return _yes(added_p99 <= TARGET_ADDED_P99_MS)


def _barge_verdict(result: SuperviseResult) -> str:
    if result.barge_p99_ms is None:
        return "not measured (--barge)"
    return _yes(result.barge_p99_ms <= TARGET_BARGE_P99_MS)


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/supervise.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=50, help="concurrent phone calls")
    parser.add_argument(
        "--listeners", type=int, default=10, help="supervisors, one per call"
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument(
        "--barge",
        action="store_true",
        help="each supervisor also barges in (needs the supervision API)",
    )
    parser.add_argument("--quiet-wait", type=float, default=30.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.listeners > args.n:
        parser.error("--listeners cannot exceed --n")
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(args))
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
