"""F-71: Redis stopped and restarted under a live call.

A Redis of the test's own (its own port, never the machine's) carries the channel
layer. While it is down, the call's audio goes on and a new call still talks; once
it is back, without a restart, an instruction reaches the model of the call that
lived through the outage and the monitors get its broadcasts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from calls.groups import call_control_group, call_monitor_group
from calls.models import CallSession
from calls.services import acall_control_send
from realtime.emulators.caller import (
    HangUp,
    Pause,
    Speak,
    WaitForAudio,
    WaitUntilQuiet,
)
from tests.realtime.flow.conftest import CALLER_NUMBER, INBOUND_NUMBER, wait_until

pytestmark = [
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(90),
]

GREETING = [
    WaitForAudio(ms=100, timeout_s=10),
    WaitUntilQuiet(quiet_ms=300, timeout_s=15),
]
# Turn after turn until the test hangs up.
CONVERSATION = (
    GREETING
    + [
        step
        for _ in range(40)
        for step in (
            Speak(ms=1000),
            Pause(ms=600),
            WaitForAudio(ms=100, timeout_s=20),
            WaitUntilQuiet(quiet_ms=300, timeout_s=20),
        )
    ]
    + [HangUp()]
)


class OwnRedis:
    """A redis-server on a free port, stopped and started at will (no persistence)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path, flow_settings) -> Iterator[OwnRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    server = OwnRedis(binary, tmp_path)
    server.start()
    flow_settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": server.url,
                        "socket_timeout": 30,
                        "socket_connect_timeout": 2,
                    }
                ],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
    try:
        yield server
    finally:
        server.stop()


async def _call(twilio, service, script):
    handle = await twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{service}/api/twilio/voice/incoming",
        caller_script=script,
        status_callback=f"{service}/api/twilio/status",
    )
    call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
    return handle, call


async def _in_control_group(server: OwnRedis, call_id: int) -> bool:
    """Whether Redis holds the call's control group (asked off the event loop)."""

    def ask() -> bool:
        with contextlib.suppress(redis.RedisError):
            key = f"asgi:group:{call_control_group(call_id)}"
            return bool(server.client().zcard(key))
        return False

    return await asyncio.to_thread(ask)


LIVE_CALLS = 5  # as in the measurement


async def test_redis_stopped_and_restarted_mid_call(
    service, start_fake_realtime, twilio, inbound_agent, own_redis
):
    from channels_redis.core import RedisChannelLayer

    async with start_fake_realtime() as fake:
        live = [await _call(twilio, service, CONVERSATION) for _ in range(LIVE_CALLS)]
        callers = [await handle.wait_stream(timeout=10) for handle, _ in live]

        async def all_greeted():
            return all(caller.heard_ms >= 300 for caller in callers)

        async def all_joined():
            return all(
                [await _in_control_group(own_redis, call.pk) for _, call in live]
            )

        assert await wait_until(all_greeted, within_s=15)
        assert await wait_until(all_joined, within_s=5)

        # -- Redis goes away ------------------------------------------------------
        await asyncio.to_thread(own_redis.stop)
        stopped_at = time.monotonic()
        heard_at_stop = [caller.heard_ms for caller in callers]

        handle_b, call_b = await _call(twilio, service, CONVERSATION)
        caller_b = await handle_b.wait_stream(timeout=10)

        async def b_talks():
            return caller_b.heard_ms >= 300

        assert await wait_until(b_talks, within_s=10), (
            "a call placed during the outage is silent"
        )
        b_heard_after_s = time.monotonic() - stopped_at
        await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - stopped_at)))
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"{service}/api/health")).json()
        assert (health["status"], health["channel_layer"]) == ("degraded", False)
        heard_during = [
            caller.heard_ms - before
            for caller, before in zip(callers, heard_at_stop, strict=True)
        ]
        assert all(ms > 0 for ms in heard_during), (
            f"a live call's audio stopped with Redis: {heard_during}"
        )
        assert not await _in_control_group(own_redis, live[0][1].pk)

        # -- Redis is back (empty: it has forgotten every group) ------------------
        await asyncio.to_thread(own_redis.start)
        outage_s = time.monotonic() - stopped_at
        back_at = time.monotonic()
        everyone = [call for _, call in live] + [call_b]

        async def all_rejoined():
            return all(
                [await _in_control_group(own_redis, call.pk) for call in everyone]
            )

        assert await wait_until(all_rejoined, within_s=10), (
            "no rejoin after Redis returned"
        )
        rejoined_s = time.monotonic() - back_at

        # An instruction to each call reaches its own model, and only it.
        markers = {call.pk: f"F71-再接続後の指示-{call.pk}" for call in everyone}
        for call_id, marker in markers.items():
            await acall_control_send(call_id=call_id, command="instruct", text=marker)

        def models_with(marker: str) -> int:
            return sum(
                any(
                    marker in json.dumps(event, ensure_ascii=False)
                    for event in list(connection.received)
                )
                for connection in fake.connections
            )

        async def instructions_arrived():
            return all(models_with(marker) == 1 for marker in markers.values())

        assert await wait_until(instructions_arrived, within_s=8), {
            call_id: models_with(marker) for call_id, marker in markers.items()
        }
        instructed_s = time.monotonic() - back_at

        # A monitor (here: another process's layer on a call's monitor group) gets
        # the live call's broadcasts again.
        first = live[0][1]
        monitor = RedisChannelLayer(hosts=[own_redis.url])
        channel = await monitor.new_channel()
        await monitor.group_add(call_monitor_group(first.pk), channel)
        message = await asyncio.wait_for(monitor.receive(channel), timeout=10)
        assert message["call_id"] == first.pk
        monitor_back_s = time.monotonic() - back_at
        await monitor.flush()

        async def healthy():
            # The first probe may meet a pooled connection Redis closed; the next
            # one opens a fresh one.
            async with httpx.AsyncClient() as client:
                reply = await client.get(f"{service}/api/health")
            return reply.json()["status"] == "ok"

        assert await wait_until(healthy, within_s=8)

        for handle, _ in [*live, (handle_b, call_b)]:
            await twilio.hang_up(handle.sid)
        for handle, _ in [*live, (handle_b, call_b)]:
            await handle.wait_finished(timeout=10)
    for call in everyone:
        await call.arefresh_from_db()
        assert call.status == "completed", (call.pk, call.status, call.end_reason)
    print(
        f"\n[F-71] Redis down {outage_s:.1f} s under {LIVE_CALLS} live calls: each "
        f"heard {min(heard_during):.0f}-{max(heard_during):.0f} ms of AI audio "
        f"meanwhile (caller at 4x); a call placed during the outage heard the AI "
        f"{b_heard_after_s:.1f} s after Redis stopped; all {len(everyone)} calls back "
        f"in their control groups {rejoined_s:.2f} s after Redis returned, "
        f"instructions at every model {instructed_s:.2f} s after, a monitor got a "
        f"broadcast {monitor_back_s:.2f} s after"
    )
