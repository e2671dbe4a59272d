"""The simulated Twilio caller, driven by a tiny bridge server in the test."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from realtime.emulators import audio, scenarios
from realtime.emulators.caller import (
    Dtmf,
    HangUp,
    Pause,
    SimulatedCaller,
    Speak,
    TwimlError,
    WaitForAudio,
    WaitUntilQuiet,
    parse_stream_twiml,
    post_webhook,
    sign_request,
    voice_webhook_params,
)
from realtime.emulators.caller_media import Playback
from realtime.emulators.fake_realtime import FakeRealtimeServer

FAST = 0.1  # ten times real time where the pace is not the point


class Bridge:
    """Stands in for our bridge: records the caller's frames, sends ours."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.all: list[dict[str, Any]] = []
        self.connected = asyncio.Event()
        self.ws: ServerConnection | None = None
        self.headers: dict[str, str] = {}
        self.path = ""
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.ws = ws
        self.headers = dict(ws.request.headers.raw_items())
        self.path = ws.request.path
        self.connected.set()
        async for frame in ws:
            message = json.loads(frame)
            self.all.append(message)
            await self.frames.put(message)

    async def next(self, event: str, timeout_s: float = 2.0) -> dict[str, Any]:
        """Return the next frame of ``event``, skipping others."""
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.frames.get()
                if message["event"] == event:
                    return message

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.connected.wait()
        assert self.ws is not None
        if isinstance(message, dict):
            message = json.dumps(message)
        await self.ws.send(message)

    async def media(self, sid: str, ulaw: bytes) -> None:
        payload = base64.b64encode(ulaw).decode()
        await self.send(
            {"event": "media", "streamSid": sid, "media": {"payload": payload}}
        )

    async def mark(self, sid: str, name: str) -> None:
        await self.send({"event": "mark", "streamSid": sid, "mark": {"name": name}})


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    stand_in = Bridge()
    async with serve(stand_in.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        stand_in.url = f"ws://127.0.0.1:{port}/media-stream"
        yield stand_in


# -- the stream as Twilio sends it -----------------------------------------------------


async def test_connected_then_start_with_custom_parameters(bridge):
    """connected has no sequenceNumber; start is "1" and carries everything."""
    async with SimulatedCaller(
        bridge.url, parameters={"call_id": "42", "token": "t"}, time_scale=FAST
    ) as caller:
        connected = await bridge.next("connected")
        start = await bridge.next("start")
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["sequenceNumber"] == "1"
    assert re.fullmatch(r"MZ[0-9a-f]{32}", start["streamSid"])
    assert start["streamSid"] == caller.stream_sid
    assert start["start"] == {
        "streamSid": caller.stream_sid,
        "accountSid": caller.account_sid,
        "callSid": caller.call_sid,
        "tracks": ["inbound"],
        "customParameters": {"call_id": "42", "token": "t"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    assert re.fullmatch(r"AC[0-9a-f]{32}", caller.account_sid)
    assert re.fullmatch(r"CA[0-9a-f]{32}", caller.call_sid)


async def test_media_frames_are_20_ms_of_mulaw_with_string_counters(bridge):
    """media: 160 bytes, chunk from "1", timestamp in ms, all strings."""
    async with SimulatedCaller(bridge.url, time_scale=FAST) as caller:
        frames = [await bridge.next("media") for _ in range(5)]
    for n, frame in enumerate(frames):
        assert frame["sequenceNumber"] == str(n + 2)
        assert frame["streamSid"] == caller.stream_sid
        media = frame["media"]
        assert media["track"] == "inbound"
        assert media["chunk"] == str(n + 1)
        assert media["timestamp"] == str(n * 20)
        assert base64.b64decode(media["payload"]) == audio.silence(20)


async def test_frames_flow_at_real_time_pace(bridge):
    """At time_scale 1, a frame goes out every 20 ms, silence included."""
    loop = asyncio.get_running_loop()
    async with SimulatedCaller(bridge.url):
        await bridge.next("media")
        began = loop.time()
        for _ in range(15):
            await bridge.next("media")
        elapsed = loop.time() - began
    assert 0.27 <= elapsed <= 0.5  # never faster; late only under heavy load


async def test_script_speaks_presses_keys_and_hangs_up(bridge):
    """Speak sends speech frames, Dtmf a dtmf event, and the end a stop."""
    caller = SimulatedCaller(bridge.url, time_scale=FAST)
    await caller.run([Pause(40), Speak(ms=100), Dtmf("5"), Pause(20), HangUp()])
    await asyncio.sleep(0.05)
    kinds = [m["event"] for m in bridge.all]
    assert kinds[:2] == ["connected", "start"]
    assert kinds[-1] == "stop"
    media = [m for m in bridge.all if m["event"] == "media"]
    loud = [
        m
        for m in media
        if not audio.is_silence(base64.b64decode(m["media"]["payload"]))
    ]
    assert len(loud) == 5
    dtmf = next(m for m in bridge.all if m["event"] == "dtmf")
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "5"}
    stop = bridge.all[-1]
    assert stop["stop"] == {
        "accountSid": caller.account_sid,
        "callSid": caller.call_sid,
    }
    numbers = [int(m["sequenceNumber"]) for m in bridge.all[1:]]
    assert numbers == list(range(1, len(numbers) + 1))
    assert caller.closed
    assert caller.closed_by_server is None
    caller.assert_clean()


async def test_sends_nothing_after_stop(bridge):
    """Hanging up twice is harmless and stop is sent once."""
    caller = SimulatedCaller(bridge.url, time_scale=FAST)
    await caller.connect()
    await caller.hang_up()
    await caller.hang_up()
    await asyncio.sleep(0.02)
    assert [m["event"] for m in bridge.all].count("stop") == 1


# -- playback and marks ----------------------------------------------------------------


async def test_mark_is_echoed_once_its_audio_has_played(bridge):
    """A mark comes back after the audio queued before it (8 bytes/ms)."""
    loop = asyncio.get_running_loop()
    async with SimulatedCaller(bridge.url, time_scale=FAST) as caller:
        await bridge.next("start")
        sent_at = loop.time()
        await bridge.media(caller.stream_sid, audio.tone(400))
        await bridge.mark(caller.stream_sid, "reply-1")
        echo = await bridge.next("mark")
        echoed_after = loop.time() - sent_at
    assert echo == {
        "event": "mark",
        "sequenceNumber": echo["sequenceNumber"],
        "streamSid": caller.stream_sid,
        "mark": {"name": "reply-1"},
    }
    assert echoed_after >= 0.4 * FAST
    record = caller.marks_echoed[0]
    assert record.name == "reply-1"
    assert record.cleared is False
    assert record.heard_ms == 400
    assert caller.heard_bytes == audio.tone(400)


async def test_mark_with_nothing_queued_comes_straight_back(bridge):
    """With an empty queue a mark is returned at once."""
    async with SimulatedCaller(bridge.url, time_scale=FAST) as caller:
        await bridge.next("start")
        await bridge.mark(caller.stream_sid, "empty")
        echo = await bridge.next("mark", timeout_s=0.05)
    assert echo["mark"]["name"] == "empty"


async def test_clear_drops_the_queue_and_returns_pending_marks_at_once(bridge):
    """clear: queued audio is never heard; every pending mark returns now."""
    async with SimulatedCaller(bridge.url, time_scale=FAST) as caller:
        sid = caller.stream_sid
        await bridge.next("start")
        await bridge.media(sid, audio.tone(2000))
        await bridge.mark(sid, "a")
        await bridge.media(sid, audio.tone(500))
        await bridge.mark(sid, "b")
        await caller.wait_for_audio(100)
        await bridge.send({"event": "clear", "streamSid": sid})
        first = await bridge.next("mark", timeout_s=0.05)
        second = await bridge.next("mark", timeout_s=0.05)
        heard = caller.heard_ms
        await asyncio.sleep(0.05)
    assert [first["mark"]["name"], second["mark"]["name"]] == ["a", "b"]
    assert all(m.cleared for m in caller.marks_echoed)
    assert 100 <= heard < 2000
    assert caller.heard_ms == heard  # nothing more played after the clear
    assert caller.queued_ms == 0
    assert caller.clears == 1
    caller.assert_clean()


async def test_wait_until_quiet_waits_for_playback(bridge):
    """WaitUntilQuiet returns once the reply has played and nothing follows."""
    caller = SimulatedCaller(bridge.url, time_scale=FAST)
    await caller.connect()
    await bridge.next("start")
    await bridge.media(caller.stream_sid, audio.tone(300))
    await caller.run([WaitUntilQuiet(quiet_ms=100), WaitForAudio(0)], hang_up=True)
    assert caller.heard_ms == 300


def test_playback_queue_rules():
    """The sans-I/O playback: 160 bytes per tick, marks after their audio."""
    playback = Playback()
    playback.add_media(b"\x01" * 200)
    assert playback.add_mark("m", now=0.0) == []
    assert playback.tick(now=0.0) == []
    assert len(playback.heard) == 160
    assert playback.tick(now=0.02) == []  # the last 40 bytes play now
    assert [m.name for m in playback.tick(now=0.04)] == ["m"]
    assert playback.add_mark("idle", now=1.0)[0].name == "idle"


# -- what Twilio refuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        (b"\x00\x01", 31950, "binary"),
        ("{oops", 31951, "invalid JSON"),
        ({"event": "speak", "streamSid": "SID"}, 31951, "unsupported event"),
        ({"event": "clear", "streamSid": "MZwrong"}, 31951, "wrong streamSid"),
        ({"event": "clear"}, 31951, "missing ['streamSid']"),
        ({"event": "clear", "streamSid": None}, 31951, "wrong streamSid"),
        (
            {"event": "mark", "streamSid": "SID"},
            31951,
            "missing ['mark']",
        ),  # OpenAI demo
        ({"event": "mark", "streamSid": "SID", "mark": "m"}, 31951, "mark must be"),
        ({"event": "mark", "streamSid": "SID", "mark": {}}, 31951, "mark must be"),
        (
            {
                "event": "media",
                "streamSid": "SID",
                "media": {"payload": "//8=", "track": "outbound"},
            },
            31951,
            "media must be",
        ),
        (
            {"event": "media", "streamSid": "SID", "media": {"payload": "@@"}},
            31951,
            "base64",
        ),
        (
            {
                "event": "media",
                "streamSid": "SID",
                "sequenceNumber": "1",
                "media": {"payload": "//8="},
            },
            31951,
            "unexpected ['sequenceNumber']",
        ),
    ],
)
async def test_refuses_what_twilio_refuses(bridge, frame, code, reason):
    """A bad frame is recorded, ignored, and makes assert_clean() fail."""
    async with SimulatedCaller(bridge.url, time_scale=FAST) as caller:
        await bridge.next("start")
        if isinstance(frame, dict):
            frame = json.dumps(frame).replace('"SID"', json.dumps(caller.stream_sid))
        await bridge.send(frame)
        await bridge.mark(caller.stream_sid, "after")  # a valid frame still works
        await bridge.next("mark")
    assert len(caller.violations) == 1
    violation = caller.violations[0]
    assert violation.code == code
    assert reason in violation.reason
    assert caller.heard_ms == 0
    with pytest.raises(AssertionError, match=str(code)):
        caller.assert_clean()


