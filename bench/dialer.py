"""Dialer benchmark (F-64): a campaign through real Celery processes and the emulator.

    .venv/bin/python bench/dialer.py                       # 1 000 contacts, 20, 5 cps
    .venv/bin/python bench/dialer.py --contacts 200 --json out.json
    REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python bench/dialer.py --kill

The service runs as a user runs it (`bench/service.py`: a migrated, seeded SQLite
file, uvicorn on a loopback port); the fake Realtime model and the Twilio emulator
run in this process; `celery beat` and `celery worker` are subprocesses that see
only environment variables. Far ends answer after `--ring` seconds (uniform) and
hang up `--talk` seconds later. Printed: max concurrency (at the emulator, and
contacts dialing/in-call in the database), max creates in any 1 s window, calls per
attempt (exactly once?), whether every contact ended final and the campaign
completed, and the dialer's CPU: worker processes' user+system time per create.

`--kill`: two workers on Redis (REDIS_URL), worker 0 SIGKILLed every `--kill-every`
seconds and started again; duplicates (an attempt with two calls, or a call no
attempt owns) and lost contacts (not final at the end) are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.service import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BIN,
    CLOCK_TICKS,
    ROOT,
    Service,
    base_env,
    database_prepare,
    database_url,
)
from realtime.emulators import scenarios
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.twilio_api import FarEnd, TwilioEmulator

API_KEY = "sk-bench-dialer"
FROM_NUMBER = "+815012340000"


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Workers:
    """`celery beat` and N `celery worker` subprocesses; their CPU time is kept
    across kills (read just before each SIGKILL, so a killed worker's last
    instants are lost: a slight undercount)."""

    def __init__(self, env: dict[str, str], tmp: Path, *, pool: str, concurrency: int):
        self.env, self.tmp, self.pool, self.concurrency = env, tmp, pool, concurrency
        self.procs: list[subprocess.Popen[bytes]] = []
        self.beat: subprocess.Popen[bytes] | None = None
        self.cpu_spent = 0.0
        self.kills = 0

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        return subprocess.Popen(
            [str(BIN / "celery"), "-A", "callcenter", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start(self, n: int) -> None:
        self.beat = self._spawn(
            "beat", "beat", "-l", "warning", "-s", str(self.tmp / "beat-schedule")
        )
        for i in range(n):
            self.procs.append(self._worker(i))

    def _worker(self, i: int) -> subprocess.Popen[bytes]:
        return self._spawn(
            f"worker{i}",
            "worker",
            "-P",
            self.pool,
            "-c",
            str(self.concurrency),
            "-l",
            "warning",
            "-n",
            f"bench{i}-{os.getpid()}@%h",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        )

    def kill_and_restart(self, i: int) -> None:
        proc = self.procs[i]
        if proc.poll() is None:
            self.cpu_spent += cpu_seconds(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            self.kills += 1
        self.procs[i] = self._worker(i)

    def worker_cpu(self) -> float:
        return self.cpu_spent + sum(
            cpu_seconds(p.pid) for p in self.procs if p.poll() is None
        )

    def beat_cpu(self) -> float:
        return (
            cpu_seconds(self.beat.pid)
            if self.beat and self.beat.poll() is None
            else 0.0
        )

    def stop(self) -> None:
        for proc in [*self.procs, self.beat]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in [*self.procs, self.beat]:
            if proc is None:
                continue
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + window:
            j += 1
        best = max(best, j - i)
    return best


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted(
        [(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals],
        key=lambda e: (e[0], e[1]),
    )
    live = best = 0
    for _, delta in events:
        live += delta
        best = max(best, live)
    return best


def seed_campaign(args: argparse.Namespace) -> tuple[int, list[str]]:
    """A running campaign of `args.contacts` contacts with the demo agent."""
    import datetime as dt

    from agents.models import AgentProfile
    from calls.campaigns.models import Campaign, Contact

    agent = AgentProfile.objects.order_by("pk").first()
    assert agent is not None, "seed_demo made no agent"
    campaign = Campaign.objects.create(
        organization=agent.organization,
        name="bench",
        agent=agent,
        from_number=FROM_NUMBER,
        days=[1, 2, 3, 4, 5, 6, 7],
        window_start=dt.time(0, 0),
        window_end=dt.time(23, 59, 59),
        max_concurrent=args.max_concurrent,
        calls_per_second=args.cps,
        max_attempts=1,
        retry_on=[],
        business_name="ベンチ株式会社",
        caller_name="山田",
        product="光回線",
        status=Campaign.Status.RUNNING,
    )
    phones = [f"+8190{20000000 + i}" for i in range(args.contacts)]
    Contact.objects.bulk_create(
        Contact(campaign=campaign, phone=p, name=f"顧客{i}")
        for i, p in enumerate(phones)
    )
    return campaign.pk, phones


def db_snapshot(campaign_id: int) -> dict[str, Any]:
    from calls.campaigns.models import Campaign, Contact

    counts = Counter(
        Contact.objects.filter(campaign_id=campaign_id).values_list("status", flat=True)
    )
    status = Campaign.objects.values_list("status", flat=True).get(pk=campaign_id)
    return {"status": status, "counts": dict(counts)}


def contact_ids_of(campaign_id: int) -> list[int]:
    from calls.campaigns.models import Contact

    return list(
        Contact.objects.filter(campaign_id=campaign_id)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def attempts_of(campaign_id: int) -> list[tuple[int, int, str | None, str, int]]:
    from calls.campaigns.models import Attempt

    return list(
        Attempt.objects.filter(contact__campaign_id=campaign_id).values_list(
            "pk", "contact_id", "call_sid", "result", "rest_tries"
        )
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-dialer-"))
    env = base_env(
        database=database_url(tmp / "db.sqlite3"), fake_url="", api_key=API_KEY
    )
    rng = random.Random(args.seed)
    ring = [float(v) for v in args.ring.split("-")]
    talk = [float(v) for v in args.talk.split("-")]
    async with FakeRealtimeServer(scenarios.DEMO, api_key=API_KEY) as fake:
        env["OPENAI_REALTIME_URL"] = fake.url
        await asyncio.to_thread(database_prepare, env)
        async with TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN) as emu:
            env.update(
                TWILIO_API_BASE_URL=emu.base_url,
                TWILIO_FROM_NUMBER=FROM_NUMBER,
                CELERY_FILESYSTEM_DIR=str(tmp / "celery"),
                CELERY_BROKER_URL=os.environ.get("REDIS_URL", "") if args.kill else "",
                DIALER_LEASE_SECONDS=str(args.lease),
            )
            for folder in ("queue", "control"):
                (tmp / "celery" / folder).mkdir(parents=True, exist_ok=True)
            service = Service("uvicorn", env, tmp / "service.log")
            await asyncio.to_thread(service.wait_ready)
            env["PUBLIC_BASE_URL"] = service.base_url
            os.environ.update(
                DATABASE_URL=env["DATABASE_URL"],
                LOG_LEVEL="WARNING",
                DJANGO_SETTINGS_MODULE="callcenter.settings",
            )
            import django

            django.setup()
            campaign_id, phones = await asyncio.to_thread(seed_campaign, args)
            for phone in phones:
                emu.far_ends[phone] = FarEnd(
                    "answer",
                    ring_s=rng.uniform(*ring),
                    hangup_after_s=rng.uniform(*talk),
                )
            workers = Workers(env, tmp, pool="threads", concurrency=args.concurrency)
            n_workers = 2 if args.kill else args.workers
            started = time.monotonic()
            workers.start(n_workers)
            db_live_max = 0
            last_kill = time.monotonic()
            try:
                while time.monotonic() - started < args.timeout:
                    await asyncio.sleep(1.0)
                    snap = await asyncio.to_thread(db_snapshot, campaign_id)
                    live = snap["counts"].get("dialing", 0) + snap["counts"].get(
                        "in-call", 0
                    )
                    db_live_max = max(db_live_max, live)
                    if args.kill and time.monotonic() - last_kill > args.kill_every:
                        workers.kill_and_restart(0)
                        last_kill = time.monotonic()
                    print(
                        f"{time.monotonic() - started:6.0f}s {snap['status']:<9} "
                        f"live {live:3d} calls {len(emu.calls):5d} {snap['counts']}",
                        flush=True,
                    )
                    if snap["status"] == "completed":
                        break
                elapsed = time.monotonic() - started
                worker_cpu, beat_cpu = workers.worker_cpu(), workers.beat_cpu()
            finally:
                workers.stop()
            await emu.wait_idle(timeout=max(talk) + 30)
            service.stop()
            snap = await asyncio.to_thread(db_snapshot, campaign_id)
            attempts = await asyncio.to_thread(attempts_of, campaign_id)
            contact_ids = await asyncio.to_thread(contact_ids_of, campaign_id)
    calls = list(emu.calls.values())
    creates = [c._created for c in calls]
    intervals = [(c._created, c._ended_at or time.monotonic()) for c in calls]
    sids = Counter(sid for _, _, sid, _, _ in attempts if sid)
    owned = set(sids)
    per_contact_calls = Counter(c.to for c in calls)
    per_contact_attempts = Counter(cid for _, cid, sid, _, _ in attempts if sid)
    phone_of = dict(zip(contact_ids, phones, strict=True))

    def per_contact_calls_by_id(contact_id: int) -> int:
        return per_contact_calls[phone_of[contact_id]]

    final = {"done", "failed", "skipped-dnc", "opted-out", "exhausted"}
    return {
        "contacts": args.contacts,
        "max_concurrent": args.max_concurrent,
        "calls_per_second": args.cps,
        "elapsed_s": round(elapsed, 1),
        "calls_at_emulator": len(calls),
        "attempts": len(attempts),
        "max_concurrency_emulator": max_overlap(intervals),
        "max_concurrency_db_sampled": db_live_max,
        "max_creates_in_1s": max_in_window(creates, 1.0),
        "duplicate_calls": sum(n - 1 for n in sids.values() if n > 1)
        + sum(1 for c in calls if c.sid not in owned),
        "contacts_calls_not_equal_placed_attempts": sum(
            1
            for cid, n in per_contact_attempts.items()
            if n != per_contact_calls_by_id(cid)
        ),
        "attempts_reconciled": sum(1 for *_, tries in attempts if tries > 1),
        "contacts_not_final": sum(
            n for status, n in snap["counts"].items() if status not in final
        ),
        "campaign_status": snap["status"],
        "worker_cpu_s": round(worker_cpu, 2),
        "beat_cpu_s": round(beat_cpu, 2),
        "worker_cpu_ms_per_dial": round(1000 * worker_cpu / max(len(calls), 1), 1),
        "worker_kills": workers.kills,
        "tmp": str(tmp),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=None)
    parser.add_argument("--max-concurrent", type=int, default=20)
    parser.add_argument("--cps", type=float, default=5.0)
    parser.add_argument("--ring", default="1-3", help="answer after, seconds")
    parser.add_argument("--talk", default="5-20", help="hang up after, seconds")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8, help="threads a worker")
    parser.add_argument("--lease", type=int, default=10, help="DIALER_LEASE_SECONDS")
    parser.add_argument(
        "--kill", action="store_true", help="two workers on Redis, one killed"
    )
    parser.add_argument("--kill-every", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.contacts is None:
        args.contacts = 200 if args.kill else 1000
    if args.kill and not os.environ.get("REDIS_URL"):
        parser.error("--kill needs REDIS_URL (two workers share Redis)")
    figures = asyncio.run(run(args))
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
