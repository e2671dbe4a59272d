"""A handoff across server processes (F-23, F-29): the call lives on A, the API on B.

Two Daphne processes share one database (a migrated temporary SQLite file, or a
fresh database on DATABASE_URL's PostgreSQL server) and Redis (REDIS_URL, a Redis
database of its own so other test runs' `call.<id>` groups cannot meet ours).
Twilio reaches A only (PUBLIC_BASE_URL); the operator's requests go to B. The
emulators run in this test's event loop and both processes reach them by URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from realtime.emulators import scenarios
from realtime.emulators.caller import Pause, WaitForAudio, WaitUntilQuiet
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.twilio_api import CallHandle, TwilioEmulator
from tests.handoff.conftest import AGENT_MASKED, AGENT_NUMBER
from tests.realtime.flow.conftest import (
    ACCOUNT_SID,
    API_KEY,
    AUTH_TOKEN,
    CALLER_NUMBER,
    INBOUND_NUMBER,
    fast_caller,
    wait_until,
)

REDIS_URL = os.environ.get("REDIS_URL", "")
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        not REDIS_URL,
        reason="REDIS_URL not set: two server processes need Redis between them",
    ),
    pytest.mark.timeout(120),
]

SEED = """
from agents.models import AgentProfile, Operator, Organization, PhoneNumber
from rest_framework.authtoken.models import Token
org = Organization.objects.create(name="クロスプロセス")
agent = AgentProfile.objects.create(
    organization=org,
    name="受付",
    instructions_template="{{company_name}}の受付です。",
    greeting_template="お電話ありがとうございます。{{company_name}}です。",
    enabled_tools=["request_operator_handoff"],
    vad_silence_duration_ms=300,
    handoff_phone_number="%(agent)s",
)
PhoneNumber.objects.create(organization=org, number="%(inbound)s", agent=agent)
operator = Operator.objects.create_user(username="xproc", organization=org)
print(Token.objects.create(user=operator).key)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def shared_database(workdir: Path) -> Iterator[str]:
    """A database URL both processes use: fresh PostgreSQL database, or a file."""
    if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
        yield f"sqlite:///{workdir / 'shared.sqlite3'}"
        return
    import psycopg

    parts = urlsplit(DATABASE_URL)
    name = f"handoff_xproc_{os.getpid()}_{secrets.token_hex(3)}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def own_redis_database() -> str:
    """REDIS_URL's server, on a database index other test runs are unlikely to use."""
    parts = urlsplit(REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{secrets.randbelow(15) + 1}"))


class Server:
    """One Daphne process of the service."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"daphne-{name}.log"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("daphne")),
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "callcenter.asgi:application",
            ],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self) -> None:
        assert self.process is not None
        async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
            for _ in range(300):
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/api/health")).status_code < 500:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} never served:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"manage.py {args[0]}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


class TwoProcesses:
    """A and B, the emulators, and an operator's token."""

    def __init__(self, a: Server, b: Server, twilio: TwilioEmulator, fake: Any):
        self.a, self.b, self.twilio, self.fake = a, b, twilio, fake
        self.token = ""
        self.http = httpx.AsyncClient(trust_env=False, timeout=20)

    async def to_b(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """An operator's API request, always to process B."""
        return await self.http.request(
            method,
            f"{self.b.url}{path}",
            json=body,
            headers={"Authorization": f"Token {self.token}"},
        )

    async def call_status(self, call_id: int) -> str:
        reply = await self.to_b("GET", f"/api/calls/{call_id}/")
        assert reply.status_code == 200, reply.text
        return str(reply.json()["status"])

    async def wait_status(self, call_id: int, *statuses: str) -> None:
        async def reached() -> bool:
            return await self.call_status(call_id) in statuses

        if not await wait_until(reached, within_s=20):
            events = await self.to_b("GET", f"/api/calls/{call_id}/events/")
            raise AssertionError(
                f"call {call_id} is {await self.call_status(call_id)!r}, not "
                f"{statuses}\nevents: {events.text[:3000]}\n"
                f"--- A ---\n{self.a.log()}\n--- B ---\n{self.b.log()}"
            )

    async def ring_a(self) -> tuple[CallHandle, int]:
        """An inbound call to A; return it once the greeting has been heard."""
        handle = await self.twilio.inbound_call(
            from_=CALLER_NUMBER,
            to=INBOUND_NUMBER,
            voice_url=f"{self.a.url}/api/twilio/voice/incoming",
            caller_script=[
                WaitForAudio(ms=100, timeout_s=30),
                WaitUntilQuiet(quiet_ms=300, timeout_s=30),
                Pause(ms=120_000),
            ],
            status_callback=f"{self.a.url}/api/twilio/status",
        )
        caller = await handle.wait_stream(timeout=15)
        await caller.wait_for_audio(ms=100, timeout_s=20)
        return handle, int(caller.parameters["call_id"])


@pytest.fixture
async def two_processes() -> AsyncIterator[TwoProcesses]:
    workdir = Path(tempfile.mkdtemp(prefix="handoff-xproc-"))
    servers: list[Server] = []
    try:
        with shared_database(workdir) as database_url:
            async with (
                FakeRealtimeServer(scenarios.DEMO, api_key=API_KEY) as fake,
                TwilioEmulator(
                    ACCOUNT_SID, AUTH_TOKEN, caller_factory=fast_caller
                ) as twilio,
            ):
                env = {
                    **os.environ,
                    "DJANGO_SETTINGS_MODULE": "callcenter.settings",
                    "PYTHONUNBUFFERED": "1",
                    "DATABASE_URL": database_url,
                    "REDIS_URL": own_redis_database(),
                    "ALLOWED_HOSTS": "127.0.0.1,localhost",
                    "OPENAI_API_KEY": API_KEY,
                    "OPENAI_REALTIME_URL": fake.url,
                    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                    "TWILIO_API_BASE_URL": twilio.base_url,
                    "TWILIO_FROM_NUMBER": INBOUND_NUMBER,
                    "TWILIO_VALIDATE_SIGNATURES": "true",
                    "USE_OPENAI_REALTIME": "true",
                    "LOG_FORMAT": "text",
                }
                a = Server("A", env, workdir)
                b = Server("B", env, workdir)
                # Twilio reaches A only: every URL the service builds names A.
                env["PUBLIC_BASE_URL"] = a.url
                _manage(env, "migrate", "--noinput")
                seed = SEED % {"agent": AGENT_NUMBER, "inbound": INBOUND_NUMBER}
                token = _manage(env, "shell", "--no-imports", "-c", seed).strip()
                servers += [a, b]
                for server in servers:
                    server.start()
                await asyncio.gather(a.wait_ready(), b.wait_ready())
                both = TwoProcesses(a, b, twilio, fake)
                both.token = token.splitlines()[-1]
                try:
                    yield both
                finally:
                    await both.http.aclose()
                    for server in servers:
                        server.stop()
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def test_handoff_requested_on_b_completes_for_the_call_on_a(two_processes):
    """The call streams into A; instruct and handoff go to B. The instruction
    reaches A's model session, the agent leg is dialled, A's bridge says the
    farewell and moves the caller, and the human is connected."""
    both = two_processes
    handle, call_id = await both.ring_a()
    assert await both.call_status(call_id) == "ai-responding"

    text = "お客様に本日のキャンペーンをご案内してください。"
    reply = await both.to_b("POST", f"/api/calls/{call_id}/instruct", {"text": text})
    assert reply.status_code == 202, reply.text
    connection = both.fake.connections[0]

    async def instructed() -> bool:
        return any(
            e.get("type") == "conversation.item.create"
            and text in json.dumps(e, ensure_ascii=False)
            for e in connection.received
        )

    assert await wait_until(instructed, within_s=10), connection.received_types()

    started = time.monotonic()
    reply = await both.to_b("POST", f"/api/calls/{call_id}/handoff", {})
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert body["created"] is True and body["agent_number"] == AGENT_MASKED
    agent_legs = both.twilio.calls_to(AGENT_NUMBER)
    assert [leg.sid for leg in agent_legs] == [body["agent_call_sid"]]

    # A's bridge said the farewell, let go of the model and moved the caller.
    caller = handle.caller
    assert caller is not None
    await caller.wait_closed(timeout_s=20)

    async def farewell_asked() -> bool:
        return any(
            e.get("type") == "response.create"
            and "担当者にお繋ぎします" in json.dumps(e, ensure_ascii=False)
            for e in connection.received
        )

    assert await wait_until(farewell_asked, within_s=5), connection.received_types()
    assert [r for r in caller.media_received() if r.at > started - 0.5]

    async def model_closed() -> bool:
        return both.fake.open_connections == 0

    assert await wait_until(model_closed, within_s=10)
    updates = handle.call.entries("update")
    assert len(updates) == 1 and f"handoff-{call_id}" in updates[0].detail["twiml"]
    room = both.twilio.conference(f"handoff-{call_id}")
    await asyncio.wait_for(room.began.wait(), timeout=15)
    await both.wait_status(call_id, "human-connected")
    steps = {"handoff-initiated", "handoff-caller-moved", "bridge-end"}
    types: list[str] = []

    async def on_the_timeline() -> bool:
        nonlocal types
        events = await both.to_b("GET", f"/api/calls/{call_id}/events/")
        types = [e["type"] for e in events.json()]
        return steps <= set(types)

    assert await wait_until(on_the_timeline, within_s=10), types

    await both.twilio.hang_up(agent_legs[0].sid)
    await both.wait_status(call_id, "completed")


async def test_hang_up_requested_on_b_ends_the_call_on_a(two_processes):
    both = two_processes
    handle, call_id = await both.ring_a()
    reply = await both.to_b("POST", f"/api/calls/{call_id}/hangup")
    assert reply.status_code == 202, reply.text
    await handle.wait_finished(timeout=20)
    await both.wait_status(call_id, "completed")

    async def model_closed() -> bool:
        return both.fake.open_connections == 0

    assert await wait_until(model_closed, within_s=10)