async def test_refuses_frames_before_start(bridge):
    """The bridge cannot know the streamSid before start."""
    async with SimulatedCaller(
        bridge.url, time_scale=FAST, start_delay_ms=500
    ) as caller:
        pass
    assert caller.violations == []
    caller = SimulatedCaller(bridge.url, time_scale=FAST, start_delay_ms=500)
    bridge.connected.clear()
    connecting = asyncio.create_task(caller.connect())
    await bridge.connected.wait()
    await bridge.send({"event": "clear", "streamSid": caller.stream_sid})
    await connecting
    await caller.hang_up()
    assert [v.reason for v in caller.violations] == ["message before start"]


async def test_bridge_close_is_recorded_and_ends_the_script(bridge):
    """closed_by_server holds the bridge's close code and reason."""
    caller = SimulatedCaller(bridge.url, time_scale=FAST)
    await caller.connect()
    await bridge.next("start")
    assert bridge.ws is not None
    await bridge.ws.close(1000, "call ended")
    await caller.run([Pause(10_000)])
    assert caller.closed_by_server == (1000, "call ended")
    assert "stop" not in [m["event"] for m in bridge.all]


# -- latency probe ---------------------------------------------------------------------------


async def test_probe_frames_measure_the_echo_round_trip(bridge):
    """In probe mode, echoed audio maps back to the frames that caused it."""
    caller = SimulatedCaller(bridge.url, time_scale=FAST, probe=True)
    await caller.connect()
    await bridge.next("start")
    pending = b""
    for n in range(20):
        frame = await bridge.next("media")
        pending += base64.b64decode(frame["media"]["payload"])
        if n % 2:  # re-chunk: two frames per echoed message, split oddly
            await bridge.media(caller.stream_sid, pending[:100])
            await bridge.media(caller.stream_sid, pending[100:])
            pending = b""
    await asyncio.sleep(0.01)
    await caller.hang_up()
    latencies = caller.echo_latencies_ms()
    assert len(latencies) == 20
    assert all(0 <= latency < 50 for latency in latencies)
    assert caller.frames_sent >= 20
    assert len(caller.media_received()) == 20


