"""Serve the project on the embedded defaults (`make run`).

The ASGI server is uvicorn (SERVER=daphne picks Daphne; both serve the same app).
This process stays as a small supervisor of its children:

- the ASGI server;
- one Celery worker and Celery beat (F-62: the campaign dialer's tick and dials),
  unless `--no-celery`;
- without an OpenAI key (demo mode, F-45), first `python -m realtime.emulators.run`:
  the fake OpenAI Realtime server and the Twilio emulator (with its `/_emulator/`
  control API) on DEMO_REALTIME_PORT and DEMO_TWILIO_PORT. The server and the worker
  are pointed at them by URL only (OPENAI_REALTIME_URL, TWILIO_API_BASE_URL,
  PUBLIC_BASE_URL) and share one TWILIO_AUTH_TOKEN with the emulator, so that
  webhook and stream signatures validate and campaign dials reach the emulator.

Ctrl-C or SIGTERM stops them all; if one child exits, the others are stopped too. On
Linux the children also get SIGTERM if this process is killed outright. With
`--no-celery` and a key, the server replaces this process, as any server would.

uvicorn runs as `python -m realtime.server` (F-69): the SIGTERM this process forwards
drains its calls first, each handed over at its next quiet moment within
DRAIN_TIMEOUT after DRAIN_NOTICE, so the server gets that long (and a little more) to
exit. It runs in a
process group of its own, so a Ctrl-C in the terminal reaches it only through this
process, once; a second Ctrl-C here is forwarded too and stops it at once. Daphne
(SERVER=daphne) has no drain: SIGTERM closes its calls' streams at once, and they
resume on another process only if one answers Twilio (F-68).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from callcenter import env as E
from realtime.emulators.fake_summaries import PREFIX as FAKE_SUMMARIES_PREFIX
from realtime.uvicorn_ws import uvicorn_ws_args

log = logging.getLogger(__name__)

DEMO_BANNER = (
    "DEMO MODE: no OpenAI key — calls are answered by the built-in fake Realtime server"
)
STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
# After DRAIN_TIMEOUT, handing the last calls over and exiting (draining.py's grace).
DRAIN_EXIT_GRACE_S = 15.0


# The default is uvicorn: bench/relay.py measured it cheaper per call at every N and
# far steadier at 100 calls (see bench/README.md). SERVER=daphne keeps Daphne.
SERVERS = ("uvicorn", "daphne")


def _server_argv(host: str, port: int, server: str | None = None) -> list[str]:
    server = server or os.environ.get("SERVER", "uvicorn")
    if server not in SERVERS:
        raise ValueError(f"SERVER must be one of {', '.join(SERVERS)}, not {server!r}")
    if server == "daphne":
        binary = os.path.join(os.path.dirname(sys.executable), server)
        return [binary, "-b", host, "-p", str(port), "--proxy-headers", ASGI_APP]
    return [
        # uvicorn's command line, with a drain on SIGTERM (realtime/server.py).
        sys.executable,
        "-m",
        DRAINING_SERVER,
        ASGI_APP,
        "--host",
        host,
        "--port",
        str(port),
        *uvicorn_ws_args(),
        "--lifespan",
        "off",
        "--proxy-headers",
        "--no-server-header",
    ]


ASGI_APP = "callcenter.asgi:application"
DRAINING_SERVER = "realtime.server"


def _is_server(argv: list[str]) -> bool:
    return DRAINING_SERVER in argv[:3] or os.path.basename(argv[0]) in SERVERS


def celery_argvs() -> list[list[str]]:
    """One worker and beat, as the Procfile's `worker:` and `beat:` run them."""
    celery = os.path.join(os.path.dirname(sys.executable), "celery")
    schedule = settings.CELERY_FILESYSTEM_DIR / "beat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    return [
        # Threads: a dial task mostly waits (its create slot, Twilio's reply).
        [
            celery,
            "-A",
            "callcenter",
            "worker",
            "-P",
            "threads",
            "-c",
            "8",
            "-l",
            "INFO",
        ],
        [celery, "-A", "callcenter", "beat", "--loglevel", "INFO", "-s", str(schedule)],
    ]


def _local_host(host: str) -> str:
    """The address another local process uses to reach a server bound to `host`."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child if this process dies."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        import ctypes

        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    return preexec


def demo_environment(
    *,
    base: Mapping[str, str],
    host: str,
    port: int,
    realtime_port: int,
    twilio_port: int,
    responses_port: int = 8767,
    summaries_port: int | None = None,
) -> dict[str, str]:
    """The server's environment in demo mode: every external URL points at an emulator."""
    local = _local_host(host)
    token = settings.TWILIO_AUTH_TOKEN or secrets.token_hex(16)
    summaries = {}
    if summaries_port is not None:  # the fake Responses API (F-76): call summaries
        summaries["SUMMARY_OPENAI_BASE_URL"] = (
            f"http://127.0.0.1:{summaries_port}{FAKE_SUMMARIES_PREFIX}"
        )
    return {
        **base,
        **summaries,
        "OPENAI_API_KEY": "",  # keeps DEMO_MODE (and the pages' banner) on
        "OPENAI_REALTIME_URL": f"ws://127.0.0.1:{realtime_port}/v1/realtime",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{responses_port}/v1",
        "TWILIO_API_BASE_URL": f"http://127.0.0.1:{twilio_port}",
        "TWILIO_ACCOUNT_SID": settings.TWILIO_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": token,
        "PUBLIC_BASE_URL": f"http://{local}:{port}",
    }


