"""`manage.py cluster` (F-70): two real server processes behind the real HAProxy.

The command runs as `make cluster` runs it (without the Celery worker and beat), on a
fresh PostgreSQL database of DATABASE_URL's server and a Redis database of its own.
The fake OpenAI Realtime server and the Twilio emulator run in this test's event
loop; Twilio reaches the service only through the proxy (PUBLIC_BASE_URL).

Needs HAProxy (`apt-get install -y haproxy`; `.ci/run` installs it on CI).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from bench.cluster_service import free_port_run
from realtime.emulators import scenarios
from realtime.emulators.caller import Pause, Speak, WaitForAudio, WaitUntilQuiet
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.twilio_api import CallHandle, TwilioEmulator
from realtime.management.commands.cluster import haproxy_config, required_environment
from tests.handoff.test_cross_process import (
    DATABASE_URL,
    REDIS_URL,
    REPO,
    _free_port,
    own_redis_database,
    shared_database,
)
from tests.realtime.flow.conftest import (
    ACCOUNT_SID,
    API_KEY,
    AUTH_TOKEN,
    CALLER_NUMBER,
    INBOUND_NUMBER,
    fast_caller,
    wait_until,
)

POSTGRES = DATABASE_URL.startswith(("postgres://", "postgresql://"))

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not (REDIS_URL and POSTGRES),
        reason="REDIS_URL and a PostgreSQL DATABASE_URL needed: make cluster "
        "runs on both",
    ),
    pytest.mark.timeout(120),
]

# The greeting, then a pause in which the test kills the process holding the
# stream; the rest plays on the resumed stream (the emulator goes on with it).
SCRIPT = [
    WaitForAudio(ms=100, timeout_s=30),
    WaitUntilQuiet(quiet_ms=300, timeout_s=30),
    Pause(ms=8000),
    Speak(ms=1000),
    Pause(ms=800),
    WaitForAudio(ms=100, timeout_s=20),
    WaitUntilQuiet(quiet_ms=300, timeout_s=20),
    Pause(ms=120_000),
]
SERVER_LINE = re.compile(r"^server (\d+): pid (\d+) on (http://\S+)$", re.M)


@dataclass
class Cluster:
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str
    database_url: str
    http: httpx.AsyncClient = field(
        default_factory=lambda: httpx.AsyncClient(trust_env=False, timeout=5)
    )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def servers(self) -> dict[int, tuple[int, str]]:
        """Server number → (pid, url), the latest start of each."""
        return {
            int(n): (int(pid), url) for n, pid, url in SERVER_LINE.findall(self.log())
        }

    async def holder(self) -> int:
        """The number of the server process bridging the one live call."""
        for number, (_pid, url) in self.servers().items():
            with contextlib.suppress(httpx.HTTPError):
                health = (await self.http.get(f"{url}/api/health")).json()
                if health["live_calls_in_process"] == 1:
                    return number
        raise AssertionError(f"no server holds the call\n{self.log()[-4000:]}")

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return list(conn.execute(sql, params).fetchall())


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Cluster, TwilioEmulator]]:
    workdir = Path(tempfile.mkdtemp(prefix="cluster-test-"))
    port, server_port = _free_port(), free_port_run(2)
    while server_port - 1 <= port <= server_port + 2:
        server_port = free_port_run(2)
    with shared_database(workdir) as database_url:
        async with (
            FakeRealtimeServer(scenarios.DEMO, api_key=API_KEY) as fake,
            TwilioEmulator(
                ACCOUNT_SID, AUTH_TOKEN, caller_factory=fast_caller
            ) as twilio,
        ):
            env = {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "DATABASE_URL": database_url,
                "REDIS_URL": own_redis_database(),
                "CELERY_BROKER_URL": "",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "OPENAI_API_KEY": API_KEY,
                "OPENAI_REALTIME_URL": fake.url,
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_API_BASE_URL": twilio.base_url,
                "TWILIO_VALIDATE_SIGNATURES": "true",
                "USE_OPENAI_REALTIME": "true",
                "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                "LOG_FORMAT": "text",
            }
            log_path = workdir / "cluster.log"
            process = _start_cluster(env, port, server_port, log_path)
            both = Cluster(process, log_path, f"http://127.0.0.1:{port}", database_url)
            try:
                await _wait_ready(both)
                yield both, twilio
            finally:
                await both.http.aclose()
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()


def _start_cluster(
    env: dict[str, str], port: int, server_port: int, log_path: Path
) -> subprocess.Popen[bytes]:
    """`make cluster`'s command, without the worker and beat."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "cluster",
                "--no-celery",
                "--port",
                str(port),
                "--server-port",
                str(server_port),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def _wait_ready(cluster: Cluster) -> None:
    async def ready() -> bool:
        if cluster.process.poll() is not None:
            raise AssertionError(f"make cluster exited:\n{cluster.log()}")
        with contextlib.suppress(httpx.HTTPError):
            return (await cluster.http.get(f"{cluster.url}/api/health")).is_success
        return False

    assert await wait_until(ready, within_s=60), cluster.log()
    assert "Cluster ready" in cluster.log()
    assert len(cluster.servers()) == 2