# -- webhook and TwiML -----------------------------------------------------------------------


def test_signature_matches_the_published_test_vector():
    """PROTOCOL B4: token 12345 and Twilio's example request."""
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert sign_request("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


async def test_upgrade_carries_a_signature_over_the_wss_url(bridge):
    """X-Twilio-Signature is computed over wss://host/path with no parameters."""
    async with SimulatedCaller(bridge.url, auth_token="secret", time_scale=FAST):
        await bridge.next("start")
    signature = bridge.headers["X-Twilio-Signature"]
    wss_url = bridge.url.replace("ws://", "wss://")
    validator = RequestValidator("secret")
    assert validator.validate(wss_url, {}, signature)
    assert not validator.validate(bridge.url, {}, signature)
    assert bridge.path == "/media-stream"


async def test_signature_url_can_be_the_public_one(bridge):
    """Behind a proxy, sign the public URL the bridge validates against."""
    public = "wss://calls.example.jp/media-stream"
    async with SimulatedCaller(
        bridge.url, auth_token="secret", signature_url=public, time_scale=FAST
    ):
        await bridge.next("start")
    assert RequestValidator("secret").validate(
        public, {}, bridge.headers["X-Twilio-Signature"]
    )


async def test_no_signature_without_a_token(bridge):
    """Unsigned upgrades are possible (to test that the bridge refuses them)."""
    async with SimulatedCaller(bridge.url, time_scale=FAST):
        await bridge.next("start")
    assert "X-Twilio-Signature" not in bridge.headers


async def test_post_webhook_is_form_encoded_and_signed():
    """The voice webhook validates with RequestValidator on the server side."""
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        seen["valid"] = RequestValidator("tok").validate(
            str(request.url), form, request.headers["X-Twilio-Signature"]
        )
        seen["type"] = request.headers["Content-Type"]
        seen["form"] = form
        return httpx.Response(200, text="<Response/>")

    params = voice_webhook_params(from_="+819011112222")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        response = await post_webhook(
            "https://calls.example.jp/webhooks/voice", params, "tok", client=client
        )
    assert response.status_code == 200
    assert seen["valid"] is True
    assert seen["type"] == "application/x-www-form-urlencoded"
    assert seen["form"]["From"] == "+819011112222"
    assert seen["form"]["Direction"] == "inbound"
    assert re.fullmatch(r"CA[0-9a-f]{32}", seen["form"]["CallSid"])


def test_parse_stream_twiml_reads_url_and_parameters():
    """The twilio library's own TwiML parses into a StreamInstruction."""
    response = VoiceResponse()
    response.say("お電話ありがとうございます。", language="ja-JP")
    connect = Connect()
    stream = connect.stream(url="wss://calls.example.jp/media-stream", name="ai")
    stream.parameter(name="call_id", value="42")
    stream.parameter(name="token", value="abc")
    response.append(connect)
    instruction = parse_stream_twiml(str(response))
    assert instruction.url == "wss://calls.example.jp/media-stream"
    assert instruction.parameters == {"call_id": "42", "token": "abc"}
    assert instruction.name == "ai"


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<Response><Say>hi</Say><Hangup/></Response>", "no <Connect><Stream>"),
        (
            '<Response><Connect><Stream url="wss://h/s?token=1"/></Connect></Response>',
            "query string",
        ),
        (
            '<Response><Connect><Stream url="https://h/s"/></Connect></Response>',
            "wss",
        ),
        ('<Response><Connect><Stream url="/s"/></Connect></Response>', "wss"),
        ("<Response><Connect>", "not XML"),
        ("<Other/>", "not <Response>"),
    ],
)
def test_parse_stream_twiml_refuses_what_twilio_cannot_use(xml, message):
    """No stream, a query string, a non-ws URL or broken XML raise TwimlError."""
    with pytest.raises(TwimlError, match=re.escape(message)):
        parse_stream_twiml(xml)


