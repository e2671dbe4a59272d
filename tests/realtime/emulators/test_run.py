"""The Twilio emulator's ``/_emulator/`` control API, and the process that runs
both emulators (``python -m realtime.emulators.run``)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve

from realtime.emulators.caller import (
    Dtmf,
    HangUp,
    Pause,
    Speak,
    WaitForAudio,
    WaitUntilQuiet,
)
from realtime.emulators.control import (
    ControlledTwilioEmulator,
    ScriptError,
    parse_script,
)
from realtime.emulators.run import DEMO_HANDOFF_NUMBER, _options, build_twilio
from realtime.emulators.twilio_api import FarEnd

ROOT = Path(__file__).resolve().parents[3]
AC = "AC" + "2" * 32
TOKEN = "run-test-token"
APP = "https://app.example.test"
LONG_CALL = '<Response><Say>もしもし</Say><Pause length="600"/></Response>'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- scripts ---------------------------------------------------------------------


def test_parse_script_reads_every_step():
    """Each JSON step becomes the simulated caller's step, with demo-sized waits."""
    script = parse_script(
        [
            {"speak_ms": 1200},
            {"pause_ms": 800},
            {"wait_audio": True},
            {"wait_audio": True, "ms": 300, "timeout_s": 5},
            {"wait_quiet_ms": 400},
            {"dtmf": "0"},
            {"hang_up": True},
        ]
    )
    assert script == [
        Speak(ms=1200),
        Pause(ms=800),
        WaitForAudio(ms=100.0, timeout_s=30.0),
        WaitForAudio(ms=300.0, timeout_s=5.0),
        WaitUntilQuiet(quiet_ms=400.0, timeout_s=30.0),
        Dtmf("0"),
        HangUp(),
    ]
    assert parse_script(None) == []


@pytest.mark.parametrize(
    "steps",
    [
        {"speak_ms": 100},
        [1],
        [{"speak_ms": -1}],
        [{"speak_ms": "long"}],
        [{"dtmf": "12"}],
        [{"dtmf": "x"}],
        [{"sing": True}],
    ],
)
def test_parse_script_refuses_what_it_cannot_play(steps: Any):
    """A malformed script is refused as a whole."""
    with pytest.raises(ScriptError):
        parse_script(steps)


# -- the control API, in process -------------------------------------------------


