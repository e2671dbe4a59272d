"""Web-call benchmark: N concurrent browser calls (aiortc clients) through the service.

    .venv/bin/python bench/web_calls.py [--n 20] [--seconds 20] [--server uvicorn]
        [--json out.json] [--quiet-wait 30]

The service runs as a user runs it (a uvicorn or Daphne subprocess configured by
environment variables, a throw-away SQLite migrated and seeded by `manage.py`) with
WEBRTC_HOST_ADDRESSES=127.0.0.1. The fake OpenAI Realtime server (scenario
ECHO_FRAMES: every appended chunk comes straight back as output audio) runs in a
process of its own, the N clients in `--client-processes` more (one Python process
cannot drive 20 WebRTC peers and their model sessions without becoming the
bottleneck). Each client (`bench/web_client.py`) is an aiortc peer like the page on
the wire: it logs in once (demo/demo), POSTs its SDP offer to
/agents/<id>/try/offer/, sends a tone from its "microphone" at real time, counts
what comes back (one packet a second decoded for a level check) and reports its
playback position on the data channel every 100 ms.

1. ramp: calls are placed one after another; each waits for its model session;
2. steady window: all N talk for `--seconds`; the server's CPU time and RSS are
   read from /proc at both ends;
3. hang-up: every client sends {"type": "hangup"}; each call saves its media
   figures (event `webrtc-media`), read from the database afterwards.

Figures (all server-side, from the calls' own histograms, 0.5 ms bins):
- added latency in: an RTP packet's arrival → its `input_audio_buffer.append`
  written to the model socket;
- added latency out: AI audio from the model handed to the track (or, behind
  earlier audio, the moment that audio had played) → its RTP packet sent;
- frames lost: RTP sequence gaps seen by the server and by the clients, late or
  repeated packets dropped, and audio bytes the bridge forwarded that the model did
  not receive;
- CPU seconds per web call-minute and RSS per call (steady window, over the ramp's
  baseline).

Only loopback traffic; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import multiprocessing
import os
import re
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvloop

from bench.service import (
    Service,
    base_env,
    database_prepare,
    database_url,
    machine_busy_seconds,
    wait_for_quiet,
)
from bench.web_client import BenchWebClient
from realtime.emulators import scenarios
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.transport.aiortc_tuning import host_addresses_choose
from realtime.transport.webrtc_audio import LatencyHistogram

API_KEY = "sk-bench-web"
SETTLE_S = 1.0
QUIET_CORES = 0.3
TARGET_ADDED_P99_MS = 30.0
AGENT_NAME = "受付デモ"


@dataclass
class WebRunResult:
    n: int
    seconds: float
    server: str
    inbound_p50_ms: float | None = None
    inbound_p99_ms: float | None = None
    outbound_p50_ms: float | None = None
    outbound_p99_ms: float | None = None
    inbound_samples: int = 0
    outbound_samples: int = 0
    server_packets_missing: int = 0
    server_packets_dropped: int = 0
    client_packets_missing: int = 0
    bytes_forwarded_not_at_model: int = 0
    caller_frames_forwarded: int = 0
    ai_frames_out: int = 0
    client_frames_played: int = 0
    client_frames_checked: int = 0  # decoded for the level check (one a second)
    client_frames_loud: int = 0  # of those, with the tone's energy
    cpu_s_per_call_minute: float = 0.0
    rss_mib_per_call: float = 0.0
    rss_mib_before: float = 0.0
    rss_mib_steady: float = 0.0
    machine_busy_cores_before: float = 0.0
    load_generator_cores: float = 0.0
    server_cores: float = 0.0
    other_cores: float = 0.0
    calls_completed: int = 0
    notes: list[str] = field(default_factory=list)


def process_tree_cpu_seconds(pid: int, *, leave_out: int) -> float:
    """CPU time of ``pid`` and its children (the client processes and the fake
    model), from /proc; ``leave_out`` is the service (a child too)."""
    total = 0.0
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = path.read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        child_pid = int(path.parent.name)
        if child_pid == leave_out:
            continue
        if child_pid == pid or int(fields[1]) == pid:  # ppid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def start_workers(
    *, base_url: str, cookies: dict[str, str], agent_id: int, n: int, processes: int
) -> list[tuple[Any, Any]]:
    """Client processes (spawned), the N calls shared between them."""
    context = multiprocessing.get_context("spawn")
    workers = []
    counts = [
        n // processes + (1 if i < n % processes else 0) for i in range(processes)
    ]
    for count in counts:
        if not count:
            continue
        parent, child = context.Pipe()
        process = context.Process(
            target=client_worker,
            args=(base_url, cookies, agent_id, count, child),
            daemon=True,
        )
        process.start()
        workers.append((process, parent))
    return workers


def client_worker(
    base_url: str, cookies: dict[str, str], agent_id: int, count: int, conn: Any
) -> None:
    """One client process: place ``count`` calls, talk until told, hang up, report."""
    logging.disable(logging.INFO)
    host_addresses_choose(["127.0.0.1"])
    uvloop.run(_client_worker(base_url, cookies, agent_id, count, conn))


async def _client_worker(
    base_url: str, cookies: dict[str, str], agent_id: int, count: int, conn: Any
) -> None:
    http = httpx.AsyncClient(base_url=base_url, timeout=30, cookies=cookies)
    clients: list[BenchWebClient] = []
    call_ids: list[int] = []
    for _ in range(count):
        client = BenchWebClient()

        async def signal(sdp: str) -> str:
            reply = await http.post(
                f"/agents/{agent_id}/try/offer/",
                json={"type": "offer", "sdp": sdp},
                headers={"X-CSRFToken": cookies["csrftoken"]},
            )
            reply.raise_for_status()
            call_ids.append(int(reply.json()["call_id"]))
            return str(reply.json()["sdp"])

        await client.connect(signal)
        await client.wait_event("state", timeout_s=30)
        clients.append(client)
    conn.send(("ready", call_ids))
    await asyncio.to_thread(conn.recv)  # "hangup"
    ended_early = 0
    for client in clients:
        if client.channel.readyState == "open":
            client.send({"type": "hangup"})
        else:
            ended_early += 1
    await asyncio.sleep(1.0)
    stats = {
        "missing": sum(c.playhead.missing for c in clients),
        "played": sum(c.playhead.packets for c in clients),
        "checked": sum(c.playhead.checked for c in clients),
        "loud": sum(c.playhead.loud for c in clients),
        "ended_early": ended_early,
    }
    for client in clients:
        await client.close()
    await http.aclose()
    conn.send(("done", stats))


def start_fake_model() -> tuple[Any, Any]:
    """The fake Realtime server (ECHO_FRAMES) in a process of its own; it sends its
    URL, then, told to stop, the audio (ms) it received over every connection."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=fake_model_worker, args=(child,), daemon=True)
    process.start()
    return process, parent