# -- both emulators together ------------------------------------------------------------------


async def _minimal_relay(twilio: ServerConnection, model_url: str) -> None:
    """The least a bridge does: caller audio to the model, model audio back."""
    async with connect(
        model_url + "?model=gpt-realtime",
        additional_headers={"Authorization": "Bearer sk-test"},
    ) as model:
        await model.recv()  # session.created
        pcmu = {"type": "audio/pcmu"}
        session = {
            "type": "realtime",
            "audio": {"input": {"format": pcmu}, "output": {"format": pcmu}},
        }
        await model.send(json.dumps({"type": "session.update", "session": session}))
        stream_sid = ""

        async def model_to_caller() -> None:
            async for frame in model:
                event = json.loads(frame)
                if event["type"] == "response.output_audio.delta":
                    media = {"payload": event["delta"]}
                    await twilio.send(
                        json.dumps(
                            {"event": "media", "streamSid": stream_sid, "media": media}
                        )
                    )
                elif event["type"] == "response.done":
                    mark = {"name": event["response"]["id"]}
                    await twilio.send(
                        json.dumps(
                            {"event": "mark", "streamSid": stream_sid, "mark": mark}
                        )
                    )

        back = asyncio.create_task(model_to_caller())
        try:
            async for frame in twilio:
                message = json.loads(frame)
                if message["event"] == "start":
                    stream_sid = message["streamSid"]
                elif message["event"] == "media":
                    append = {
                        "type": "input_audio_buffer.append",
                        "audio": message["media"]["payload"],
                    }
                    await model.send(json.dumps(append))
        finally:
            back.cancel()


