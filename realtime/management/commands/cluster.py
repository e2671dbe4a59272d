"""Serve the project as several server processes behind HAProxy (`make cluster`, F-70).

The scale-out recipe on one machine, as docs/DEPLOY.md runs it on several:

- PostgreSQL (`DATABASE_URL`) and Redis (`REDIS_URL`) are required: every process
  shares the calls, and control messages cross processes on the Redis channel layer.
  Without either the command says so and stops before touching anything.
- `migrate` and `seed_demo`, as `make run` does;
- `CLUSTER_SERVERS` server processes (the serve command's ASGI server) on
  `CLUSTER_SERVER_PORT`, `CLUSTER_SERVER_PORT + 1`, … of 127.0.0.1;
- once every one of them answers `/api/health`, HAProxy on `PORT`, its configuration
  rendered from `deploy/haproxy.cfg.template` into a temporary folder: WebSocket
  upgrade, long tunnel timeouts for media streams, health checks that take a
  `draining` process out, no stickiness (any process takes any webhook, stream,
  control or resume);
- the Celery worker and beat, and in demo mode the emulators, as `serve` runs them.

A server process that exits (killed, crashed, or drained after SIGTERM) is started
again on its port; its pid is printed each time (`server 1: pid … on http://…`), so a
rolling restart on one machine is `kill -TERM` of each printed pid in turn, waiting
for the next `server N: pid` line. HAProxy, the worker or beat exiting stops
everything, as in `serve`. Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import http.client
import os
import shutil
import string
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError, CommandParser

from callcenter import env as E
from realtime.management.commands import serve
from realtime.management.commands.serve import (
    _local_host,
    _port_free,
    _server_argv,
    _stop_all,
    _StopOnSignal,
    celery_argvs,
    children_status,
    spawn,
    supervise_or_fail,
)

TEMPLATE = Path(settings.BASE_DIR) / "deploy" / "haproxy.cfg.template"
HAPROXY_INSTALL = "sudo apt-get install -y haproxy"
CHECK_INTERVAL = "1s"
QUICK_EXIT_S = 5.0  # a server that dies sooner than this is restarted after a pause
RESTART_PAUSE_S = 1.0
STARTUP_TIMEOUT_S = 60.0  # several processes import Django at once on a busy machine


def haproxy_binary(name: str) -> str | None:
    """The HAProxy executable: HAPROXY as a path, or found on PATH or in /usr/sbin."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def haproxy_config(
    *,
    bind: str,
    servers: list[tuple[str, int]],
    check_host: str = "localhost",
    check_interval: str = CHECK_INTERVAL,
    template: Path = TEMPLATE,
) -> str:
    """deploy/haproxy.cfg.template with the frontend's address and the servers."""
    lines = "\n".join(
        f"    server s{index} {host}:{port}"
        for index, (host, port) in enumerate(servers, start=1)
    )
    backups = "\n".join(
        f"    server s{index}-backup {host}:{port} backup no-check"
        for index, (host, port) in enumerate(servers, start=1)
    )
    return string.Template(template.read_text()).substitute(
        bind=bind,
        servers=lines,
        backups=backups,
        check_host=check_host,
        check_interval=check_interval,
    )


