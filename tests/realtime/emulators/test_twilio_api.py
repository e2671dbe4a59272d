"""The Twilio emulator: REST through the real ``twilio`` library, signed callbacks,
far ends, the TwiML interpreter, conferences and Media Streams."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, VoiceResponse
from websockets.asyncio.server import ServerConnection, serve

from realtime.emulators import caller as sim
from realtime.emulators import twiml
from realtime.emulators.twilio_api import FarEnd, TwilioEmulator

AC = "AC" + "1" * 32
TOKEN = "emulator-secret"
APP = "https://app.example.test"
SID = re.compile(r"^CA[0-9a-f]{32}$")


@dataclass(frozen=True)
class Hit:
    """One request the emulator made to our (fake) app."""

    method: str
    url: str
    path: str
    params: dict[str, str]
    signature_valid: bool
    at: float


class FakeApp:
    """Our Django app as the emulator sees it: TwiML per path, signatures checked."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.twiml: dict[str, str] = {}
        self.status: dict[str, int] = {}

    async def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        params = (
            dict(parse_qsl(request.content.decode(), keep_blank_values=True))
            if request.method == "POST"
            else {}
        )
        valid = RequestValidator(TOKEN).validate(
            url, params, request.headers.get("X-Twilio-Signature", "")
        )
        if request.method == "GET":
            params = dict(parse_qsl(request.url.query.decode()))
        self.hits.append(
            Hit(request.method, url, request.url.path, params, valid, time.monotonic())
        )
        body = self.twiml.get(request.url.path, "<Response/>")
        return httpx.Response(
            self.status.get(request.url.path, 200),
            text=body,
            headers={"content-type": "text/xml"},
        )

    def to(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]


@pytest.fixture
def app() -> FakeApp:
    return FakeApp()


@pytest.fixture
async def emu(app: FakeApp) -> AsyncIterator[TwilioEmulator]:
    emulator = TwilioEmulator(AC, TOKEN, transport=httpx.MockTransport(app.handle))
    async with emulator:
        yield emulator


@pytest.fixture
def client(emu: TwilioEmulator) -> Client:
    client = Client(AC, TOKEN)
    client.api.base_url = emu.base_url
    return client


def say(text: str) -> str:
    response = VoiceResponse()
    response.say(text)
    return str(response)


async def create(client: Client, **kwargs: Any) -> Any:
    """calls.create in a thread: the sync client must not block the emulator's loop."""
    kwargs.setdefault("to", "+818070239355")
    kwargs.setdefault("from_", "+81312345678")
    return await asyncio.to_thread(client.calls.create, **kwargs)


async def finished(emu: TwilioEmulator, sid: str) -> Any:
    return await emu.call(sid).wait_finished(3)


# ---------------------------------------------------------------- REST API


async def test_rest_requires_basic_auth(emu: TwilioEmulator) -> None:
    """Wrong or missing credentials get 401 with Twilio's 20003 body."""
    url = f"{emu.base_url}/2010-04-01/Accounts/{AC}/Calls.json"
    async with httpx.AsyncClient() as http:
        missing = await http.get(url)
        wrong = await http.get(url, auth=(AC, "not-the-token"))
        right = await http.get(url, auth=(AC, TOKEN))
    assert missing.status_code == wrong.status_code == 401
    assert wrong.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert wrong.headers["www-authenticate"].startswith("Basic")
    assert right.status_code == 200

    bad = Client(AC, "not-the-token")
    bad.api.base_url = emu.base_url
    with pytest.raises(TwilioRestException) as caught:
        await create(bad, url=f"{APP}/answer")
    assert (caught.value.status, caught.value.code) == (401, 20003)


