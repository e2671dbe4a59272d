"""`manage.py serve` as `make run` starts it: demo mode (F-45) and with a key.

Real processes on free ports, an empty SQLite file per test; each test takes a few
seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from realtime.call_setup import DEMO_API_KEY
from realtime.management.commands.serve import DEMO_BANNER

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 40.0  # a loaded 2-core machine takes a while to start four processes

pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …; comm may hold spaces, so split after the ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """True once the process has exited (a zombie waiting to be reaped counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_for(predicate, within_s: float = START_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def admin_login_ok(port: int) -> bool:
    try:
        return (
            httpx.get(f"http://127.0.0.1:{port}/admin/login/", timeout=1).status_code
            == 200
        )
    except httpx.TransportError:
        return False


class Served:
    """A `serve` process whose output is read as it comes (a full pipe would stop
    the children that write to it: the emulators, uvicorn, the worker)."""

    def __init__(self, process: subprocess.Popen[str], port: int, env: dict[str, str]):
        self.process = process
        self.port = port
        self.env = env
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def stop(self, signum: int = signal.SIGTERM) -> str:
        """Send `signum` (if still running); return everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait()

    def wait(self) -> str:
        self.process.wait(timeout=20)
        self._reader.join(timeout=10)
        return "".join(self.lines)


@pytest.fixture
def serve(tmp_path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*args: str, **env_overrides: str) -> Served:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "CELERY_FILESYSTEM_DIR": str(tmp_path / "celery"),
            "DEMO_REALTIME_PORT": str(free_port()),
            "DEMO_TWILIO_PORT": str(free_port()),
            "DEMO_RESPONSES_PORT": str(free_port()),
            "DEMO_SUMMARIES_PORT": str(free_port()),
            "DEMO_MCP_PORT": str(free_port()),
            "LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
            **env_overrides,
        }
        for name in ("PUBLIC_BASE_URL", "TWILIO_AUTH_TOKEN", "TWILIO_API_BASE_URL"):
            env.pop(name, None)
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            process_group=0,  # as a terminal's foreground job: Ctrl-C reaches the group
        )
        served = Served(process, port, env)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.wait()


def command_lines(pids: list[int]) -> list[str]:
    return [
        Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        for pid in pids
    ]


def test_demo_mode_runs_the_server_and_the_emulators_and_stops_them(serve):
    """No OpenAI key: four children (emulators, uvicorn, Celery worker and beat); the
    admin login page is served, the fake Realtime port speaks the Realtime protocol,
    the Twilio emulator's control API answers; SIGTERM stops the parent and all
    children."""
    served = serve(OPENAI_API_KEY="")
    assert wait_for(lambda: admin_login_ok(served.port)), served.stop()
    children = children_of(served.process.pid)
    assert len(children) == 4, children
    lines = command_lines(children)
    assert any("-A callcenter worker" in line for line in lines), lines
    assert any("-A callcenter beat" in line for line in lines), lines
    realtime = served.env["DEMO_REALTIME_PORT"]
    with connect(
        f"ws://127.0.0.1:{realtime}/v1/realtime?model=gpt-realtime",
        additional_headers={"Authorization": f"Bearer {DEMO_API_KEY}"},
        open_timeout=5,
    ) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
    twilio = served.env["DEMO_TWILIO_PORT"]
    reply = httpx.get(f"http://127.0.0.1:{twilio}/_emulator/calls", timeout=5)
    assert reply.json() == {"calls": []}
    # The fake Responses API that writes call summaries (F-76) answers too.
    summaries = served.env["DEMO_SUMMARIES_PORT"]
    reply = httpx.post(
        f"http://127.0.0.1:{summaries}/summaries/v1/responses",
        json={"model": "m", "input": "[customer] こんにちは"},
        headers={"Authorization": "Bearer demo"},
        timeout=5,
    )
    assert reply.status_code == 400  # no text.format: refused as the API would
    assert "json_schema" in reply.json()["error"]["message"]
    # The legacy path's fake text model (F-72) answers the Responses API.
    responses = served.env["DEMO_RESPONSES_PORT"]
    reply = httpx.post(
        f"http://127.0.0.1:{responses}/v1/responses",
        json={"model": "gpt-4.1-mini", "input": "こんにちは"},
        headers={"Authorization": f"Bearer {DEMO_API_KEY}"},
        timeout=5,
    )
    assert reply.status_code == 200 and reply.json()["object"] == "response"

    output = served.stop(signal.SIGTERM)
    assert served.process.returncode == 0, output
    assert all(gone(pid) for pid in children), output
    assert DEMO_BANNER in output
    assert f"WARNING realtime.management.commands.serve call=None {DEMO_BANNER}" in (
        output
    )
    assert f"fake OpenAI Realtime (scenario demo) at ws://127.0.0.1:{realtime}" in (
        output
    )
    assert "Uvicorn running on http://127.0.0.1:" in output  # the default server
    assert (
        f"fake OpenAI Responses API (call summaries) at http://127.0.0.1:{summaries}"
        in (output)
    )


def test_demo_mode_children_die_with_a_killed_parent(serve):
    """SIGKILL leaves no time to clean up: the children still go (PDEATHSIG)."""
    served = serve(OPENAI_API_KEY="")
    assert wait_for(lambda: admin_login_ok(served.port)), served.stop()
    children = children_of(served.process.pid)
    assert len(children) == 4, children
    served.stop(signal.SIGKILL)
    assert wait_for(lambda: all(gone(pid) for pid in children), within_s=10)


def test_demo_mode_refuses_a_busy_port(serve):
    """A demo port already taken (another `make run`): a clear error, no children."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = str(busy.getsockname()[1])
        served = serve(OPENAI_API_KEY="", DEMO_TWILIO_PORT=taken)
        output = served.wait()
    assert served.process.returncode != 0
    assert f"Port {taken} (DEMO_TWILIO_PORT) is in use" in output


def test_with_a_key_serve_runs_the_server_worker_and_beat(serve):
    """An OpenAI key: no banner, no emulators; the server, one Celery worker and beat,
    all stopped with the command."""
    served = serve(OPENAI_API_KEY="sk-test-not-demo")
    assert wait_for(lambda: admin_login_ok(served.port)), served.stop()
    children = children_of(served.process.pid)
    lines = command_lines(children)
    assert len(children) == 3, lines
    assert not any("realtime.emulators.run" in line for line in lines), lines
    assert any(
        "-m realtime.server callcenter.asgi:application" in line for line in lines
    )
    output = served.stop(signal.SIGTERM)
    assert served.process.returncode == 0, output
    assert all(gone(pid) for pid in children), output
    assert DEMO_BANNER not in output
    # The SIGTERM reached the server as a drain (F-69), not as uvicorn's own exit.
    assert "drained: 0 call(s) handed over" in output, output


def test_serve_forwards_ctrl_c_to_the_server_as_one_drain(serve):
    """Ctrl-C reaches the terminal's process group; the server is in a group of its
    own, so it hears one SIGTERM from `serve` and drains, instead of the terminal's
    SIGINT followed by a second signal that would make uvicorn cut the calls."""
    served = serve(OPENAI_API_KEY="sk-test-not-demo")
    assert wait_for(lambda: admin_login_ok(served.port)), served.stop()
    children = children_of(served.process.pid)
    server = [
        pid
        for pid, line in zip(children, command_lines(children), strict=True)
        if "realtime.server" in line
    ]
    assert len(server) == 1
    assert os.getpgid(server[0]) == server[0] != os.getpgid(served.process.pid)
    os.killpg(served.process.pid, signal.SIGINT)  # the terminal's Ctrl-C
    output = served.wait()
    assert served.process.returncode == 0, output
    assert output.count("SIGTERM: draining") == 1, output
    assert "drained: 0 call(s) handed over" in output, output


def test_no_celery_with_a_key_is_the_server_alone(serve):
    """`--no-celery` and a key: the server replaces the command."""
    served = serve("--no-celery", OPENAI_API_KEY="sk-test-not-demo")
    assert wait_for(lambda: admin_login_ok(served.port)), served.stop()
    assert children_of(served.process.pid) == []
    output = served.stop(signal.SIGTERM)
    assert DEMO_BANNER not in output


def manage(
    env: dict[str, str], *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.timeout(240)
def test_make_run_dials_the_demo_campaign_end_to_end(serve, tmp_path):
    """What `make run` then `simulate_campaign` do on a fresh machine: beat and the
    worker in `serve` dial five callees through the emulator (the filesystem
    broker, no server); the campaign completes with a booking, a machine, a busy
    number answered on retry and a refusal on the do-not-call list, and a second
    run refuses the number that said no at import."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_FILESYSTEM_DIR": str(tmp_path / "celery"),
        "LOG_FORMAT": "text",
    }
    for step in (("migrate", "--noinput"), ("seed_demo",)):
        done = manage(env, *step, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    served = serve(OPENAI_API_KEY="")
    assert wait_for(lambda: admin_login_ok(served.port)), served.stop()
    emulator = f"http://127.0.0.1:{served.env['DEMO_TWILIO_PORT']}"

    def simulate_campaign() -> str:
        done = manage(
            env,
            "simulate_campaign",
            "--emulator",
            emulator,
            "--timeout",
            "150",
            timeout=200,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output + served.stop()
        return output

    output = simulate_campaign()
    assert "Imported 5 contacts" in output
    assert "line 7: 03-0000 — invalid" in output
    assert "line 8: 090-1111-0001 — duplicate" in output
    assert "鈴木 一郎 090****0004 attempt 1: busy" in output
    assert "鈴木 一郎 090****0004 attempt 2: completed by human" in output
    assert "machine by machine_" in output
    assert "予約成立" in output
    assert "090****0005  call  " in output  # 田中 on the do-not-call list
    assert ": completed." in output
    output = simulate_campaign()
    assert "line 6: 090(1111)0005 — dnc" in output
    assert "田中 次郎" not in output.split("Results")[1].split("Contacts:")[0]
    served.stop(signal.SIGTERM)
