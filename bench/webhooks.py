"""Webhook delivery benchmark (F-77): 1 000 events to 3 endpoints through real Celery.

    .venv/bin/python bench/webhooks.py                      # 1 000 events, 3 endpoints
    .venv/bin/python bench/webhooks.py --events 200 --down-for 20 --json out.json
    REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python bench/webhooks.py

A throw-away SQLite file is migrated as `make run` does; `celery beat` and `celery
worker` subprocesses see only environment variables (ALLOW_PRIVATE_URLS=true for
the loopback receivers, the default back-off: 30 s, 60 s, 120 s …). Three receivers
run in this process (tests/notifications/receiver.py: each checks the signature
with docs/WEBHOOKS.md's recipe and de-duplicates by event id); the third is down —
nothing listens on its port — for the first `--down-for` seconds. This process
publishes the events (`event_publish`, as the signal receivers do) as fast as it
can, then waits until every delivery is final.

Printed: publish time; for each receiver the distinct events it accepted,
duplicates (the same id accepted twice), events lost (never accepted), requests
seen; when the up endpoints had everything and the delivery throughput (first
attempts of the two up endpoints per second, and every POST per second while the
queue was full); when the down endpoint came back and how long it took to catch
up; failed attempts; the workers' CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.service import BIN, CLOCK_TICKS, ROOT, database_prepare, database_url

SECRET = "whsec_bench_0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--down-for", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=420.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    env = {
        k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")
    }
    env.update(
        DATABASE_URL=database_url(tmp / "db.sqlite3"),
        DEBUG="false",
        REDIS_URL=os.environ.get("REDIS_URL", ""),
        CELERY_BROKER_URL="",
        CELERY_FILESYSTEM_DIR=str(tmp / "celery"),
        ALLOW_PRIVATE_URLS="true",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
        PYTHONUNBUFFERED="1",
    )
    database_prepare(env)
    # This process publishes: the same database and broker as the workers.
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "callcenter.settings"
    import django

    django.setup()
    from agents.models import Organization
    from notifications.models import EVENT_TYPES, Delivery, WebhookEndpoint
    from notifications.services import event_publish
    from tests.notifications.receiver import Receiver

    up = [Receiver(SECRET).start(), Receiver(SECRET).start()]
    down_port = free_port()
    down = Receiver(SECRET)
    urls = [r.url for r in up] + [f"http://127.0.0.1:{down_port}/hook"]
    org = Organization.objects.create(name="Webhook bench")
    for url in urls:
        WebhookEndpoint.objects.create(
            organization=org, url=url, secret=SECRET, events=list(EVENT_TYPES)
        )

    procs: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, *cmd: str) -> subprocess.Popen[bytes]:
        log = (tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(BIN / "celery"), "-A", "callcenter", *cmd],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    spawn("beat", "beat", "-l", "warning", "-s", str(tmp / "beat-schedule"))
    workers = [
        spawn(
            f"worker{i}",
            "worker",
            "-P",
            "threads",
            "-c",
            str(args.concurrency),
            "-l",
            "warning",
            "-n",
            f"webhooks{i}-{os.getpid()}@%h",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        )
        for i in range(args.workers)
    ]
    time.sleep(3)  # workers up

    started = time.time()
    ids: list[str] = []
    for n in range(args.events):
        event = event_publish(
            organization_id=org.pk,
            type=EVENT_TYPES[n % len(EVENT_TYPES)],
            data={"n": n, "summary": "ベンチマーク"},
        )
        assert event is not None
        ids.append(event.public_id)
    published = time.time() - started
    print(f"published {args.events} events × 3 endpoints in {published:.1f} s")

    came_back: float | None = None
    up_done: float | None = None
    deadline = started + args.timeout
    total = 3 * args.events
    worker_cpu = 0.0
    while time.time() < deadline:
        now = time.time()
        if came_back is None and now - started >= args.down_for:
            down.start(down_port)
            came_back = time.time()
            print(f"down endpoint back at {came_back - started:.1f} s")
        if up_done is None and all(len(r.seen_ids) >= args.events for r in up):
            up_done = time.time()
            print(f"up endpoints had every event at {up_done - started:.1f} s")
        final = Delivery.objects.exclude(state=Delivery.State.PENDING).count()
        if final >= total and came_back is not None:
            break
        time.sleep(0.5)
    worker_cpu = sum(cpu_seconds(p.pid) for p in workers)
    ended = time.time()
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    receivers = [*up, down]
    report: dict[str, Any] = {
        "events": args.events,
        "endpoints": 3,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "down_for_s": args.down_for,
        "publish_s": round(published, 2),
        "receivers": [],
        "worker_cpu_s": round(worker_cpu, 2),
    }
    for name, r in zip(("up-1", "up-2", "down"), receivers, strict=True):
        lost = [i for i in ids if i not in r.seen_ids]
        row = {
            "name": name,
            "accepted": len(r.seen_ids),
            "duplicates": r.duplicates,
            "lost": len(lost),
            "requests": len(r.requests),
            "unverified": sum(1 for q in r.requests if not q.verified),
        }
        report["receivers"].append(row)
        print(
            f"{name}: {row['accepted']} events accepted, {row['duplicates']} "
            f"duplicates, {row['lost']} lost, {row['requests']} requests, "
            f"{row['unverified']} unverified signatures"
        )
    states = {
        s: Delivery.objects.filter(state=s).count() for s in Delivery.State.values
    }
    attempts = sum(Delivery.objects.values_list("attempts", flat=True))
    report["deliveries"] = states
    report["attempts"] = attempts
    first_tries = [t for r in up for t in (q.at for q in r.requests)]
    if up_done is not None:
        span = max(first_tries) - min(first_tries)
        report["up_done_s"] = round(up_done - started, 1)
        report["throughput_per_s"] = round(2 * args.events / (up_done - started), 1)
        report["up_post_span_s"] = round(span, 1)
        print(
            f"throughput: {2 * args.events} deliveries to the up endpoints in "
            f"{up_done - started:.1f} s from the first publish = "
            f"{report['throughput_per_s']}/s (POSTs spread over {span:.1f} s)"
        )
    if came_back is not None and down.first_seen:
        caught_up = max(down.first_seen.values()) - came_back
        report["down_back_s"] = round(came_back - started, 1)
        report["catch_up_s"] = round(caught_up, 1)
        first = min(down.first_seen.values()) - came_back
        print(
            f"down endpoint: back at {came_back - started:.1f} s, first event "
            f"{first:.1f} s later, every event {caught_up:.1f} s after it came back"
        )
    print(f"deliveries: {states}; attempts {attempts} (failed {attempts - total})")
    print(
        f"worker CPU: {worker_cpu:.1f} s for {attempts} attempts "
        f"({1000 * worker_cpu / max(attempts, 1):.1f} ms each); "
        f"run {ended - started:.0f} s"
    )
    ok = (
        all(
            row["accepted"] == args.events
            and row["lost"] == 0
            and row["duplicates"] == 0
            for row in report["receivers"]
        )
        and report.get("catch_up_s", 1e9) <= 120
    )
    report["ok"] = ok
    print("OK" if ok else "TARGET MISSED", f"(logs in {tmp})")
    for r in receivers:
        r.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
