"""Real Celery processes for the dialer's crash and concurrency tests.

`CeleryProcesses` starts `celery -A callcenter beat` and `worker` subprocesses that
share the test's database (DATABASE_URL naming pytest-django's test database) and
a broker: a `fsatomic://` (filesystem) folder in a temporary directory, or Redis. Only the
processes it started are ever signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings

REPO = Path(__file__).resolve().parents[3]
CELERY = str(Path(sys.executable).with_name("celery"))


def database_url() -> str:
    """The test database as the worker must see it."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):  # Django's or ours (callcenter.db_sqlite3)
        return f"sqlite:///{db['NAME']}"
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or 'localhost'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


class CeleryProcesses:
    def __init__(self, tmp: Path, *, broker_url: str = "", **env: str) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "callcenter.settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker_url,
            "REDIS_URL": "",
            "CELERY_FILESYSTEM_DIR": str(tmp / "celery"),
            "TWILIO_ACCOUNT_SID": settings.TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
            "TWILIO_API_BASE_URL": settings.TWILIO_API_BASE_URL,
            "TWILIO_FROM_NUMBER": settings.TWILIO_FROM_NUMBER,
            "PUBLIC_BASE_URL": settings.PUBLIC_BASE_URL,
            "MAX_LIVE_CALLS": str(settings.MAX_LIVE_CALLS),
            "DIALER_LEASE_SECONDS": str(settings.DIALER_LEASE_SECONDS),
            "DIALER_TEST_HOOKS": "true",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            **env,
        }
        for folder in ("queue", "control"):
            (tmp / "celery" / folder).mkdir(parents=True, exist_ok=True)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.beat: subprocess.Popen[bytes] | None = None
        self._logs: list[Any] = []
        self.restarts = 0

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop)
        self._logs.append(log)
        return subprocess.Popen(
            [CELERY, "-A", "callcenter", *args],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_beat(self) -> None:
        self.beat = self._spawn(
            "beat", "beat", "-l", "warning", "-s", str(self.tmp / "beat-schedule")
        )

    def start_worker(
        self, index: int = 0, *, pool: str = "solo"
    ) -> subprocess.Popen[bytes]:
        worker = self._spawn(
            f"worker{index}",
            "worker",
            "-P",
            pool,
            "-l",
            "warning",
            "-n",
            f"dialer{index}-{os.getpid()}@%h",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        )
        if index < len(self.workers):
            self.workers[index] = worker
            self.restarts += 1
        else:
            self.workers.append(worker)
        return worker

    def kill_worker(self, index: int) -> None:
        worker = self.workers[index]
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()

    def restart_dead_workers(self) -> int:
        """Start again every worker that exited (a crash hook SIGKILLed it)."""
        restarted = 0
        for index, worker in enumerate(list(self.workers)):
            if worker.poll() is not None:
                self.start_worker(index)
                restarted += 1
        return restarted

    def stop(self) -> None:
        for proc in [*self.workers, self.beat]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in [*self.workers, self.beat]:
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in self._logs:
            log.close()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp.glob("*.log"))
        )