def answers_health(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server on `port` answers /api/health at all (503 included)."""
    connection = http.client.HTTPConnection(host, port, timeout=2.0)
    try:
        connection.request("GET", "/api/health")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def required_environment(environ: dict[str, str]) -> list[str]:
    """What is missing or wrong in DATABASE_URL and REDIS_URL (empty when fine)."""
    problems = []
    database = environ.get("DATABASE_URL", "")
    if not database:
        problems.append(
            "DATABASE_URL is not set: the processes share one PostgreSQL database, "
            "e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/callcenter"
        )
    elif not database.startswith(("postgres://", "postgresql://", "pgsql://")):
        problems.append(
            f"DATABASE_URL must name PostgreSQL (postgres://…), not {database.split(':')[0]}"
        )
    if not environ.get("REDIS_URL", ""):
        problems.append(
            "REDIS_URL is not set: calls are controlled across processes through "
            "Redis, e.g. REDIS_URL=redis://127.0.0.1:6379/0"
        )
    return problems


class Command(serve.Command):
    help = (
        "Serve CLUSTER_SERVERS server processes behind HAProxy on PORT, with the "
        "Celery worker and beat (needs DATABASE_URL=postgres://… and REDIS_URL)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--servers", type=int, default=None, help="Default: CLUSTER_SERVERS."
        )
        parser.add_argument(
            "--server-port",
            type=int,
            default=None,
            help="Port of the first server process. Default: CLUSTER_SERVER_PORT, "
            "else PORT + 1.",
        )

    def handle(
        self,
        *args: Any,
        host: str,
        port: int,
        no_celery: bool,
        servers: int | None,
        server_port: int | None,
        **options: Any,
    ) -> None:
        problems = required_environment(dict(os.environ))
        haproxy = haproxy_binary(E.get_str("HAPROXY"))
        if haproxy is None:
            problems.append(
                f"HAProxy is not installed ({E.get_str('HAPROXY')} is not on PATH "
                f"or in /usr/sbin): {HAPROXY_INSTALL}, or set HAPROXY to its path"
            )
        if problems:
            raise CommandError("make cluster cannot start:\n- " + "\n- ".join(problems))
        assert haproxy is not None
        count = servers if servers is not None else E.get_int("CLUSTER_SERVERS")
        if count < 1:
            raise CommandError("CLUSTER_SERVERS must be at least 1")
        first = server_port or int(E.get_str("CLUSTER_SERVER_PORT") or port + 1)
        self.haproxy = haproxy
        self.proxy = (host, port)
        self.server_ports = list(range(first, first + count))
        for number in (port, *self.server_ports):
            if not _port_free(
                _local_host(host) if number == port else "127.0.0.1", number
            ):
                raise CommandError(
                    f"Port {number} is in use. Choose other ports: PORT=<port> "
                    "CLUSTER_SERVER_PORT=<port> make cluster"
                )
        self.celery = not no_celery
        call_command("migrate", interactive=False, verbosity=0)
        call_command("seed_demo")
        self.stdout.write(
            f"Cluster: HAProxy on http://{host}:{port}/ in front of "
            f"{count} server processes on 127.0.0.1:"
            + ",".join(str(p) for p in self.server_ports)
            + " (admin: /admin/, login demo/demo)"
        )
        self.stdout.flush()
        if settings.DEMO_MODE:
            self._serve_demo(host, port)
            return
        environment = dict(os.environ)
        environment.setdefault("PUBLIC_BASE_URL", f"http://{_local_host(host)}:{port}")
        self._serve([], environment=environment, children=[])

    def _serve(
        self,
        server_argv: list[str],
        *,
        environment: dict[str, str],
        children: list[subprocess.Popen[bytes]],
        stop: _StopOnSignal | None = None,
    ) -> None:
        """The servers, then HAProxy, then worker and beat; supervise; stop them all.

        `server_argv` (serve's one server) is not used: one server runs per port.
        """
        stop = stop or _StopOnSignal()
        workdir = Path(tempfile.mkdtemp(prefix="callcenter-cluster-"))
        self._environment = environment
        self._ports: dict[int, int] = {}  # pid → port of each server process
        self._started: dict[int, float] = {}
        try:
            for index, port in enumerate(self.server_ports, start=1):
                children.append(self._start_server(index, port))
            if not self._wait_servers(children, stop):
                return
            config = workdir / "haproxy.cfg"
            host, port = self.proxy
            config.write_text(
                haproxy_config(
                    bind=f"{host}:{port}",
                    servers=[("127.0.0.1", p) for p in self.server_ports],
                )
            )
            checked = subprocess.run(
                [self.haproxy, "-c", "-q", "-f", str(config)],
                capture_output=True,
                text=True,
            )
            if checked.returncode != 0:
                raise CommandError(
                    f"HAProxy refused its configuration:\n{checked.stdout}{checked.stderr}"
                )
            argvs = [
                [self.haproxy, "-db", "-f", str(config)],
                *(celery_argvs() if self.celery else []),
            ]
            children.extend(spawn(argv, environment) for argv in argvs)
            self.stdout.write(f"Cluster ready on http://{host}:{port}/")
            self.stdout.flush()
            supervise_or_fail(children, stop, restart=self._restart)
        finally:
            _stop_all(children, stop)
            stop.restore()
            shutil.rmtree(workdir, ignore_errors=True)

    def _start_server(self, index: int, port: int) -> subprocess.Popen[bytes]:
        argv = _server_argv("127.0.0.1", port)
        if os.path.basename(argv[0]) != "daphne":  # uvicorn's command line
            argv.append("--no-access-log")  # HAProxy's health checks, every second
        child = spawn(argv, self._environment)
        self._ports[child.pid] = port
        self._started[child.pid] = time.monotonic()
        self.stdout.write(f"server {index}: pid {child.pid} on http://127.0.0.1:{port}")
        self.stdout.flush()
        return child

    def _restart(
        self, child: subprocess.Popen[bytes]
    ) -> subprocess.Popen[bytes] | None:
        """A server process that exited is started again on its port."""
        port = self._ports.pop(child.pid, None)
        if port is None:
            return None  # HAProxy, the worker, beat or the emulators
        lived = time.monotonic() - self._started.pop(child.pid)
        index = self.server_ports.index(port) + 1
        self.stderr.write(
            f"server {index} (pid {child.pid}) exited with status {child.returncode} "
            f"after {lived:.1f} s; starting it again"
        )
        if lived < QUICK_EXIT_S:
            time.sleep(RESTART_PAUSE_S)
        return self._start_server(index, port)

    def _wait_servers(
        self, children: list[subprocess.Popen[bytes]], stop: _StopOnSignal
    ) -> bool:
        """Wait until every server answers /api/health; False on a signal."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        waiting = set(self.server_ports)
        while waiting:
            if stop.signum:
                return False
            for child in children:
                if child.poll() is not None:
                    raise CommandError(
                        f"A process exited on start ({children_status(children)})."
                    )
            waiting = {port for port in waiting if not answers_health(port)}
            if waiting and time.monotonic() > deadline:
                raise CommandError(
                    f"Server processes on {sorted(waiting)} did not answer "
                    f"/api/health within {STARTUP_TIMEOUT_S:.0f} s."
                )
            time.sleep(0.1)
        return True