class BridgeStandIn:
    """A WebSocket server that accepts a Media Stream and keeps what it receives."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def handle(self, ws: ServerConnection) -> None:
        async for frame in ws:
            self.events.append(json.loads(frame))


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[BridgeStandIn, str]]:
    stand_in = BridgeStandIn()
    async with serve(stand_in.handle, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield stand_in, f"ws://127.0.0.1:{port}/stream"


@pytest.fixture
async def emulator(bridge) -> AsyncIterator[ControlledTwilioEmulator]:
    _, stream_url = bridge
    documents = {
        "/voice": LONG_CALL,
        "/voice-stream": (
            f'<Response><Connect><Stream url="{stream_url}"/></Connect></Response>'
        ),
    }

    def app(request: httpx.Request) -> httpx.Response:
        body = documents.get(request.url.path, "")
        if not body:
            return httpx.Response(204)
        return httpx.Response(200, text=body, headers={"content-type": "text/xml"})

    async with ControlledTwilioEmulator(
        AC, TOKEN, transport=httpx.MockTransport(app)
    ) as emu:
        yield emu


@pytest.fixture
async def control(emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emulator.base_url) as client:
        yield client


async def ring(control: httpx.AsyncClient, path: str = "/voice", **extra: Any) -> str:
    reply = await control.post(
        "/_emulator/inbound-calls",
        json={
            "from": "+819012345678",
            "to": "+815012345678",
            "voice_url": APP + path,
            "status_callback": APP + "/status",
            **extra,
        },
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["sid"])


async def test_inbound_call_shown_and_hung_up_through_the_control_api(
    emulator, control
):
    """An inbound call placed over HTTP runs its TwiML; GET shows its status and
    log; hang-up completes it and sends the final status callback."""
    sid = await ring(control)
    summary = (await control.get(f"/_emulator/calls/{sid}")).json()
    assert summary["status"] == "in-progress"
    assert summary["direction"] == "inbound"
    assert summary["stream_up"] is False and summary["heard_ms"] == 0
    kinds = [e["kind"] for e in summary["log"]]
    assert kinds[:2] == ["status", "callback"]
    listed = (await control.get("/_emulator/calls")).json()["calls"]
    assert [c["sid"] for c in listed] == [sid]

    reply = await control.post(f"/_emulator/calls/{sid}/hang-up")
    assert reply.json() == {"sid": sid, "status": "completed"}
    summary = (await control.get(f"/_emulator/calls/{sid}")).json()
    assert summary["finished"] is True
    assert emulator.calls[sid].status_callbacks() == ["completed"]
    # Hanging up a finished call changes nothing.
    assert (await control.post(f"/_emulator/calls/{sid}/hang-up")).status_code == 200


async def test_script_and_dtmf_reach_the_stream(emulator, control, bridge):
    """The script plays on the Media Stream; a key pressed over HTTP arrives as a
    ``dtmf`` event; GET reports the stream up."""
    stand_in, _ = bridge
    sid = await ring(control, "/voice-stream", script=[{"dtmf": "5"}])
    await emulator.call(sid).wait_stream(timeout=5)
    summary = (await control.get(f"/_emulator/calls/{sid}")).json()
    assert summary["stream_up"] is True and summary["streams"] == 1
    reply = await control.post(f"/_emulator/calls/{sid}/dtmf", json={"digit": "0"})
    assert reply.status_code == 200, reply.text
    for _ in range(100):
        digits = [e["dtmf"]["digit"] for e in stand_in.events if e["event"] == "dtmf"]
        if digits == ["5", "0"]:
            break
        await asyncio.sleep(0.02)
    assert digits == ["5", "0"]
    await control.post(f"/_emulator/calls/{sid}/hang-up")
    assert stand_in.events[-1]["event"] == "stop"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/_emulator/inbound-calls", {"from": "+819012345678"}, 400),
        (
            "POST",
            "/_emulator/inbound-calls",
            {"from": "+1", "to": "+2", "voice_url": APP, "script": [{"x": 1}]},
            400,
        ),
        ("POST", "/_emulator/inbound-calls", b"{not json", 400),
        ("GET", "/_emulator/inbound-calls", None, 405),
        ("POST", "/_emulator/calls", None, 405),
        ("GET", "/_emulator/calls/CA" + "0" * 32, None, 404),
        ("GET", "/_emulator/nothing", None, 404),
        ("POST", "/_emulator/far-ends", {"far_ends": {"+1": {"behaviour": "x"}}}, 400),
        ("POST", "/_emulator/far-ends", {"far_ends": {"+1": {"talk_s": [3, 1]}}}, 400),
        ("POST", "/_emulator/far-ends", {"sequences": {"+1": []}}, 400),
        ("POST", "/_emulator/far-ends", {"numbers": {}}, 400),
        ("POST", "/_emulator/settings", {"cps": 0}, 400),
        ("POST", "/_emulator/settings", {"cps": "fast"}, 400),
        ("POST", "/_emulator/settings", {"reorder_status_callbacks": 1}, 400),
        ("POST", "/_emulator/faults", {"status": 200}, 400),
        ("POST", "/_emulator/faults", {"count": 0}, 400),
        ("POST", "/_emulator/faults", {"create": "yes"}, 400),
        ("GET", "/_emulator/reset", None, 405),
        ("POST", "/_emulator/outbound-calls", None, 405),
    ],
)
async def test_control_api_refuses_bad_requests(control, method, path, body, status):
    """Bad requests get an HTTP error with a JSON reason, never a crash."""
    if isinstance(body, bytes):
        reply = await control.request(method, path, content=body)
    else:
        reply = await control.request(method, path, json=body)
    assert reply.status_code == status
    assert reply.json()["error"]


async def test_dtmf_without_a_stream_is_a_conflict(control):
    sid = await ring(control)
    reply = await control.post(f"/_emulator/calls/{sid}/dtmf", json={"digit": "0"})
    assert reply.status_code == 409
    reply = await control.post(f"/_emulator/calls/{sid}/dtmf", json={"digit": "00"})
    assert reply.status_code == 400


async def test_twilio_rest_api_is_still_served(emulator, control):
    """Paths outside /_emulator/ are the Twilio emulator's, Basic auth and all."""
    sid = await ring(control)
    path = f"/2010-04-01/Accounts/{AC}/Calls/{sid}.json"
    assert (await control.get(path)).status_code == 401
    reply = await control.get(path, auth=(AC, TOKEN))
    assert reply.status_code == 200 and reply.json()["sid"] == sid


