"""The service under test, run as a user runs it: a server subprocess and its env.

`database_prepare()` migrates and seeds a throw-away SQLite file with the project's
own management commands; `Service` starts Daphne or uvicorn on a free loopback port
with environment variables only, and reads the process's CPU time and RSS from
/proc (Linux only).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx

from realtime.uvicorn_ws import PROTOCOL, uvicorn_ws_args

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = ("daphne", "uvicorn")
FLOOR = "bare"  # bench/bare_relay.py: the same stack with none of the service

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token"
INBOUND_NUMBER = "+815012345678"  # seed_demo's routed number


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine_busy_seconds() -> float:
    """CPU time all processes have used so far, summed over every core."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def wait_for_quiet(
    *, max_busy_cores: float, timeout_s: float, every_s: float = 1.0
) -> float:
    """Wait (at most `timeout_s`) until the machine is nearly idle; return the
    cores busy over the last `every_s`.

    Other work on a 2-core machine takes CPU from the server and the callers and
    shows up as latency; the benchmark waits for a lull, then says how busy the
    machine was anyway.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        before = machine_busy_seconds()
        time.sleep(every_s)
        busy = (machine_busy_seconds() - before) / every_s
        if busy <= max_busy_cores or time.monotonic() >= deadline:
            return busy


def database_url(path: Path) -> str:
    """SQLite with the options settings.py gives its default database, in a URL."""
    options = {
        "timeout": "20",
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    return f"sqlite:///{path}?{urlencode(options, quote_via=quote)}"


def base_env(*, database: str, fake_url: str, api_key: str) -> dict[str, str]:
    """Every variable the service reads that matters here; nothing from the shell's
    project settings leaks in (REDIS_URL, DEBUG …)."""
    env = {
        k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")
    }
    env.update(
        DATABASE_URL=database,
        DEBUG="false",
        REDIS_URL="",
        MAX_LIVE_CALLS="10000",
        USE_OPENAI_REALTIME="true",
        OPENAI_REALTIME_URL=fake_url,
        OPENAI_API_KEY=api_key,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_VALIDATE_SIGNATURES="true",
        # The instant greeting's cache (F-73) is off: these benchmarks measure the
        # relay and call setup, and their echo fake's one response never ends, so
        # a first call's greeting is never whole (bench/greeting.py turns it on).
        GREETING_CACHE_SIZE="0",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
        PYTHONUNBUFFERED="1",
    )
    return env


def database_prepare(env: Mapping[str, str]) -> None:
    """Migrate and seed the demo data into DATABASE_URL, as `make run` does."""
    for command in (["migrate", "--noinput"], ["seed_demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=dict(env),
            check=True,
            stdout=subprocess.DEVNULL,
        )


def server_command(kind: str, port: int) -> list[str]:
    """The command line a user would type for `kind` (see the Procfile)."""
    app = "callcenter.asgi:application"
    if kind == "daphne":
        return [
            str(BIN / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "--proxy-headers",
            app,
        ]
    if kind in ("uvicorn", FLOOR):
        return [
            str(BIN / "uvicorn"),
            app if kind == "uvicorn" else "bench.bare_relay:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *uvicorn_ws_args(os.environ.get("BENCH_UVICORN_WS", PROTOCOL)),
            "--loop",
            os.environ.get("BENCH_UVICORN_LOOP", "auto"),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    raise ValueError(f"unknown server {kind!r}; known: {', '.join((*SERVERS, FLOOR))}")


class Service:
    """One server process on 127.0.0.1:`port`; stop() terminates it."""

    def __init__(self, kind: str, env: Mapping[str, str], log_path: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._env = {**env, "PUBLIC_BASE_URL": self.base_url}
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            server_command(kind, self.port),
            cwd=ROOT,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Poll /api/health until it answers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}")
            try:
                httpx.get(f"{self.base_url}/api/health", timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not answer within {timeout_s}s")

    def wait_idle(self, timeout_s: float = 15.0) -> bool:
        """Wait until no call is bridged here (each has saved its end); False if
        some still are after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{self.base_url}/api/health", timeout=2.0).json()
                if health.get("live_calls_in_process") == 0:
                    return True
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        return False

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def rss_kib(self) -> int:
        """Resident set size of the server process (VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
