"""F-68 across real processes: the server holding a call is killed with SIGKILL.

Two `manage.py serve` processes (uvicorn, on the test database: SQLite's file, or
PostgreSQL with Redis between them in the Redis suite) behind
a TCP forwarder standing for the balancer; the Twilio emulator and the fake Realtime
server run in the test. The process streaming a call is killed outright: the
emulator's socket breaks, it asks `<Connect action>` through the forwarder, the
other process answers a fresh stream, re-seeds a new model session from the saved
transcript and the caller talks on, in the same CallSession.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections

from calls.models import CallEvent, CallSession, TranscriptEntry
from calls.status import CallStatus
from realtime.emulators.caller import HangUp, Pause, Speak, WaitForAudio, WaitUntilQuiet
from tests.realtime.flow.conftest import (
    ACCOUNT_SID,
    API_KEY,
    AUTH_TOKEN,
    CALLER_NUMBER,
    INBOUND_NUMBER,
    wait_until,
)
from tests.realtime.tcp_forwarder import TcpForwarder
from tests.realtime.test_demo_serve import ROOT, Served, admin_login_ok, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

SCRIPT = [
    WaitForAudio(ms=100, timeout_s=20),
    WaitUntilQuiet(quiet_ms=300, timeout_s=20),
    Speak(ms=1000),
    Pause(ms=800),
    WaitForAudio(ms=100, timeout_s=20),
    WaitUntilQuiet(quiet_ms=300, timeout_s=20),
    Pause(ms=3000),  # killed in here; played again on the resumed stream
    Speak(ms=1000),
    Pause(ms=800),
    WaitForAudio(ms=100, timeout_s=20),
    WaitUntilQuiet(quiet_ms=300, timeout_s=20),
    HangUp(),
]


@pytest.fixture(autouse=True)
async def _close_shared_thread_connections():
    """Close the connection this test's async ORM calls left in asgiref's thread
    (else PostgreSQL keeps the test database busy at teardown)."""
    yield
    await sync_to_async(connections.close_all)()


def _test_database_url() -> str:
    """The test database (committed rows: transactional tests) as a URL."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}"
        f"/{db['NAME']}"
    )


def _serve(port: int, env: dict[str, str]) -> Served:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-celery", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Served(process, port, env)


async def test_a_call_on_a_killed_process_resumes_on_the_other(
    start_fake_realtime, twilio, inbound_agent, flow_settings
):
    ports = [free_port(), free_port()]
    async with (
        start_fake_realtime() as fake,
        TcpForwarder(backend_port=ports[0]) as balancer,
    ):
        env = {
            **os.environ,
            "DATABASE_URL": _test_database_url(),
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_REALTIME_URL": fake.url,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_VALIDATE_SIGNATURES": "true",
            "TWILIO_API_BASE_URL": twilio.base_url,
            "PUBLIC_BASE_URL": balancer.url,
            "USE_OPENAI_REALTIME": "true",
            "LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
        }
        servers = [_serve(port, env) for port in ports]
        try:
            for served in servers:
                up = await asyncio.to_thread(
                    _wait, lambda s=served: admin_login_ok(s.port), 45
                )
                assert up, served.stop()
            handle = await twilio.inbound_call(
                from_=CALLER_NUMBER,
                to=INBOUND_NUMBER,
                voice_url=f"{balancer.url}/api/twilio/voice/incoming",
                caller_script=SCRIPT,
                status_callback=f"{balancer.url}/api/twilio/status",
            )
            call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
            first = await handle.wait_stream(timeout=15)

            async def one_turn_saved() -> bool:
                lines = TranscriptEntry.objects.filter(call=call)
                return (
                    await lines.filter(speaker="ai").acount() >= 2
                    and await lines.filter(speaker="customer").aexists()
                )

            assert await wait_until(one_turn_saved, within_s=30), servers[0].stop()
            saved_before = [
                text
                async for text in TranscriptEntry.objects.filter(call=call)
                .order_by("id")
                .values_list("text", flat=True)
            ]
            balancer.switch(ports[1])
            servers[0].process.send_signal(signal.SIGKILL)
            try:
                second = await handle.wait_stream(timeout=10, count=2)
            except TimeoutError:
                await balancer.close_connections()
                pytest.fail(
                    "no resumed stream; the emulator's log:\n"
                    + "\n".join(map(str, handle.call.log))
                    + "\nthe other server:\n"
                    + await asyncio.to_thread(_stop, servers[1])
                )
            await second.wait_for_audio(ms=20, timeout_s=10)
            await handle.wait_finished(timeout=30)
            assert fake.connection_count == 2
            seeded = [
                str(event["item"]["content"])
                for event in fake.connections[1].received
                if isinstance(event, dict)
                and event.get("type") == "conversation.item.create"
            ]
        finally:
            # Off the loop, with the balancer's connections gone: uvicorn waits for
            # open connections before it exits.
            await balancer.close_connections()
            outputs = await asyncio.gather(
                *(asyncio.to_thread(_stop, served) for served in servers)
            )
    assert servers[0].process.returncode == -signal.SIGKILL

    ends = [e.detail for e in handle.call.log if e.kind == "stream-end"]
    assert ends[0]["by"] == "broken", ends
    assert first.heard_ms > 0 and second.heard_ms > 0
    assert "caller-script-error" not in [e.kind for e in handle.call.log]

    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED, (call.end_reason, outputs[1])
    assert await CallSession.objects.acount() == 1
    types = [
        t
        async for t in CallEvent.objects.filter(call=call)
        .order_by("id")
        .values_list("type", flat=True)
    ]
    assert "stream-lost" in types and "stream-resumed" in types, types
    assert types.count("stream-start") == 2
    # Every line saved before the kill is still there, first, and was re-seeded.
    lines = [
        (text, offset)
        async for text, offset in TranscriptEntry.objects.filter(call=call)
        .order_by("id")
        .values_list("text", "offset_ms")
    ]
    assert [text for text, _ in lines[: len(saved_before)]] == saved_before
    assert len(lines) > len(saved_before)
    assert [o for _, o in lines] == sorted(o for _, o in lines), lines
    for text in saved_before:
        assert any(text in s for s in seeded), (text, seeded)


def _stop(served: Served) -> str:
    """SIGTERM, then SIGKILL if it is not gone in 10 s; return what it printed."""
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
    try:
        served.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait(timeout=10)
    return served.wait()


def _wait(predicate, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False