def simulate_call_hint(*, host: str, port: int, twilio_port: int) -> str:
    """The simulate_call command line that reaches this server and its emulator."""
    command = ".venv/bin/python manage.py simulate_call"
    if (_local_host(host), port) != ("127.0.0.1", 8000):
        command += f" --url http://{_local_host(host)}:{port}"
    if twilio_port != 8766:
        command += f" --emulator http://127.0.0.1:{twilio_port}"
    return command


class Command(BaseCommand):
    help = (
        "Serve HTTP and WebSockets with uvicorn, or Daphne with SERVER=daphne (PORT and "
        "HOST from the environment); "
        "without an OpenAI key, also run the emulators (demo mode)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("PORT", "8000"))
        )
        parser.add_argument(
            "--no-celery",
            action="store_true",
            help="Serve without the Celery worker and beat (no campaign dialling).",
        )

    def handle(
        self, *args: Any, host: str, port: int, no_celery: bool, **options: Any
    ) -> None:
        self.stdout.write(
            f"Serving on http://{host}:{port}/ (admin: /admin/, login demo/demo)"
        )
        self.stdout.flush()
        self.celery = not no_celery
        if not settings.DEMO_MODE:
            argv = _server_argv(host, port)
            if not self.celery:
                os.execv(argv[0], argv)
            self._serve(argv, environment=dict(os.environ), children=[])
            return
        self._serve_demo(host, port)

    def _serve(
        self,
        server_argv: list[str],
        *,
        environment: dict[str, str],
        children: list[subprocess.Popen[bytes]],
        stop: _StopOnSignal | None = None,
    ) -> None:
        """Start the server (and worker and beat), supervise, stop them all."""
        stop = stop or _StopOnSignal()
        try:
            argvs = [server_argv, *(celery_argvs() if self.celery else [])]
            for argv in argvs:
                if stop.signum:
                    break
                children.append(spawn(argv, environment))
            supervise_or_fail(children, stop)
        finally:
            _stop_all(children, stop)
            stop.restore()

    # -- demo mode -----------------------------------------------------------------

    def _serve_demo(self, host: str, port: int) -> None:
        realtime_port = E.get_int("DEMO_REALTIME_PORT")
        twilio_port = E.get_int("DEMO_TWILIO_PORT")
        responses_port = E.get_int("DEMO_RESPONSES_PORT")
        summaries_port = E.get_int("DEMO_SUMMARIES_PORT")
        mcp_port = E.get_int("DEMO_MCP_PORT")
        for name, number in (
            ("DEMO_REALTIME_PORT", realtime_port),
            ("DEMO_TWILIO_PORT", twilio_port),
            ("DEMO_RESPONSES_PORT", responses_port),
            ("DEMO_SUMMARIES_PORT", summaries_port),
            ("DEMO_MCP_PORT", mcp_port),
        ):
            if not _port_free("127.0.0.1", number):
                raise CommandError(
                    f"Port {number} ({name}) is in use, perhaps by another `make run`. "
                    f"Stop it, or choose another port: {name}=<port> make run"
                )
        environment = demo_environment(
            base=os.environ,
            host=host,
            port=port,
            realtime_port=realtime_port,
            twilio_port=twilio_port,
            responses_port=responses_port,
            summaries_port=summaries_port,
        )
        line = "=" * len(DEMO_BANNER)
        self.stdout.write(self.style.WARNING(f"{line}\n{DEMO_BANNER}\n{line}"))
        self.stdout.write(
            f"Fake OpenAI Realtime: {environment['OPENAI_REALTIME_URL']}\n"
            f"Fake Responses API:   {environment['OPENAI_BASE_URL']} (legacy path)\n"
            f"Twilio emulator:      {environment['TWILIO_API_BASE_URL']} "
            "(control API under /_emulator/)\n"
            f"Fake Responses API:   {environment['SUMMARY_OPENAI_BASE_URL']}"
            " (call summaries)\n"
            f"Demo MCP server:      http://127.0.0.1:{mcp_port}/mcp (予約システム)\n"
            "Place a simulated call from another terminal: "
            + simulate_call_hint(host=host, port=port, twilio_port=twilio_port)
        )
        self.stdout.flush()
        log.warning(DEMO_BANNER)
        emulators = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "realtime.emulators.run",
                "--host",
                "127.0.0.1",
                "--realtime-port",
                str(realtime_port),
                "--twilio-port",
                str(twilio_port),
                "--responses-port",
                str(responses_port),
                "--summaries-port",
                str(summaries_port),
                "--mcp-port",
                str(mcp_port),
                "--scenario",
                "demo",
            ],
            cwd=settings.BASE_DIR,
            env=environment,  # the account SID and auth token go in here, not argv
            preexec_fn=_die_with_parent(),
        )
        children: list[subprocess.Popen[bytes]] = [emulators]
        stop = _StopOnSignal()
        try:
            self._wait_ready(
                emulators,
                [realtime_port, twilio_port, responses_port, summaries_port, mcp_port],
                stop,
            )
        except BaseException:
            _stop_all(children, stop)
            stop.restore()
            raise
        self._serve(
            _server_argv(host, port),
            environment=environment,
            children=children,
            stop=stop,
        )

    def _wait_ready(
        self, child: subprocess.Popen[bytes], ports: list[int], stop: _StopOnSignal
    ) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not all(_port_open("127.0.0.1", p) for p in ports):
            if stop.signum:
                return
            if child.poll() is not None:
                raise CommandError(
                    f"The emulators exited on start (status {child.returncode})."
                )
            if time.monotonic() > deadline:
                raise CommandError(
                    f"The emulators did not open ports {ports} within "
                    f"{STARTUP_TIMEOUT_S:.0f} s."
                )
            time.sleep(0.05)


