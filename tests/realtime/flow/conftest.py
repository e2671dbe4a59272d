"""The whole service on real sockets, against both emulators, in one event loop.

`service` serves callcenter.asgi with uvicorn on a free port; `fake_realtime` and
`twilio` are the project's emulators; settings point the service at them by URL only.
Tests here use the transactional database: the server's threads have their own
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvicorn

from agents.models import TOOL_NAMES
from realtime.emulators import scenarios
from realtime.emulators.caller import SimulatedCaller
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.run import ControlledTwilioEmulator
from realtime.emulators.twilio_api import StreamStart, TwilioEmulator
from tests.agents.factories import AgentProfileFactory, PhoneNumberFactory

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "flow-test-token"
API_KEY = "sk-flow-test"
INBOUND_NUMBER = "+815012345678"
CALLER_NUMBER = "+819012345678"
CALLER_TIME_SCALE = 0.25  # the simulated caller plays and speaks 4× real time


async def wait_until(predicate: Callable[[], Any], *, within_s: float = 10.0) -> bool:
    """Poll an async predicate every 50 ms; True as soon as it holds."""
    for _ in range(int(within_s / 0.05)):
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 at a free port; yield its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        ws_max_size=2**20,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=5)


def fast_caller(start: StreamStart) -> SimulatedCaller:
    return SimulatedCaller(
        start.url,
        parameters=start.parameters,
        auth_token=start.auth_token,
        account_sid=start.account_sid,
        call_sid=start.call_sid,
        stream_sid=start.stream_sid,
        time_scale=CALLER_TIME_SCALE,
    )


@pytest.fixture
def flow_settings(settings):
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_VALIDATE_SIGNATURES = True
    settings.TWILIO_FROM_NUMBER = INBOUND_NUMBER
    settings.OPENAI_API_KEY = API_KEY
    settings.USE_OPENAI_REALTIME = True
    settings.MAX_LIVE_CALLS = 50
    # Never the real API: the legacy path's text model is the fake or nothing.
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    return settings


@pytest.fixture
async def service(flow_settings) -> AsyncIterator[str]:
    from callcenter.asgi import application

    async with serve_asgi(application) as url:
        flow_settings.PUBLIC_BASE_URL = url
        yield url


@pytest.fixture
def start_fake_realtime(flow_settings) -> Callable[..., Any]:
    """Start a fake Realtime server with a scenario and point the service at it."""
    servers: list[FakeRealtimeServer] = []

    @contextlib.asynccontextmanager
    async def start(scenario: scenarios.Scenario = scenarios.DEMO, **kwargs: Any):
        kwargs.setdefault("api_key", API_KEY)
        async with FakeRealtimeServer(scenario, **kwargs) as server:
            servers.append(server)
            flow_settings.OPENAI_REALTIME_URL = server.url
            yield server

    return start


@pytest.fixture
async def twilio(flow_settings) -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(
        ACCOUNT_SID, AUTH_TOKEN, caller_factory=fast_caller
    ) as emu:
        flow_settings.TWILIO_API_BASE_URL = emu.base_url
        yield emu


@pytest.fixture
def inbound_agent(db):
    """The routed number and its agent: AI speaks first, every tool on."""
    agent = AgentProfileFactory(
        greeting_template="お電話ありがとうございます。{{company_name}}です。",
        enabled_tools=list(TOOL_NAMES),
        vad_silence_duration_ms=300,
        handoff_phone_number="+818070239355",
    )
    PhoneNumberFactory(
        number=INBOUND_NUMBER, organization=agent.organization, agent=agent
    )
    return agent


@pytest.fixture
async def controlled_twilio(flow_settings) -> AsyncIterator[TwilioEmulator]:
    """The Twilio emulator with the demo's `/_emulator/` control API on its port.

    Fast network timings, callers at CALLER_TIME_SCALE, and a human far end that
    answers every outbound call (the handoff number included).
    """
    async with ControlledTwilioEmulator(
        ACCOUNT_SID, AUTH_TOKEN, caller_factory=fast_caller
    ) as emu:
        flow_settings.TWILIO_API_BASE_URL = emu.base_url
        yield emu


@pytest.fixture
async def fake_responses(flow_settings):
    """The fake OpenAI Responses API (the legacy path's text model), pointed at."""
    from realtime.emulators.fake_responses import FakeResponsesServer

    async with FakeResponsesServer(api_key=API_KEY) as fake:
        flow_settings.OPENAI_BASE_URL = fake.base_url
        yield fake