async def test_create_fetch_update_through_the_twilio_library(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    """calls.create returns a queued call resource; fetch follows it; update
    with TwiML replaces what runs; Status=completed hangs up."""
    app.twiml["/answer"] = "<Response><Pause length='100'/></Response>"
    call = await create(client, url=f"{APP}/answer")
    assert SID.match(call.sid)
    assert (call.status, call.direction) == ("queued", "outbound-api")
    assert (call.to, call._from, call.account_sid) == (
        "+818070239355",
        "+81312345678",
        AC,
    )
    assert call.uri == f"/2010-04-01/Accounts/{AC}/Calls/{call.sid}.json"

    handle = emu.call(call.sid)
    await handle.wait_status("in-progress")
    fetched = await asyncio.to_thread(client.calls(call.sid).fetch)
    assert fetched.status == "in-progress"
    assert fetched.start_time is not None

    updated = await asyncio.to_thread(
        client.calls(call.sid).update, twiml=say("お待たせしました") + ""
    )
    assert updated.sid == call.sid
    done = await finished(emu, call.sid)
    assert done.said() == ["お待たせしました"]
    assert done.verbs() == ["Pause", "Say"]
    assert done.status == "completed"
    assert (await asyncio.to_thread(client.calls(call.sid).fetch)).status == "completed"

    second = await create(client, url=f"{APP}/answer")
    await emu.call(second.sid).wait_status("in-progress")
    hung = await asyncio.to_thread(client.calls(second.sid).update, status="completed")
    assert hung.status == "completed"
    assert (await finished(emu, second.sid)).status == "completed"
    with pytest.raises(TwilioRestException) as caught:
        await asyncio.to_thread(client.calls(second.sid).update, twiml=say("late"))
    assert caught.value.code == 21220


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": "", "url": f"{APP}/a"}, 21201),
        ({"from_": "", "url": f"{APP}/a"}, 21213),
        ({}, 21205),
        ({"url": "not a url"}, 21205),
        ({"to": "09012345678", "url": f"{APP}/a"}, 21211),
        ({"from_": "+0123", "url": f"{APP}/a"}, 21212),
        ({"twiml": "<Response>" + "<Pause/>" * 600 + "</Response>"}, 32018),
        ({"url": f"{APP}/a", "status_callback_event": ["picked-up"]}, 21200),
        ({"url": f"{APP}/a", "machine_detection": "Sometimes"}, 21200),
    ],
)
async def test_create_refuses_what_twilio_refuses(
    client: Client, kwargs: dict[str, Any], code: int
) -> None:
    """Bad requests raise TwilioRestException with Twilio's error code."""
    with pytest.raises(TwilioRestException) as caught:
        await create(client, **kwargs)
    assert (caught.value.status, caught.value.code) == (400, code)