def fake_model_worker(conn: Any) -> None:
    logging.disable(logging.INFO)
    uvloop.run(_fake_model_worker(conn))


async def _fake_model_worker(conn: Any) -> None:
    async with FakeRealtimeServer(
        scenarios.ECHO_FRAMES, api_key=API_KEY, record_events=False
    ) as fake:
        conn.send(fake.url)
        await asyncio.to_thread(conn.recv)
        conn.send(sum(c.input_audio_ms for c in fake.connections))


def log_in(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=30)


async def session_for(http: httpx.AsyncClient, agent_id: int) -> None:
    page = await http.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, "no CSRF token on the login page"
    reply = await http.post(
        "/accounts/login/",
        data={
            "username": "demo",
            "password": "demo",
            "csrfmiddlewaretoken": token.group(1),
        },
    )
    assert reply.status_code == 302, f"login failed: {reply.status_code}"
    page = await http.get(f"/agents/{agent_id}/try/")
    assert page.status_code == 200, f"try page: {page.status_code}"


def histogram_merge(events: list[dict[str, Any]], key: str) -> LatencyHistogram:
    merged = LatencyHistogram()
    for payload in events:
        for index, count in payload.get(key, {}).items():
            merged.counts[int(index)] += count
            merged.total += count
    return merged


