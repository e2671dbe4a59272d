"""SIGTERM on a real server process (F-69): `python -m realtime.server`, the Procfile's
`web:`, drains its calls before uvicorn closes any socket.

The emulators run in this test's event loop; the server processes share a migrated
temporary SQLite file. For the resume, a small health-routed TCP proxy stands in for
the balancer in front of two processes: it sends each new connection to the first
process whose `/api/health` answers 200, so once A drains, Twilio's `<Connect
action>` and the fresh stream reach B.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from realtime.emulators import scenarios
from realtime.emulators.caller import Pause
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.twilio_api import TwilioEmulator
from tests.realtime.flow.conftest import (
    ACCOUNT_SID,
    API_KEY,
    AUTH_TOKEN,
    CALLER_NUMBER,
    INBOUND_NUMBER,
    fast_caller,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.timeout(90)]

# 8 s of greeting audio, heard in about 2 s by the 4×-speed caller.
LONG_GREETING = scenarios.Scenario(name="long_greeting", reply_ms=8000)

SEED = """
from agents.models import AgentProfile, Organization, PhoneNumber
org = Organization.objects.create(name="ドレイン")
agent = AgentProfile.objects.create(
    organization=org,
    name="受付",
    instructions_template="{{company_name}}の受付です。",
    greeting_template="お電話ありがとうございます。{{company_name}}です。",
    vad_silence_duration_ms=300,
)
PhoneNumber.objects.create(organization=org, number="%s", agent=agent)
"""


def test_the_pinned_uvicorn_is_the_one_installed():
    """DrainingServer overrides uvicorn.Server.handle_exit and serve; the tests below
    prove it against this version: an upgrade must go through them again."""
    pinned = re.search(
        r"^uvicorn==(\S+)$", (REPO / "requirements.txt").read_text(), re.M
    )
    assert pinned is not None
    assert uvicorn.__version__ == pinned.group(1)


def procfile_web(port: int) -> list[str]:
    """The Procfile's `web:` command, on 127.0.0.1:`port`, run by this interpreter."""
    line = next(
        line
        for line in (REPO / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )
    argv = shlex.split(line.removeprefix("web:").replace("$PORT", str(port)))
    assert argv[:3] == ["python", "-m", "realtime.server"], argv
    argv[0] = sys.executable
    argv[argv.index("--host") + 1] = "127.0.0.1"
    return argv


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """One server process as the Procfile's `web:` runs it (or plain uvicorn)."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path, *, plain=False):
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{name}.log"
        self.env = env
        self.plain = plain
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = procfile_web(self.port)
        if self.plain:  # the same flags, uvicorn's own server
            argv[:3] = [str(Path(sys.executable).with_name("uvicorn"))]
        self.process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self) -> None:
        assert self.process is not None
        async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
            for _ in range(300):
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/api/health")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} never served:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill()
        self.process.wait()


class HealthRoutedProxy:
    """A TCP balancer: each new connection goes to the first backend whose health
    check (polled every 100 ms) answered 200."""

    def __init__(self, backends: list[ServerProcess]) -> None:
        self.backends = backends
        self.healthy: list[ServerProcess] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._poller: asyncio.Task[None] | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> HealthRoutedProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._poller = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._poller is not None
        self._poller.cancel()
        self._server.close()
        for task in list(self._pipes):
            task.cancel()

    async def _poll(self) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=0.5) as client:
            while True:
                healthy = []
                for backend in self.backends:
                    with contextlib.suppress(httpx.HTTPError):
                        reply = await client.get(f"{backend.url}/api/health")
                        if reply.status_code == 200:
                            healthy.append(backend)
                self.healthy = healthy
                await asyncio.sleep(0.1)

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if not self.healthy:
            writer.close()
            return
        target = self.healthy[0]
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target.port)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()


class Deployment:
    def __init__(self, workdir: Path, env: dict[str, str], twilio, fake) -> None:
        self.workdir, self.env, self.twilio, self.fake = workdir, env, twilio, fake
        self.servers: list[ServerProcess] = []

    def server(self, name: str, *, plain: bool = False, **env: str) -> ServerProcess:
        server = ServerProcess(name, {**self.env, **env}, self.workdir, plain=plain)
        self.servers.append(server)
        return server

    async def ring(self, public_url: str):
        handle = await self.twilio.inbound_call(
            from_=CALLER_NUMBER,
            to=INBOUND_NUMBER,
            voice_url=f"{public_url}/api/twilio/voice/incoming",
            caller_script=[Pause(ms=120_000)],
            status_callback=f"{public_url}/api/twilio/status",
        )
        caller = await handle.wait_stream(timeout=15)
        return handle, caller


@pytest.fixture
async def deployment() -> AsyncIterator[Deployment]:
    async with _deployment(redis_url="") as deployment:
        yield deployment


@contextlib.asynccontextmanager
async def _deployment(*, redis_url: str) -> AsyncIterator[Deployment]:
    workdir = Path(tempfile.mkdtemp(prefix="drain-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "callcenter.settings",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": f"sqlite:///{workdir / 'shared.sqlite3'}",
        "REDIS_URL": redis_url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "OPENAI_API_KEY": API_KEY,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": INBOUND_NUMBER,
        "TWILIO_VALIDATE_SIGNATURES": "true",
        "USE_OPENAI_REALTIME": "true",
        "LOG_FORMAT": "text",
        "DRAIN_TIMEOUT": "20",
        # The health-routed proxy below checks every 100 ms.
        "DRAIN_NOTICE": "0.5",
    }
    deployment: Deployment | None = None
    try:
        async with (
            FakeRealtimeServer(LONG_GREETING, api_key=API_KEY) as fake,
            TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN, caller_factory=fast_caller) as tw,
        ):
            env["OPENAI_REALTIME_URL"] = fake.url
            env["TWILIO_API_BASE_URL"] = tw.base_url
            for args in (
                ["migrate", "--noinput"],
                ["shell", "--no-imports", "-c", SEED % INBOUND_NUMBER],
            ):
                done = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, str(REPO / "manage.py"), *args],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert done.returncode == 0, done.stdout + done.stderr
            deployment = Deployment(workdir, env, tw, fake)
            yield deployment
    finally:
        if deployment is not None:
            for server in deployment.servers:
                server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def _health(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
        reply = await client.get(f"{url}/api/health")
        return reply.status_code, reply.json()


async def _exited(process: subprocess.Popen[bytes], within_s: float) -> int | None:
    for _ in range(int(within_s / 0.05)):
        if process.poll() is not None:
            return process.returncode
        await asyncio.sleep(0.05)
    return None


async def test_sigterm_drains_the_call_then_the_process_exits(deployment):
    """SIGTERM mid-greeting: health answers 503 draining at once; the call is handed
    over once the greeting has been heard (every mark echoed), with a clean close
    (1000, not uvicorn's 1012); then the process exits with status 0."""
    a = deployment.server("A")
    a.env["PUBLIC_BASE_URL"] = a.url
    a.start()
    await a.wait_ready()
    _handle, caller = await deployment.ring(a.url)
    await caller.wait_for_audio(ms=500, timeout_s=20)
    assert caller.heard_ms < 6000
    assert a.process is not None

    a.process.send_signal(signal.SIGTERM)
    sent = time.monotonic()

    async def draining() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            code, body = await _health(a.url)
            return code == 503 and body["status"] == "draining"
        return False

    assert await wait_until(draining, within_s=2), a.log()
    health_ms = (time.monotonic() - sent) * 1000
    assert not caller.closed  # still talking: the greeting plays on

    await caller.wait_closed(timeout_s=20)
    assert caller.closed_by_server is not None
    assert caller.closed_by_server[0] == 1000, (caller.closed_by_server, a.log())
    marks = [
        r
        for r in caller.received
        if isinstance(r.message, dict) and r.message.get("event") == "mark"
    ]
    assert marks and len(caller.marks_echoed) == len(marks)
    assert await _exited(a.process, within_s=15) == 0, a.log()
    log = a.log()
    assert "drained: 1 call(s) handed over (1 at a quiet moment" in log, log
    print(f"health 503 draining {health_ms:.0f} ms after SIGTERM")


async def test_plain_uvicorn_would_cut_the_call_with_1012(deployment):
    """Why the server is ours: plain uvicorn answers the same SIGTERM by closing the
    live stream at once with 1012, mid-greeting."""
    plain = deployment.server("plain", plain=True)
    plain.env["PUBLIC_BASE_URL"] = plain.url
    plain.start()
    await plain.wait_ready()
    _handle, caller = await deployment.ring(plain.url)
    await caller.wait_for_audio(ms=500, timeout_s=20)
    assert plain.process is not None
    plain.process.send_signal(signal.SIGTERM)
    await caller.wait_closed(timeout_s=10)
    assert caller.closed_by_server is not None
    assert caller.closed_by_server[0] == 1012
    assert caller.heard_ms < 7000


async def test_a_drained_call_resumes_on_another_process(deployment):
    """Two processes behind a health-routed proxy; the call streams into A. SIGTERM A:
    A answers 503 draining, the proxy sends new connections to B, A hands the call
    over at its quiet moment; Twilio's `<Connect action>` reaches B, which answers a
    fresh stream; B's bridge claims it (stream-resumed) and the caller hears it."""
    a = deployment.server("A")
    b = deployment.server("B")
    async with HealthRoutedProxy([a, b]) as proxy:
        for server in (a, b):
            server.env["PUBLIC_BASE_URL"] = proxy.url
            server.start()
        await asyncio.gather(a.wait_ready(), b.wait_ready())

        async def both_healthy() -> bool:
            return len(proxy.healthy) == 2

        assert await wait_until(both_healthy, within_s=5)
        handle, caller = await deployment.ring(proxy.url)
        await caller.wait_for_audio(ms=500, timeout_s=20)
        assert a.process is not None and b.process is not None
        assert (await _health(a.url))[1]["live_calls_in_process"] == 1

        a.process.send_signal(signal.SIGTERM)
        await caller.wait_closed(timeout_s=20)
        assert caller.closed_by_server is not None
        assert caller.closed_by_server[0] == 1000
        closed_at = time.monotonic()

        async def second_stream() -> bool:
            return len(handle.call.streams) >= 2

        assert await wait_until(second_stream, within_s=15), b.log()
        resumed = handle.call.streams[1]
        await resumed.wait_for_audio(ms=100, timeout_s=20)
        gap_ms = (time.monotonic() - closed_at) * 1000
        assert await _exited(a.process, within_s=15) == 0, a.log()
        assert b.process.poll() is None

        code, body = await _health(b.url)
        assert code == 200 and body["live_calls_in_process"] == 1
        events = await _call_events(caller.parameters["call_id"], deployment)
        assert "stream-handover" in events and "stream-resumed" in events, events
        assert events.index("stream-handover") < events.index("stream-resumed")
        print(f"drained call streaming again on B {gap_ms:.0f} ms after A closed it")


async def _call_events(call_id: str, deployment) -> list[str]:
    """The call's event types, read straight from the shared database."""
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            str(REPO / "manage.py"),
            "shell",
            "--no-imports",
            "-c",
            "from calls.models import CallEvent\n"
            f"print(' '.join(CallEvent.objects.filter(call_id={int(call_id)})"
            ".order_by('id').values_list('type', flat=True)))",
        ],
        cwd=REPO,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.redis
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")
async def test_a_process_drained_of_several_redis_backed_calls_exits_promptly():
    """On the channel layer a cluster runs (Redis: every stream's consumer has a
    control loop and joins its control group), a process whose three calls were
    handed over must exit soon after the last hand-over, not wait on its
    consumers' tasks."""
    from tests.handoff.test_cross_process import own_redis_database

    async with _deployment(redis_url=own_redis_database()) as deployment:
        a = deployment.server("A")
        a.env["PUBLIC_BASE_URL"] = a.url
        a.start()
        await a.wait_ready()
        callers = [(await deployment.ring(a.url))[1] for _ in range(3)]
        await asyncio.gather(*(c.wait_for_audio(ms=500, timeout_s=20) for c in callers))
        # Let each consumer's control-group keeper join the group.
        await asyncio.sleep(1.0)
        assert a.process is not None
        a.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*(c.wait_closed(timeout_s=25) for c in callers))
        closed_at = time.monotonic()
        for caller in callers:
            assert caller.closed_by_server is not None
            assert caller.closed_by_server[0] == 1000, (
                caller.closed_by_server,
                a.log(),
            )
        assert await _exited(a.process, within_s=8) == 0, a.log()
        exit_s = time.monotonic() - closed_at
        log = a.log()
        assert "drained: 3 call(s) handed over" in log, log
        # Consumers' tasks that never end held the process until it was killed; the
        # bounded exit above catches that. uvicorn may still say "Waiting for
        # background tasks": the handed-over calls' stream-ended webhooks come back
        # to this process (PUBLIC_BASE_URL) and can be in flight as it shuts down.
        print(f"exited {exit_s:.2f} s after the last hand-over")