# -- for an outbound dialer -------------------------------------------------------

CALLS = f"/2010-04-01/Accounts/{AC}/Calls.json"
SHORT = "<Response><Say>もしもし</Say></Response>"


async def create_call(control: httpx.AsyncClient, to: str) -> httpx.Response:
    return await control.post(
        CALLS,
        data={"To": to, "From": "+815012345678", "Twiml": SHORT},
        auth=(AC, TOKEN),
    )


async def test_far_ends_sequences_and_outbound_calls(emulator, control):
    """Far ends and per-number sequences set over HTTP decide how REST calls
    go; outbound-calls reports each call's far end, times and the maxima."""
    reply = await control.post(
        "/_emulator/far-ends",
        json={
            "sequences": {"+819011112222": [{"behaviour": "busy"}, {"ring_s": 0.05}]},
            "far_ends": {"+819033334444": {"behaviour": "no-answer"}},
            "default": {"behaviour": "answer", "talk_s": [0.01, 0.02]},
        },
    )
    assert reply.status_code == 200, reply.text
    state = reply.json()
    assert [f["behaviour"] for f in state["sequences"]["+819011112222"]] == [
        "busy",
        "answer",
    ]
    assert state["default"]["talk_s"] == [0.01, 0.02]
    sids = []
    for to in ("+819011112222", "+819011112222", "+819011112222", "+819033334444"):
        created = await create_call(control, to)
        assert created.status_code == 201, created.text
        sids.append(created.json()["sid"])
        await emulator.call(sids[-1]).wait_finished(3)
    summary = (await control.get("/_emulator/outbound-calls")).json()
    calls = summary["calls"]
    assert [c["sid"] for c in calls] == sids
    assert [c["status"] for c in calls] == [
        "busy",
        "completed",
        "completed",
        "no-answer",
    ]
    assert [c["far_end"]["ring_s"] for c in calls] == [None, 0.05, None, None]
    assert calls[2]["far_end"]["talk_s"] == [0.01, 0.02]
    assert 0.01 <= calls[2]["talk_s"] <= 0.02
    times = calls[1]["times"]
    assert times["created"] <= times["dequeued"] <= times["answered"] <= times["ended"]
    assert calls[0]["times"]["answered"] is None
    assert summary["max_creates_per_s"] >= 1
    assert summary["max_concurrent"] == 1
    assert (await control.get("/_emulator/far-ends")).json()["sequences"] == {
        "+819011112222": []
    }