async def run(args: argparse.Namespace) -> WebRunResult:
    result = WebRunResult(n=args.n, seconds=args.seconds, server=args.server)
    host_addresses_choose(["127.0.0.1"])
    workdir = Path(tempfile.mkdtemp(prefix="bench-web-"))
    db_path = workdir / "db.sqlite3"
    fake_process, fake_conn = start_fake_model()
    fake_url = await asyncio.to_thread(fake_conn.recv)
    env = base_env(database=database_url(db_path), fake_url=fake_url, api_key=API_KEY)
    env.update(
        WEBRTC_HOST_ADDRESSES="127.0.0.1",
        WEBRTC_ICE_SERVERS="[]",
        CALLCENTER_MEDIA_ROOT=str(workdir / "media"),
    )
    database_prepare(env)
    with sqlite3.connect(db_path) as db:
        ((agent_id,),) = db.execute(
            "select id from agents_agentprofile where name = ?", (AGENT_NAME,)
        ).fetchall()
        # The echo has no VAD, so no turns: the idle prompt and goodbye (30 s by
        # default) would end the first calls before the window closes.
        db.execute(
            "update agents_agentprofile set idle_timeout_s = 3600 where id = ?",
            (agent_id,),
        )
    service = Service(args.server, env, workdir / "service.log")
    try:
        service.wait_ready()
        result.machine_busy_cores_before = wait_for_quiet(
            max_busy_cores=QUIET_CORES, timeout_s=args.quiet_wait
        )
        http = log_in(service.base_url)
        await session_for(http, agent_id)
        cookies = dict(http.cookies.items())
        await http.aclose()
        rss_before = service.rss_kib()
        load_0 = process_tree_cpu_seconds(os.getpid(), leave_out=service.pid)
        workers = start_workers(
            base_url=service.base_url,
            cookies=cookies,
            agent_id=agent_id,
            n=args.n,
            processes=args.client_processes,
        )
        call_ids: list[int] = []
        for _process, conn in workers:
            kind, ids = await asyncio.to_thread(conn.recv)
            assert kind == "ready", kind
            call_ids += ids
        await asyncio.sleep(SETTLE_S)
        cpu_0, t_0 = service.cpu_seconds(), time.monotonic()
        load_0 = process_tree_cpu_seconds(os.getpid(), leave_out=service.pid)
        machine_0 = machine_busy_seconds()
        await asyncio.sleep(args.seconds)
        cpu_1, t_1 = service.cpu_seconds(), time.monotonic()
        load_1 = process_tree_cpu_seconds(os.getpid(), leave_out=service.pid)
        machine_1 = machine_busy_seconds()
        rss_steady = service.rss_kib()
        for _process, conn in workers:
            conn.send("hangup")
        for process, conn in workers:
            kind, stats = await asyncio.to_thread(conn.recv)
            assert kind == "done", kind
            result.client_packets_missing += stats["missing"]
            result.client_frames_played += stats["played"]
            result.client_frames_checked += stats["checked"]
            result.client_frames_loud += stats["loud"]
            if stats["ended_early"]:
                result.notes.append(
                    f"{stats['ended_early']} call(s) had ended before the hang-up"
                )
            await asyncio.to_thread(process.join, 10)
        await asyncio.to_thread(service.wait_idle, 30)
        window = t_1 - t_0
        result.load_generator_cores = round((load_1 - load_0) / window, 2)
        result.server_cores = round((cpu_1 - cpu_0) / window, 2)
        result.other_cores = round(
            (machine_1 - machine_0 - (load_1 - load_0) - (cpu_1 - cpu_0)) / window, 2
        )
    finally:
        service.stop()
    minutes = (t_1 - t_0) / 60
    result.cpu_s_per_call_minute = round((cpu_1 - cpu_0) / (args.n * minutes), 3)
    result.rss_mib_before = round(rss_before / 1024, 1)
    result.rss_mib_steady = round(rss_steady / 1024, 1)
    result.rss_mib_per_call = round((rss_steady - rss_before) / 1024 / args.n, 2)
    fake_conn.send("stop")
    model_input_ms = await asyncio.to_thread(fake_conn.recv)
    await asyncio.to_thread(fake_process.join, 10)
    with sqlite3.connect(db_path) as db:
        placeholders = ",".join("?" * len(call_ids))
        rows = db.execute(
            f"select payload from calls_callevent where type = 'webrtc-media'"
            f" and call_id in ({placeholders})",
            call_ids,
        ).fetchall()
        result.calls_completed = db.execute(
            f"select count(*) from calls_callsession where status = 'completed'"
            f" and id in ({placeholders})",
            call_ids,
        ).fetchone()[0]
    events = [json.loads(payload) for (payload,) in rows]
    if len(events) != args.n:
        result.notes.append(f"only {len(events)} of {args.n} calls saved figures")
    inbound = histogram_merge(events, "inbound_histogram")
    outbound = histogram_merge(events, "outbound_histogram")
    result.inbound_p50_ms = inbound.percentile(0.5)
    result.inbound_p99_ms = inbound.percentile(0.99)
    result.outbound_p50_ms = outbound.percentile(0.5)
    result.outbound_p99_ms = outbound.percentile(0.99)
    result.inbound_samples, result.outbound_samples = inbound.total, outbound.total
    result.server_packets_missing = sum(e["caller_packets_missing"] for e in events)
    result.server_packets_dropped = sum(e["caller_packets_dropped"] for e in events)
    result.caller_frames_forwarded = sum(e["caller_frames_forwarded"] for e in events)
    result.ai_frames_out = sum(e["ai_frames_out"] for e in events)
    forwarded_ms = sum(e["caller_bytes_forwarded"] for e in events) / 48
    result.bytes_forwarded_not_at_model = round((forwarded_ms - model_input_ms) * 48)
    return result