async def test_fetch_unknown_call_is_404(client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await asyncio.to_thread(client.calls("CA" + "0" * 32).fetch)
    assert (caught.value.status, caught.value.code) == (404, 20404)


# ---------------------------------------------------------- status callbacks


async def test_status_callbacks_signed_in_order_with_timing(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    """Every requested event is posted, signed with the auth token, in order,
    with the B3 fields; ringing → answered takes the ring time."""
    call = await create(
        client,
        twiml=say("こんにちは"),
        status_callback=f"{APP}/status?leg=agent",
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )
    done = await finished(emu, call.sid)
    hits = app.to("/status")
    assert [h.params["CallStatus"] for h in hits] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert all(h.signature_valid for h in hits)
    assert [h.params["SequenceNumber"] for h in hits] == ["0", "1", "2", "3"]
    for hit in hits:
        assert hit.url.endswith("/status?leg=agent")
        assert hit.params["CallSid"] == call.sid
        assert hit.params["AccountSid"] == AC
        assert hit.params["ApiVersion"] == "2010-04-01"
        assert hit.params["Direction"] == "outbound-api"
        assert hit.params["CallbackSource"] == "call-progress-events"
        assert hit.params["Timestamp"].endswith("+0000")
        assert (hit.params["From"], hit.params["To"]) == (call._from, call.to)
    assert hits[-1].params["CallDuration"] == "0"
    assert "CallDuration" not in hits[0].params
    times = [c.at for c in done.callbacks if c.kind == "status"]
    assert times == sorted(times)
    assert times[2] - times[1] >= emu.timings.ring_s * 0.9


async def test_only_completed_is_posted_by_default(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    call = await create(client, twiml=say("hi"), status_callback=f"{APP}/status")
    await finished(emu, call.sid)
    assert [h.params["CallStatus"] for h in app.to("/status")] == ["completed"]


async def test_get_callbacks_are_signed_over_the_query(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    """A GET callback carries its parameters in the URL and signs only the URL."""
    call = await create(
        client,
        twiml=say("hi"),
        status_callback=f"{APP}/status",
        status_callback_method="GET",
    )
    await finished(emu, call.sid)
    (hit,) = app.to("/status")
    assert hit.method == "GET"
    assert hit.signature_valid
    assert hit.params["CallStatus"] == "completed"


# ----------------------------------------------------------------- far ends


@pytest.mark.parametrize("behaviour", ["busy", "no-answer", "failed"])
async def test_unanswered_far_ends(
    emu: TwilioEmulator, client: Client, app: FakeApp, behaviour: Any
) -> None:
    """Busy, no-answer and failed end the call with that status; the voice URL
    is never fetched."""
    emu.far_ends["+818070239355"] = FarEnd(behaviour)
    call = await create(
        client,
        url=f"{APP}/answer",
        status_callback=f"{APP}/status",
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )
    done = await finished(emu, call.sid)
    assert done.status == behaviour
    statuses = [h.params["CallStatus"] for h in app.to("/status")]
    assert statuses[0] == "initiated"
    assert statuses[-1] == behaviour
    assert "in-progress" not in statuses
    assert ("ringing" in statuses) == (behaviour == "no-answer")
    assert app.to("/answer") == []
    assert done.resource()["duration"] == "0"


@pytest.mark.parametrize(
    ("behaviour", "detection", "answered_by"),
    [
        ("answer", "Enable", "human"),
        ("machine", "Enable", "machine_start"),
        ("machine", "DetectMessageEnd", "machine_end_beep"),
        ("answer", None, None),
    ],
)
async def test_answered_far_ends_and_machine_detection(
    emu: TwilioEmulator,
    client: Client,
    app: FakeApp,
    behaviour: Any,
    detection: str | None,
    answered_by: str | None,
) -> None:
    """An answered call fetches its Url (signed, voice parameters, AnsweredBy
    with AMD) and runs the TwiML; the far end hangs up after hangup_after_s."""
    emu.far_ends["+818070239355"] = FarEnd(behaviour, hangup_after_s=0.05)
    app.twiml["/answer"] = "<Response><Pause length='60'/></Response>"
    extra = {"machine_detection": detection} if detection else {}
    call = await create(
        client, url=f"{APP}/answer", status_callback=f"{APP}/status", **extra
    )
    done = await finished(emu, call.sid)
    (voice,) = app.to("/answer")
    assert voice.signature_valid
    assert voice.params["CallStatus"] == "in-progress"
    assert voice.params.get("AnsweredBy") == answered_by
    assert done.answered_by == answered_by
    assert done.status == "completed"
    assert [e.detail["by"] for e in done.entries("hangup")] == ["far end"]
    (status,) = app.to("/status")
    assert status.params.get("AnsweredBy") == answered_by


async def test_far_end_hangs_up_when_told(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    app.twiml["/answer"] = "<Response><Pause length='60'/></Response>"
    call = await create(client, url=f"{APP}/answer", status_callback=f"{APP}/status")
    handle = emu.call(call.sid)
    await handle.wait_status("in-progress")
    await handle.hang_up()
    assert handle.call.is_finished and handle.status == "completed"
    assert [h.params["CallStatus"] for h in app.to("/status")] == ["completed"]


# ----------------------------------------------------------------- TwiML runs


async def test_twiml_verbs_run_in_order(emu: TwilioEmulator, app: FakeApp) -> None:
    """Say, Play, Pause, Redirect and Hangup; nothing after Hangup runs."""
    app.twiml["/voice"] = (
        "<Response><Say language='ja-JP' voice='Polly.Mizuki'>お電話ありがとうございます</Say>"
        "<Play>https://cdn.example.test/chime.mp3</Play><Pause length='2'/>"
        "<Redirect>/next</Redirect><Say>never</Say></Response>"
    )
    app.twiml["/next"] = (
        "<Response><Say>二つ目</Say><Hangup/><Say>never</Say></Response>"
    )
    handle = await emu.inbound_call(
        from_="+819012345678", to="+81312345678", voice_url=f"{APP}/voice"
    )
    done = await handle.wait_finished(2)
    assert done.said() == ["お電話ありがとうございます", "二つ目"]
    assert done.verbs() == ["Say", "Play", "Pause", "Redirect", "Say", "Hangup"]
    (say_entry,) = done.entries("say")[:1]
    assert say_entry.detail["voice"] == "Polly.Mizuki"
    assert done.entries("play")[0].detail["url"].endswith("chime.mp3")
    (voice,) = app.to("/voice")
    assert voice.signature_valid
    assert voice.params["CallStatus"] == "ringing"
    assert voice.params["Direction"] == "inbound"
    assert app.to("/next")[0].signature_valid
    assert done.status == "completed"


@pytest.mark.parametrize(
    ("document", "code", "said"),
    [
        ("<Response><Say>hi</Say>", 12100, []),
        ("<Response><Speak>hi</Speak></Response>", 12200, []),
        ("<Response><Pause length='soon'/></Response>", 12200, []),
        (
            "<Response><Say>one moment</Say><Connect>"
            "<Stream url='https://bridge.test/media'/></Connect></Response>",
            31922,
            ["one moment"],
        ),
        (
            "<Response><Connect><Stream url='wss://bridge.test/media?token=x'/>"
            "</Connect></Response>",
            31920,
            [],
        ),
    ],
)
async def test_rejected_twiml_fails_the_call(
    emu: TwilioEmulator, app: FakeApp, document: str, code: int, said: list[str]
) -> None:
    """Invalid TwiML runs nothing; a bad <Stream> URL fails when reached."""
    app.twiml["/voice"] = document
    handle = await emu.inbound_call(
        from_="+819012345678", to="+81312345678", voice_url=f"{APP}/voice"
    )
    done = await handle.wait_finished(2)
    assert [e.code for e in done.errors] == [code]
    assert done.said() == said
    assert done.status == "completed"


async def test_webhook_failure_is_an_application_error(
    emu: TwilioEmulator, app: FakeApp
) -> None:
    app.status["/voice"] = 500
    handle = await emu.inbound_call(
        from_="+819012345678", to="+81312345678", voice_url=f"{APP}/voice"
    )
    done = await handle.wait_finished(2)
    assert [e.code for e in done.errors] == [11200]
    assert done.entries("application-error")


def test_twiml_parser_reads_library_output() -> None:
    """What twilio's TwiML builder emits parses to the expected verbs."""
    response = VoiceResponse()
    response.say("お待ちください", language="ja-JP", voice="Polly.Mizuki")
    dial = Dial(action="/after")
    dial.conference(
        "handoff-42",
        start_conference_on_enter=False,
        end_conference_on_exit=False,
        wait_url="https://app.example.test/hold",
        status_callback="/conference",
        status_callback_event="join leave",
    )
    response.append(dial)
    connect = response.connect(action="/after-stream")
    stream = connect.stream(url="wss://bridge.test/media-stream")
    stream.parameter(name="call_id", value="42")
    verbs = twiml.parse_twiml(str(response))
    assert [type(v).__name__ for v in verbs] == ["Say", "Dial", "Connect"]
    conference = verbs[1].target  # type: ignore[union-attr]
    assert conference.start_conference_on_enter is False
    assert conference.status_callback_events == {"join", "leave"}
    assert verbs[2].stream.parameters == (("call_id", "42"),)  # type: ignore[union-attr]
    list_events = Dial()
    list_events.conference("x", status_callback_event=["join", "leave"])  # a bug
    with pytest.raises(twiml.TwimlError) as caught:
        twiml.parse_twiml(
            f"<Response>{list_events}</Response>".replace(
                '<?xml version="1.0" encoding="UTF-8"?>', ""
            )
        )
    assert caught.value.code == 12200


# --------------------------------------------------------------- conferences


async def test_conference_waits_for_the_moderator_then_ends_with_it(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    """The caller (startConferenceOnEnter=false) hears hold music until the agent
    joins; the agent's exit ends the room; the recording callback follows."""
    caller_dial = Dial(action=f"{APP}/after-conference")
    caller_dial.conference(
        "handoff-42",
        start_conference_on_enter=False,
        end_conference_on_exit=False,
        wait_url=f"{APP}/hold",
    )
    app.twiml["/voice"] = str(VoiceResponse().append(caller_dial))
    app.twiml["/after-conference"] = say("担当者との通話が終わりました")
    caller = await emu.inbound_call(
        from_="+819012345678", to="+81312345678", voice_url=f"{APP}/voice"
    )
    await asyncio.sleep(0.05)
    room = emu.conference("handoff-42")
    assert room.status == "init"
    assert caller.call.entries("hold-music")[0].detail["wait_url"] == f"{APP}/hold"

    agent_dial = Dial()
    agent_dial.conference(
        "handoff-42",
        start_conference_on_enter=True,
        end_conference_on_exit=True,
        record="record-from-start",
        recording_status_callback=f"{APP}/recording",
        status_callback=f"{APP}/conference",
        status_callback_event="start end join leave",
    )
    agent_twiml = VoiceResponse()
    agent_twiml.say("お客様におつなぎします")
    agent_twiml.append(agent_dial)
    emu.far_ends["+818070239355"] = FarEnd("answer", hangup_after_s=0.15)
    agent = await create(client, twiml=str(agent_twiml))

    await caller.wait_finished(3)
    agent_call = await finished(emu, agent.sid)
    assert room.event_names() == [
        "participant-join",
        "participant-join",
        "conference-start",
        "participant-leave",
        "participant-leave",
        "conference-end",
    ]
    assert room.status == "completed"
    assert room.reason_ended == "participant-with-end-conference-on-exit-left"
    assert room.call_sid_ending == agent.sid
    assert caller.call.entries("hold-music-stop")
    assert agent_call.said() == ["お客様におつなぎします"]

    # The agent's statusCallback subscribes to every event from its join on.
    posted = app.to("/conference")
    assert [h.params["StatusCallbackEvent"] for h in posted] == [
        "participant-join",
        "conference-start",
        "participant-leave",
        "participant-leave",
        "conference-end",
    ]
    assert all(h.signature_valid for h in posted)
    join = posted[0].params
    assert join["CallSid"] == agent.sid
    assert join["ConferenceSid"] == room.sid and room.sid.startswith("CF")
    assert join["FriendlyName"] == "handoff-42"
    assert (join["StartConferenceOnEnter"], join["EndConferenceOnExit"]) == (
        "true",
        "true",
    )
    assert posted[-1].params["ReasonConferenceEnded"] == (
        "participant-with-end-conference-on-exit-left"
    )

    (recording,) = app.to("/recording")
    assert recording.signature_valid
    assert recording.params["RecordingStatus"] == "completed"
    assert recording.params["RecordingSid"].startswith("RE")
    assert recording.params["ConferenceSid"] == room.sid
    assert int(recording.params["RecordingDuration"]) >= 1
    assert recording.params["RecordingUrl"].endswith(recording.params["RecordingSid"])

    # The caller's <Dial action> got DialCallStatus and its TwiML ran.
    (action,) = app.to("/after-conference")
    assert action.params["DialCallStatus"] == "answered"
    assert caller.call.said() == ["担当者との通話が終わりました"]


async def test_dial_number_posts_dial_call_status(
    emu: TwilioEmulator, app: FakeApp
) -> None:
    emu.far_ends["+818070239355"] = FarEnd("busy")
    app.twiml["/voice"] = (
        "<Response><Dial action='/dial-done' timeout='10'>+818070239355</Dial></Response>"
    )
    handle = await emu.inbound_call(
        from_="+819012345678", to="+81312345678", voice_url=f"{APP}/voice"
    )
    await handle.wait_finished(2)
    (action,) = app.to("/dial-done")
    assert action.params["DialCallStatus"] == "busy"
    assert emu.calls[action.params["DialCallSid"]].direction == "outbound-dial"


# ------------------------------------------------------------- Media Streams


class FakeBridge:
    """A tiny WebSocket server standing in for our bridge."""

    def __init__(self, on_start: Callable[[ServerConnection], Any] | None = None):
        self.messages: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.closed = asyncio.Event()
        self.started = asyncio.Event()
        self.on_start = on_start
        self.headers: dict[str, str] = {}
        self.port = 0

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
        try:
            async for raw in ws:
                message = json.loads(raw)
                self.messages.append(message)
                self.times.append(time.monotonic())
                if message["event"] == "start":
                    self.started.set()
                    if self.on_start is not None:
                        await self.on_start(ws)
        finally:
            self.closed.set()

    def events(self) -> list[str]:
        return [m["event"] for m in self.messages if m["event"] != "media"]

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/media-stream"


@pytest.fixture
async def bridge() -> AsyncIterator[FakeBridge]:
    fake = FakeBridge()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        fake.port = server.sockets[0].getsockname()[1]
        yield fake


def stream_twiml(url: str, action: str | None = None) -> str:
    response = VoiceResponse()
    connect = response.connect(action=action)
    stream = connect.stream(url=url)
    stream.parameter(name="call_id", value="42")
    return str(response)


async def test_update_replaces_connect_stream(
    emu: TwilioEmulator, client: Client, app: FakeApp, bridge: FakeBridge
) -> None:
    """An update inside <Connect><Stream> ends the stream as Twilio does: the
    caller sends stop, then closes; the new TwiML runs."""
    app.twiml["/voice"] = stream_twiml(bridge.url())
    handle = await emu.inbound_call(
        from_="+819012345678", to="+81312345678", voice_url=f"{APP}/voice"
    )
    await handle.wait_stream(2)
    await asyncio.wait_for(bridge.started.wait(), 2)
    start = next(m for m in bridge.messages if m["event"] == "start")
    assert start["start"]["callSid"] == handle.sid
    assert start["start"]["customParameters"] == {"call_id": "42"}
    signature = bridge.headers["x-twilio-signature"]
    wss_url = bridge.url().replace("ws://", "wss://")
    assert RequestValidator(TOKEN).validate(wss_url, {}, signature)

    await asyncio.to_thread(
        client.calls(handle.sid).update, twiml=say("担当者におつなぎします")
    )
    await asyncio.wait_for(bridge.closed.wait(), 2)
    assert bridge.events()[-1] == "stop"
    done = await handle.wait_finished(2)
    assert done.said() == ["担当者におつなぎします"]
    assert done.entries("stream-stop")
    handle.caller.assert_clean()  # type: ignore[union-attr]


async def test_server_close_continues_with_connect_action(
    emu: TwilioEmulator, app: FakeApp, bridge: FakeBridge
) -> None:
    """When the bridge closes the socket, Twilio requests <Connect action>."""

    async def close_soon(ws: ServerConnection) -> None:
        await ws.close()

    bridge.on_start = close_soon
    app.twiml["/voice"] = stream_twiml(bridge.url(), action=f"{APP}/after-stream")
    app.twiml["/after-stream"] = say("さようなら")
    handle = await emu.inbound_call(
        from_="+819012345678", to="+81312345678", voice_url=f"{APP}/voice"
    )
    done = await handle.wait_finished(2)
    assert "stop" not in bridge.events()
    assert app.to("/after-stream")[0].signature_valid
    assert done.said() == ["さようなら"]
    assert done.entries("stream-end")[0].detail["by"] == "server"


async def test_a_broken_stream_follows_connect_action_and_the_script_goes_on(
    emu: TwilioEmulator, app: FakeApp, bridge: FakeBridge
) -> None:
    """Our process dies under a stream (the socket breaks: no close frame): Twilio
    requests <Connect action> with the call's parameters and runs what it gets; a
    new <Connect><Stream> opens a second stream on the same call, where the rest
    of the caller's script plays (the step the break cut short again)."""
    streams = 0

    async def break_the_first(ws: ServerConnection) -> None:
        nonlocal streams
        streams += 1
        if streams == 1:
            await asyncio.sleep(0.05)
            ws.transport.abort()

    bridge.on_start = break_the_first
    app.twiml["/voice"] = stream_twiml(bridge.url(), action=f"{APP}/after-stream")
    app.twiml["/after-stream"] = stream_twiml(bridge.url(), action=f"{APP}/end")
    app.twiml["/end"] = "<Response><Hangup/></Response>"
    handle = await emu.inbound_call(
        from_="+819012345678",
        to="+81312345678",
        voice_url=f"{APP}/voice",
        caller_script=[sim.Pause(ms=400), sim.Dtmf("5"), sim.HangUp()],
    )
    done = await handle.wait_finished(5)
    ends = [e.detail for e in done.entries("stream-end")]
    assert ends[0]["by"] == "broken" and ends[0]["code"] == 1006
    assert ends[1]["by"] == "caller"
    (action,) = app.to("/after-stream")
    assert action.signature_valid
    assert action.params["CallSid"] == handle.sid
    assert action.params["CallStatus"] == "in-progress"
    assert len(done.streams) == 2
    first, second = done.streams
    assert first.closed_by_server is not None and second.closed_by_server is None
    assert [m["dtmf"]["digit"] for m in bridge.messages if m["event"] == "dtmf"] == [
        "5"
    ]
    assert bridge.events()[-1] == "stop"  # the script hung up on the second stream
    assert not app.to("/end")
    assert "caller-script-error" not in [e.kind for e in done.log]


async def test_caller_hang_up_stops_the_stream_then_completes(
    emu: TwilioEmulator, app: FakeApp, bridge: FakeBridge
) -> None:
    """handle.hang_up(): stop on the stream, then the completed status callback."""
    app.twiml["/voice"] = stream_twiml(bridge.url())
    handle = await emu.inbound_call(
        from_="+819012345678",
        to="+81312345678",
        voice_url=f"{APP}/voice",
        caller_script=[sim.Speak(ms=100), sim.Pause(ms=40)],
        status_callback=f"{APP}/status",
    )
    await asyncio.wait_for(bridge.started.wait(), 2)
    await asyncio.sleep(0.2)
    await handle.hang_up()
    assert bridge.closed.is_set()
    assert bridge.events() == ["connected", "start", "stop"]
    assert sum(1 for m in bridge.messages if m["event"] == "media") >= 5
    (status,) = app.to("/status")
    assert status.params["CallStatus"] == "completed"
    assert status.at > bridge.times[-1]  # stop first, then the callback
    assert handle.call.status == "completed"


async def test_caller_script_hang_up_ends_the_call(
    emu: TwilioEmulator, app: FakeApp, bridge: FakeBridge
) -> None:
    app.twiml["/voice"] = stream_twiml(bridge.url())
    handle = await emu.inbound_call(
        from_="+819012345678",
        to="+81312345678",
        voice_url=f"{APP}/voice",
        caller_script=[sim.Dtmf("5"), sim.HangUp()],
    )
    done = await handle.wait_finished(2)
    assert bridge.events() == ["connected", "start", "dtmf", "stop"]
    assert done.entries("hangup")[0].detail["by"] == "caller"


# ---------------------------------------------------------------- standalone


def test_runs_standalone() -> None:
    """python -m realtime.emulators.twilio_api serves the REST API."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "realtime.emulators.twilio_api",
            "--port",
            "0",
            "--account-sid",
            AC,
            "--auth-token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert base_url, line
        client = Client(AC, TOKEN)
        client.api.base_url = base_url.group(0)
        assert client.calls.list() == []
    finally:
        process.terminate()
        process.wait(5)


async def test_handoff_moves_the_streaming_caller_into_a_conference(
    emu: TwilioEmulator, client: Client, app: FakeApp, bridge: FakeBridge
) -> None:
    """The handoff shape: the caller's stream is replaced by a waiting
    conference leg; the agent leg's join starts the room."""
    app.twiml["/voice"] = stream_twiml(bridge.url())
    caller = await emu.inbound_call(
        from_="+819012345678", to="+81312345678", voice_url=f"{APP}/voice"
    )
    await asyncio.wait_for(bridge.started.wait(), 2)
    hold = Dial()
    hold.conference(
        "handoff-7", start_conference_on_enter=False, end_conference_on_exit=False
    )
    await asyncio.to_thread(
        client.calls(caller.sid).update, twiml=str(VoiceResponse().append(hold))
    )
    await asyncio.wait_for(bridge.closed.wait(), 2)
    assert bridge.events()[-1] == "stop"

    emu.far_ends["+818070239355"] = FarEnd("answer")
    room_twiml = Dial()
    room_twiml.conference(
        "handoff-7",
        end_conference_on_exit=True,
        status_callback=f"{APP}/conference",
        status_callback_event="join leave",
    )
    agent = await create(client, twiml=str(VoiceResponse().append(room_twiml)))
    room = emu.conference("handoff-7")
    await asyncio.wait_for(room.began.wait(), 2)
    assert set(room.participants) == {caller.sid, agent.sid}
    assert (
        caller.call.entries("hold-music")[0]
        .detail["wait_url"]
        .startswith("https://twimlets.com/holdmusic")
    )
    await emu.call(agent.sid).hang_up()
    await caller.wait_finished(2)
    assert room.reason_ended == "participant-with-end-conference-on-exit-left"
    joins = [h.params["CallSid"] for h in app.to("/conference")]
    assert joins == [agent.sid, agent.sid, caller.sid]  # join, leave, leave


async def test_update_before_answer_replaces_the_first_twiml(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    emu.far_ends["+818070239355"] = FarEnd("answer", ring_s=0.1)
    call = await create(client, url=f"{APP}/answer")
    await asyncio.to_thread(client.calls(call.sid).update, twiml=say("差し替え"))
    done = await finished(emu, call.sid)
    assert app.to("/answer") == []
    assert done.said() == ["差し替え"]


async def test_cancel_a_ringing_call(
    emu: TwilioEmulator, client: Client, app: FakeApp
) -> None:
    emu.far_ends["+818070239355"] = FarEnd("answer", ring_s=1.0)
    call = await create(client, url=f"{APP}/answer", status_callback=f"{APP}/status")
    await emu.call(call.sid).wait_status("ringing")
    canceled = await asyncio.to_thread(client.calls(call.sid).update, status="canceled")
    assert canceled.status == "canceled"
    await finished(emu, call.sid)
    assert [h.params["CallStatus"] for h in app.to("/status")] == ["canceled"]
    assert app.to("/answer") == []


async def test_refused_stream_handshake_fails_the_call(
    emu: TwilioEmulator, app: FakeApp
) -> None:
    """A bridge that refuses the upgrade (bad signature, say): error 31920."""

    def refuse(connection: ServerConnection, request: Any) -> Any:
        return connection.respond(403, "bad signature\n")

    async def never(ws: ServerConnection) -> None:
        raise AssertionError("the upgrade was refused")

    async with serve(never, "127.0.0.1", 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]
        app.twiml["/voice"] = stream_twiml(f"ws://127.0.0.1:{port}/media-stream")
        handle = await emu.inbound_call(
            from_="+819012345678", to="+81312345678", voice_url=f"{APP}/voice"
        )
        done = await handle.wait_finished(3)
    assert [e.code for e in done.errors] == [31920]
    assert done.streams == []


async def test_recorded_call_posts_its_recording(
    emu: TwilioEmulator, app: FakeApp
) -> None:
    """Record=true: a recording callback (RecordingSource OutboundAPI) after
    the call completes; emu.twilio_client() is pointed at the emulator."""
    client = emu.twilio_client()
    call = await create(
        client,
        twiml=say("録音します"),
        record=True,
        recording_status_callback=f"{APP}/recording",
    )
    await finished(emu, call.sid)
    (recording,) = app.to("/recording")
    assert recording.signature_valid
    assert recording.params["CallSid"] == call.sid
    assert recording.params["RecordingSource"] == "OutboundAPI"
    assert recording.params["RecordingStatus"] == "completed"