async def test_settings_faults_and_reset(emulator, control):
    """Settings and faults set over HTTP reach the emulator; faults are
    reported pending, then injected; reset forgets calls and restores start."""
    reply = await control.post(
        "/_emulator/settings",
        json={"cps": 20, "seed": 3, "duplicate_status_callbacks": True},
    )
    assert reply.json() == {
        "cps": 20.0,
        "seed": 3,
        "duplicate_status_callbacks": True,
        "reorder_status_callbacks": False,
    }
    assert emulator.cps == 20 and emulator.duplicate_status_callbacks

    reply = await control.post(
        "/_emulator/faults", json={"status": 429, "count": 2, "delay_s": 0}
    )
    assert reply.status_code == 201
    assert [f["code"] for f in reply.json()["pending"]] == [20429, 20429]
    refused = await create_call(control, "+819011112222")
    assert refused.status_code == 429
    assert refused.json() == {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }
    await control.post("/_emulator/faults", json={"status": 503, "create": True})
    assert (await create_call(control, "+819011112222")).status_code == 429
    made = await create_call(control, "+819011112222")
    assert made.status_code == 503 and made.json()["code"] == 20503
    faults = (await control.get("/_emulator/faults")).json()
    assert faults["pending"] == []
    assert [(f["fault"]["status"], f["to"]) for f in faults["injected"]] == [
        (429, "+819011112222"),
        (429, "+819011112222"),
        (503, "+819011112222"),
    ]
    (call,) = emulator.outbound_calls()
    assert faults["injected"][-1]["call_sid"] == call.sid

    await control.post("/_emulator/far-ends", json={"far_ends": {"+1": {}}})
    assert (await control.post("/_emulator/reset")).json() == {"reset": True}
    assert emulator.calls == {} and emulator.faults == []
    assert emulator.far_ends == {} and emulator.cps is None
    assert not emulator.duplicate_status_callbacks
    assert (await control.get("/_emulator/outbound-calls")).json()["calls"] == []


def test_cli_sets_cps_far_end_sequences_and_talk_time():
    options = _options(
        [
            "--cps",
            "5",
            "--far-end",
            "+819011112222=busy,no-answer,answer",
            "--talk-time",
            "2:9",
            "--seed",
            "4",
        ]
    )
    emulator = build_twilio(options)
    assert emulator.cps == 5.0 and emulator.seed == 4
    human = FarEnd("answer", talk_s=(2.0, 9.0))
    assert emulator.default_far_end == human
    assert emulator.far_end_sequences["+819011112222"] == [
        FarEnd("busy"),
        FarEnd("no-answer"),
    ]
    assert emulator.far_ends["+819011112222"] == human
    for bad in (["--cps", "0"], ["--far-end", "+1=sing"], ["--talk-time", "9:2"]):
        with pytest.raises(SystemExit):
            _options(bad)


# -- the process -----------------------------------------------------------------


def test_process_serves_narrates_and_stops_on_sigterm():
    """``python -m realtime.emulators.run`` serves both emulators, tells stdout what
    a call does, and exits cleanly on SIGTERM; outbound calls reach a human."""
    realtime_port, twilio_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "realtime.emulators.run",
            "--fast",
            "--realtime-port",
            str(realtime_port),
            "--twilio-port",
            str(twilio_port),
            "--account-sid",
            AC,
            "--auth-token",
            TOKEN,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{twilio_port}"
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            for _ in range(200):
                try:
                    client.get("/_emulator/calls")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            # Nobody answers this webhook: Twilio's application error, then hang-up.
            unreachable = f"http://127.0.0.1:{free_port()}/voice"
            reply = client.post(
                "/_emulator/inbound-calls",
                json={
                    "from": "+819012345678",
                    "to": "+815012345678",
                    "voice_url": unreachable,
                },
            )
            sid = reply.json()["sid"]
            outbound = client.post(
                f"/2010-04-01/Accounts/{AC}/Calls.json",
                data={
                    "To": DEMO_HANDOFF_NUMBER,
                    "From": "+815012345678",
                    "Twiml": "<Response><Say>担当者です</Say></Response>",
                },
                auth=(AC, TOKEN),
            )
            assert outbound.status_code == 201, outbound.text
            for _ in range(100):
                calls = client.get("/_emulator/calls").json()["calls"]
                if all(c["status"] == "completed" for c in calls):
                    break
                time.sleep(0.05)
            time.sleep(0.3)  # the narrator's next round
        with socket.create_connection(("127.0.0.1", realtime_port), timeout=2):
            pass
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert (
        f"fake OpenAI Realtime (scenario demo) at ws://127.0.0.1:{realtime_port}"
        in (output)
    )
    assert f"call created: {sid[:10]}… inbound +819012345678 → +815012345678" in output
    assert "webhook voice " + unreachable in output and "refused!" in output
    assert f"outbound-api +815012345678 → {DEMO_HANDOFF_NUMBER}" in output
    assert "<Say> “担当者です”" in output
    assert "emulators stopping" in output