@pytest.fixture
async def relayed():
    """A fake model behind a minimal relay; yields (relay URL, fake server)."""
    servers = {}

    async def start(scenario):
        fake = FakeRealtimeServer(scenario)
        await fake.start()
        relay = await serve(lambda ws: _minimal_relay(ws, fake.url), "127.0.0.1", 0)
        servers[fake] = relay
        port = relay.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/media-stream", fake

    yield start
    for fake, relay in servers.items():
        relay.close()
        await relay.wait_closed()
        await fake.close()


async def test_caller_hears_the_fake_model_answer_through_a_relay(relayed):
    """Caller speech → VAD turn → the model's answer is played, its mark returned."""
    scenario = dataclasses.replace(scenarios.GREET_THEN_ANSWER, audio_speed=20.0)
    url, fake = await relayed(scenario)
    caller = SimulatedCaller(url, time_scale=FAST)
    await caller.run([Pause(100), Speak(ms=600), WaitUntilQuiet(quiet_ms=300)])
    answer = audio.tone_for_text(scenario.replies[0])
    assert caller.heard_bytes == answer
    assert [m.cleared for m in caller.marks_echoed] == [False]
    assert caller.marks_echoed[0].heard_ms == len(answer) / 8
    caller.assert_clean()
    await fake.connections[0].wait_closed()
    fake.assert_complete()


async def test_echo_frames_round_trip_latency_through_a_relay(relayed):
    """The benchmark's pattern: probe frames, ECHO_FRAMES, echo_latencies_ms()."""
    url, fake = await relayed(scenarios.ECHO_FRAMES)
    caller = SimulatedCaller(url, probe=True, time_scale=0.5)
    await caller.run([Pause(1000)])
    latencies = caller.echo_latencies_ms()
    # The frames of the last moments are still in flight when the caller hangs up:
    # a few on a quiet machine, more when CI runs two suites at once.
    assert len(latencies) >= caller.frames_sent * 3 // 5
    assert sorted(latencies)[len(latencies) // 2] < 20
    caller.assert_clean()
    await fake.connections[0].wait_closed()
    fake.assert_complete()


async def test_frame_phase_puts_the_frames_on_the_shared_grid(relayed):
    """Callers with phases 0.25 and 0.75 send half a period apart, whenever they
    connected, and keep the 20 ms pace."""
    url, _fake = await relayed(scenarios.ECHO_FRAMES)
    period = 0.020
    for phase in (0.25, 0.75):
        caller = SimulatedCaller(url, probe=True, frame_phase=phase)
        await caller.run([Pause(300)])
        sent = caller.frame_send_times
        # The median lateness, in periods: timers fire late, more so on a busy
        # machine (CI runs two suites at once).
        late = sorted(((t / period - phase) % 1.0) for t in sent[:10])[5]
        assert late < 0.25, (phase, late)
        # The pace as the median gap: one late timer (the schedule is absolute, so
        # the frames after it catch up) must not count as a slower pace.
        gaps = sorted(b - a for a, b in itertools.pairwise(sent))
        assert gaps[len(gaps) // 2] == pytest.approx(period, rel=0.25)


def test_frame_phase_outside_one_period_is_refused():
    with pytest.raises(ValueError, match="frame_phase"):
        SimulatedCaller("ws://127.0.0.1:1/stream", frame_phase=1.0)