def report(result: WebRunResult) -> str:
    lost = (
        result.server_packets_missing
        + result.server_packets_dropped
        + result.client_packets_missing
        # At hang-up a packet in flight may be forwarded as the model socket
        # closes: up to two 20 ms frames a call are its end, not a loss.
        + max(result.bytes_forwarded_not_at_model - 2 * 960 * result.n, 0) // 960
    )
    worst = max(result.inbound_p99_ms or math.inf, result.outbound_p99_ms or math.inf)
    lines = [
        f"web calls: N={result.n}, {result.seconds:g} s steady, {result.server}",
        f"  machine busy before the run: {result.machine_busy_cores_before:.2f} cores;"
        f" load generator (clients + fake model) used"
        f" {result.load_generator_cores:.2f} cores in the window, the service"
        f" {result.server_cores:.2f}, other processes {result.other_cores:.2f}",
        f"  added latency in  (RTP in → append sent):  p50 {result.inbound_p50_ms} ms,"
        f" p99 {result.inbound_p99_ms} ms ({result.inbound_samples} packets)",
        f"  added latency out (delta in → RTP out):    p50 {result.outbound_p50_ms} ms,"
        f" p99 {result.outbound_p99_ms} ms ({result.outbound_samples} frames)",
        f"  frames lost: server RTP gaps {result.server_packets_missing},"
        f" late/repeated {result.server_packets_dropped}, client RTP gaps"
        f" {result.client_packets_missing}, bridge→model bytes missing"
        f" {result.bytes_forwarded_not_at_model}",
        f"  caller frames forwarded {result.caller_frames_forwarded},"
        f" AI frames sent {result.ai_frames_out},"
        f" frames the clients played {result.client_frames_played}"
        f" (loud: {result.client_frames_loud} of {result.client_frames_checked}"
        f" checked)",
        f"  CPU: {result.cpu_s_per_call_minute} s per web call-minute",
        f"  RSS: {result.rss_mib_per_call} MiB per call"
        f" ({result.rss_mib_before} MiB before the ramp,"
        f" {result.rss_mib_steady} MiB with {result.n} calls)",
        f"  calls completed: {result.calls_completed}/{result.n}",
        f"  verdict: added p99 ≤ {TARGET_ADDED_P99_MS:g} ms:"
        f" {'yes' if worst <= TARGET_ADDED_P99_MS else 'NO'};"
        f" zero frames lost: {'yes' if lost == 0 else 'NO'}",
        *[f"  note: {note}" for note in result.notes],
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quiet-wait", type=float, default=30.0)
    parser.add_argument(
        "--client-processes",
        type=int,
        default=4,
        help="processes the aiortc clients are spread over (the fake stays here)",
    )
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
