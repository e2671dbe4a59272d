"""`make cluster` as the failover benchmarks run it: a subprocess and what it prints.

`fresh_database()` makes a throw-away PostgreSQL database on DATABASE_URL's server;
`ClusterService` runs `manage.py cluster --no-celery` (which migrates and seeds it,
as `make cluster` does) with environment variables only, reads the pid and URL of
each server process from its output, and signals them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from bench.service import ROOT, free_port

SERVER_LINE = re.compile(r"^server (\d+): pid (\d+) on (http://\S+)$", re.M)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new database on `server_url`'s PostgreSQL server, dropped afterwards."""
    import psycopg

    parts = urlsplit(server_url)
    name = f"bench_cluster_{os.getpid()}_{secrets.token_hex(3)}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port_run(count: int) -> int:
    """The first of `count` consecutive loopback ports that were free a moment ago
    (the cluster's server processes take CLUSTER_SERVER_PORT and the next ones)."""
    while True:
        first = free_port()
        if first + count > 65535:
            continue
        probes = []
        try:
            for port in range(first + 1, first + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return first


class ClusterService:
    """`manage.py cluster` on a free port; its output goes to `log_path`."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.server_port = free_port_run(2)
        while self.server_port - 1 <= self.port <= self.server_port + 2:
            self.server_port = free_port_run(2)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**env, "PUBLIC_BASE_URL": self.url}
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "cluster",
                    "--no-celery",
                    "--port",
                    str(self.port),
                    "--server-port",
                    str(self.server_port),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def servers(self) -> dict[int, tuple[int, str]]:
        """Server number → (pid, url) of its latest start."""
        return {
            int(n): (int(pid), url) for n, pid, url in SERVER_LINE.findall(self.log())
        }

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Wait until the proxy answers /api/health."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"make cluster exited:\n{self.log()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/health", timeout=2).is_success:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"make cluster not ready in {timeout_s}s\n{self.log()}")

    def health(self, number: int) -> dict[str, object] | None:
        """Server `number`'s own /api/health body, None if it does not answer."""
        _pid, url = self.servers()[number]
        try:
            return dict(httpx.get(f"{url}/api/health", timeout=3).json())
        except (httpx.HTTPError, ValueError):
            return None

    def wait_replaced(self, number: int, old_pid: int, timeout_s: float) -> float:
        """Wait until server `number` runs again under a new pid and answers
        /api/health `ok`; return when it did (time.monotonic())."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pid, _url = self.servers()[number]
            if pid != old_pid:
                health = self.health(number)
                if health is not None and health.get("status") == "ok":
                    return time.monotonic()
            time.sleep(0.05)
        raise RuntimeError(f"server {number} not back within {timeout_s}s")

    def signal_server(self, number: int, signum: int) -> int:
        pid, _url = self.servers()[number]
        os.kill(pid, signum)
        return pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