async def _ring(cluster: Cluster, twilio: TwilioEmulator) -> tuple[CallHandle, int]:
    handle = await twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{cluster.url}/api/twilio/voice/incoming",
        caller_script=SCRIPT,
        status_callback=f"{cluster.url}/api/twilio/status",
    )
    caller = await handle.wait_stream(timeout=15)
    await caller.wait_for_audio(ms=100, timeout_s=20)
    return handle, int(caller.parameters["call_id"])


def test_required_environment_names_what_is_missing() -> None:
    assert (
        required_environment(
            {"DATABASE_URL": "postgres://h/db", "REDIS_URL": "redis://h/0"}
        )
        == []
    )
    problems = required_environment({"DATABASE_URL": "sqlite:///db.sqlite3"})
    assert len(problems) == 2
    assert "PostgreSQL" in problems[0] and "REDIS_URL" in problems[1]


def test_haproxy_config_lists_every_server_and_takes_draining_out() -> None:
    config = haproxy_config(
        bind="0.0.0.0:8000", servers=[("10.0.0.1", 8001), ("10.0.0.2", 8001)]
    )
    assert "bind 0.0.0.0:8000" in config
    assert "server s1 10.0.0.1:8001" in config and "server s2 10.0.0.2:8001" in config
    assert "timeout tunnel 1h" in config
    assert re.search(r"http-check expect ! rstring .*draining", config)


async def test_call_through_the_proxy_resumes_on_the_other_process(cluster) -> None:
    """A call streams through HAProxy into one process; that process is killed
    (SIGKILL); Twilio's <Connect action> goes through the proxy to the other, which
    resumes the same call: one CallSession, the transcript goes on."""
    both, twilio = cluster
    handle, call_id = await _ring(both, twilio)
    first = handle.caller
    assert first is not None
    holder = await both.holder()
    pid, _url = both.servers()[holder]

    def saved_lines() -> int:
        count = both.query(
            "SELECT COUNT(*) FROM calls_transcriptentry WHERE call_id = %s", call_id
        )[0][0]
        return int(count)  # type: ignore[call-overload]

    async def greeting_saved() -> bool:
        return saved_lines() >= 1

    assert await wait_until(greeting_saved, within_s=10)
    lines_before = saved_lines()

    os.kill(pid, signal.SIGKILL)

    second = await handle.wait_stream(timeout=20, count=2)
    assert second is not first
    assert second.parameters["call_id"] == str(call_id)
    other = 2 if holder == 1 else 1

    async def held_by_the_other() -> bool:
        return await both.holder() == other

    assert await wait_until(held_by_the_other, within_s=10)
    await second.wait_for_audio(ms=100, timeout_s=20)  # the answer to the script

    events = [
        row[0]
        for row in both.query(
            "SELECT type FROM calls_callevent WHERE call_id = %s ORDER BY id", call_id
        )
    ]
    assert "stream-lost" in events and "stream-resumed" in events, events

    async def transcript_went_on() -> bool:
        speakers = [
            row[0]
            for row in both.query(
                "SELECT speaker FROM calls_transcriptentry WHERE call_id = %s "
                "ORDER BY id",
                call_id,
            )
        ]
        return len(speakers) > lines_before and {"customer", "ai"} <= set(
            speakers[lines_before:]
        )

    assert await wait_until(transcript_went_on, within_s=15)
    sessions = both.query(
        "SELECT COUNT(*), MIN(status) FROM calls_callsession WHERE twilio_call_sid = %s",
        handle.sid,
    )
    assert sessions == [(1, "ai-responding")]

    # The killed process was started again and takes calls.
    async def restarted() -> bool:
        return both.servers()[holder][0] != pid

    assert await wait_until(restarted, within_s=10), both.log()[-4000:]

    await handle.hang_up()
    await handle.wait_finished(timeout=20)

    async def completed() -> bool:
        status = both.query(
            "SELECT status FROM calls_callsession WHERE id = %s", call_id
        )[0][0]
        return status == "completed"

    assert await wait_until(completed, within_s=20)