class _StopOnSignal:
    """Turn SIGINT and SIGTERM into a flag (the children get SIGTERM from us)."""

    def __init__(self) -> None:
        self.signum = 0
        self.count = 0
        self._previous = {
            signum: signal.signal(signum, self._handle)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self.count += 1

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _name(child: subprocess.Popen[bytes]) -> str:
    argv = child.args if isinstance(child.args, list) else [str(child.args)]
    binary = os.path.basename(str(argv[0]))
    if DRAINING_SERVER in argv[:3]:
        return "uvicorn"
    if binary in SERVERS:
        return "Daphne" if binary == "daphne" else "uvicorn"
    if binary == "celery":
        return f"Celery {argv[3]}"
    if binary == "haproxy":
        return "HAProxy"
    return "The emulators"


def children_status(children: list[subprocess.Popen[bytes]]) -> str:
    return ", ".join(
        f"{_name(c)}={c.returncode}" for c in children if c.returncode is not None
    )


def _supervise(
    children: list[subprocess.Popen[bytes]],
    stop: _StopOnSignal,
    restart: Callable[[subprocess.Popen[bytes]], subprocess.Popen[bytes] | None]
    | None = None,
) -> str | None:
    """Wait for a signal (None) or for a child to exit (its name).

    A child that exits is replaced in `children` by what `restart` returns for it
    (`manage.py cluster` restarts its server processes); None means it stays dead.
    """
    while not stop.signum:
        for index, child in enumerate(children):
            if child.poll() is not None:
                replacement = restart(child) if restart is not None else None
                if replacement is None:
                    return _name(child)
                children[index] = replacement
        time.sleep(0.1)
    return None


def spawn(argv: list[str], environment: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start one child in the project folder; Linux SIGTERMs it if we die."""
    return subprocess.Popen(
        argv,
        cwd=settings.BASE_DIR,
        env=environment,
        preexec_fn=_die_with_parent(),
        # The server hears Ctrl-C from us only, as one SIGTERM: a drain, not the
        # terminal's SIGINT and then our SIGTERM.
        process_group=0 if _is_server(argv) else None,
    )


def supervise_or_fail(
    children: list[subprocess.Popen[bytes]],
    stop: _StopOnSignal,
    restart: Callable[[subprocess.Popen[bytes]], subprocess.Popen[bytes] | None]
    | None = None,
) -> None:
    """Supervise until a signal; a child that exits (and is not restarted) fails."""
    failed = _supervise(children, stop, restart)
    if failed is not None:
        raise CommandError(
            f"{failed} exited with status {children_status(children)}; "
            "stopped the rest."
        )


def _stop_timeout_s(child: subprocess.Popen[bytes]) -> float:
    """How long a child may take to exit after SIGTERM: the server drains first."""
    argv = child.args if isinstance(child.args, list) else [str(child.args)]
    if DRAINING_SERVER in argv[:3]:
        return (
            E.get_float("DRAIN_NOTICE")
            + E.get_float("DRAIN_TIMEOUT")
            + DRAIN_EXIT_GRACE_S
        )
    return STOP_TIMEOUT_S


def _stop_all(
    children: list[subprocess.Popen[bytes]], stop: _StopOnSignal | None = None
) -> None:
    """SIGTERM every live child, wait (the server: its drain), then SIGKILL what is
    left. A signal to us meanwhile is forwarded again (the server then stops at once).
    """
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    seen = stop.count if stop is not None else 0
    start = time.monotonic()
    for child in children:
        deadline = start + _stop_timeout_s(child)
        while child.poll() is None and time.monotonic() < deadline:
            if stop is not None and stop.count > seen:
                seen = stop.count
                for other in children:
                    if other.poll() is None:
                        other.send_signal(signal.SIGTERM)
            time.sleep(0.05)
        if child.poll() is None:
            child.kill()
            child.wait()
