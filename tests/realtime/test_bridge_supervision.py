"""A supervisor barges in, takes over and hands back (F-75): CallBridge against the
fake Realtime server, a fake Twilio side and an in-memory store (no Django)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from realtime.bridge import CallBridge
from realtime.emulators import audio, scenarios
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.realtime_record import RealtimeConnection
from realtime.protocol.bridge_state import BridgeState, SendAudio
from realtime.protocol.caller_audio import PCM16_24K
from realtime.protocol.openai_events import SessionConfig, Transcription
from realtime.supervision.control import PhoneFrames, SupervisorControl
from realtime.supervision.transcriber import transcription_url
from tests.realtime.test_bridge_unit import MemoryStore, _config, _start_frames

pytestmark = pytest.mark.timeout(30)

SCENARIO = dataclasses.replace(
    scenarios.GREET_THEN_ANSWER,
    audio_speed=1.0,  # the greeting streams in real time: long enough to barge into
    reply_ms=4000,
    transcription_delay_s=0.0,
    silence_ms=200,
)
SESSION = SessionConfig(
    instructions="テスト",
    transcription=Transcription("gpt-4o-transcribe", "ja"),
)


class SupervisedStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.released = 0

    async def release_supervisor_hold(self) -> None:
        self.released += 1


class TwilioSide:
    """What the bridge sent to Twilio, in order."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: list[int] = []

    async def send(self, frame: str) -> None:
        self.frames.append(json.loads(frame))

    async def close(self, code: int) -> None:
        self.closed.append(code)

    def events(self) -> list[str]:
        return [f["event"] for f in self.frames]

    def media_after_clear(self) -> list[bytes]:
        events = self.events()
        last_clear = len(events) - 1 - events[::-1].index("clear")
        return [
            base64.b64decode(f["media"]["payload"])
            for f in self.frames[last_clear:]
            if f["event"] == "media"
        ]


def tone24(ms: int = 20, amplitude: int = 8000, freq: float = 440.0) -> bytes:
    """PCM16 24 kHz mono: one microphone frame (20 ms) of a sine."""
    count = 24 * ms
    return b"".join(
        struct.pack("<h", int(amplitude * math.sin(2 * math.pi * freq * n / 24000)))
        for n in range(count)
    )


SILENCE24 = bytes(960)


def rms(ulaw: bytes) -> float:
    samples = audio.decode_ulaw(ulaw)
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


async def until(predicate: Callable[[], Any], within_s: float = 10.0) -> None:
    """Poll ``predicate`` every 10 ms; fail the test if it never holds."""
    for _ in range(int(within_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never held within {within_s} s: {predicate}")


@dataclasses.dataclass
class Call:
    bridge: CallBridge
    twilio: TwilioSide
    store: SupervisedStore
    server: FakeRealtimeServer

    @property
    def model(self) -> RealtimeConnection:
        return self.server.connections[0]

    def transcription_connection(self) -> RealtimeConnection | None:
        for connection in self.server.connections:
            if "intent=transcription" in connection.path:
                return connection
        return None

    async def caller_says(self, ulaw: bytes) -> None:
        for at in range(0, len(ulaw), 160):
            payload = base64.b64encode(ulaw[at : at + 160]).decode()
            await self.bridge.on_twilio_frame(
                json.dumps(
                    {
                        "event": "media",
                        "sequenceNumber": str(at // 160 + 3),
                        "streamSid": "MZ1",
                        "media": {
                            "track": "inbound",
                            "chunk": str(at // 160 + 1),
                            "timestamp": str(at // 8),
                            "payload": payload,
                        },
                    }
                )
            )

    async def supervisor_says(self, listener: str, frames: list[bytes]) -> None:
        for frame in frames:
            await self.bridge.on_supervisor_audio(listener, frame)
            await asyncio.sleep(0)

    async def control(self, command: str, **data: Any) -> None:
        await self.bridge.on_control(command, {"by_id": 7, "by_name": "佐藤", **data})


@pytest.fixture
async def call() -> AsyncIterator[Callable[..., Any]]:
    made: list[Call] = []

    async def start(*, greeting: str | None = None, **overrides: Any) -> Call:
        server = FakeRealtimeServer(SCENARIO, api_key=None)
        await server.start()
        twilio = TwilioSide()
        store = SupervisedStore()
        bridge = CallBridge(
            _config(
                server.url,
                session=SESSION,
                greeting=greeting,
                **{"supervisor_grace_s": 0.05, **overrides},
            ),
            store=store,
            send_to_twilio=twilio.send,
            close_twilio=twilio.close,
        )
        await bridge.start()
        await _start_frames(bridge)
        made.append(Call(bridge, twilio, store, server))
        await until(lambda: server.connections and bridge.state.session_confirmed)
        return made[-1]

    yield start
    for each in made:
        await each.bridge.finish("test")
        await each.server.close()


def _turn_detection(event: dict[str, Any]) -> dict[str, Any]:
    return event["session"]["audio"]["input"]["turn_detection"]


async def test_barge_stops_the_ai_and_the_caller_hears_the_supervisor(call):
    c = await call(greeting="Greet the caller.")
    await until(lambda: c.twilio.events().count("media") >= 3)
    await c.control("supervise-barge", listener="L1")
    await c.model.wait_received("response.cancel", timeout_s=5)
    await until(lambda: "cancelled" in c.model.response_statuses.values())
    update = c.model.received_of("session.update")[-1]
    assert _turn_detection(update)["create_response"] is False
    assert _turn_detection(update)["interrupt_response"] is False
    assert c.model.received_of("conversation.item.truncate")
    assert "clear" in c.twilio.events()

    await c.supervisor_says("L1", [tone24()] * 25)
    await c.supervisor_says("L2", [tone24()] * 5)  # listening only: not on the line
    sent = c.bridge.supervisor_control
    assert sent is not None and sent.frames_sent >= 24
    after = c.twilio.media_after_clear()
    # Everything the caller got since the clear is the supervisor's, in 20 ms frames.
    assert len(after) == sent.frames_sent
    assert {len(m) for m in after} == {160}
    assert rms(b"".join(after[2:])) > 3000
    assert not [e for e, _ in c.store.events if e == "control"]


async def test_take_over_keeps_the_ai_silent_and_transcribes_both_sides(call):
    c = await call()
    await c.control("supervise-take-over", listener="L1")
    await until(c.transcription_connection)
    transcription = c.transcription_connection()
    assert transcription is not None
    await transcription.wait_received("session.update")
    created_before = len(c.model.sent_of("response.created"))

    await c.caller_says(audio.speech(600) + audio.silence(400))
    await until(lambda: ("customer", SCENARIO.caller_transcripts[0]) in c.store.lines)
    assert c.model.sent_of("input_audio_buffer.speech_started")
    assert c.twilio.events().count("clear") == 1  # the take-over's, not the caller's
    await c.supervisor_says("L1", [tone24()] * 30 + [SILENCE24] * 20)
    await until(lambda: ("agent", SCENARIO.supervisor_transcripts[0]) in c.store.lines)

    assert len(c.model.sent_of("response.created")) == created_before
    assert not c.model.received_of("response.create")
    session = transcription.received_of("session.update")[0]["session"]
    assert session["type"] == "transcription"
    assert session["audio"]["input"]["transcription"]["language"] == "ja"
    assert transcription.violations == []

    # Hand back: the note reaches the model, answers are back on, the AI answers.
    await c.control("supervise-hand-back")
    note = await c.model.wait_received("conversation.item.create", timeout_s=5)
    text = note["item"]["content"][0]["text"]
    assert note["item"]["role"] == "system"
    assert f"お客様: {SCENARIO.caller_transcripts[0]}" in text
    assert f"オペレーター（佐藤）: {SCENARIO.supervisor_transcripts[0]}" in text
    update = c.model.received_of("session.update")[-1]
    assert _turn_detection(update)["create_response"] is True
    await c.model.wait_received("response.create", timeout_s=5)
    await until(lambda: len(c.model.sent_of("response.created")) > created_before)
    media_before = c.twilio.events().count("media")
    await until(lambda: c.twilio.events().count("media") > media_before)
    await until(lambda: transcription.closed)  # closed at the hand-back
    c.server.assert_complete()


async def test_a_lost_supervisor_leaves_the_call_with_the_ai(call):
    c = await call()
    await c.control("supervise-take-over", listener="L1")
    await c.bridge.on_supervisor_lost("L9")  # someone else: nothing happens
    await c.bridge.on_supervisor_lost("L1")
    await c.model.wait_received("response.create", timeout_s=5)
    assert (
        "supervise-hand-back",
        {"by_id": None, "reason": "supervisor-lost"},
    ) in c.store.events
    assert c.store.released == 1
    assert not c.bridge.state.paused
    # Not silence: the AI speaks to the caller again.
    await until(lambda: "media" in c.twilio.events())


async def test_a_supervisor_back_within_the_grace_keeps_the_call(call):
    c = await call(supervisor_grace_s=0.3)
    await c.control("supervise-take-over", listener="L1")
    await c.bridge.on_supervisor_lost("L1")
    await c.control("supervise-take-over", listener="L2")  # reconnected
    await asyncio.sleep(0.5)
    assert c.bridge.state.paused
    assert c.store.released == 0
    assert not c.model.received_of("response.create")


async def test_a_model_reconnect_while_held_stays_paused(call):
    """F-25's new session is sent paused, and the hand-back still works on it."""
    c = await call()
    await c.control("supervise-take-over")  # an API client: no microphone
    model = c.bridge._model
    assert model is not None
    await model.close()  # the socket drops under the call
    await until(lambda: len(c.server.connections) >= 2)
    second = c.server.connections[1]
    update = await second.wait_received("session.update", timeout_s=5)
    assert _turn_detection(update)["create_response"] is False
    assert _turn_detection(update)["interrupt_response"] is False
    assert c.bridge.state.paused
    await until(lambda: c.bridge.state.session_confirmed)
    await c.control("supervise-hand-back")
    await second.wait_received("response.create", timeout_s=5)
    assert not c.model.received_of("response.create")


async def test_a_transcriber_that_cannot_connect_does_not_hurt_the_call(call):
    c = await call()
    c.server.fail_handshakes(500, count=5)  # the transcriber's connects fail
    await c.control("supervise-barge", listener="L1")
    await until(
        lambda: any(e == "supervise-transcription-failed" for e, _ in c.store.events)
    )
    await c.supervisor_says("L1", [tone24()] * 10)
    control = c.bridge.supervisor_control
    assert control is not None and control.frames_sent >= 9
    await c.control("supervise-barge-end")
    await c.model.wait_received("response.create", timeout_s=5)
    await until(lambda: "media" in c.twilio.events()[-5:])
    assert not c.bridge.state.paused


def test_phone_frames_are_whole_mulaw_frames_with_the_signal():
    frames = PhoneFrames()
    out = [f for _ in range(50) for f in frames.encode(tone24(amplitude=8000))]
    assert len(out) in (49, 50)  # the resampler holds back a few samples
    assert {len(f) for f in out} == {160}
    level = rms(b"".join(out[1:]))
    assert 8000 / math.sqrt(2) * 0.85 < level < 8000 / math.sqrt(2) * 1.15
    assert rms(b"".join(PhoneFrames().encode(bytes(960 * 5)))) < 50


def test_the_transcription_url_keeps_the_host_and_swaps_the_model_for_the_intent():
    assert (
        transcription_url("wss://api.openai.com/v1/realtime?model=gpt-realtime")
        == "wss://api.openai.com/v1/realtime?intent=transcription"
    )
    assert (
        transcription_url("ws://127.0.0.1:9/v1/realtime?x=1&model=m")
        == "ws://127.0.0.1:9/v1/realtime?x=1&intent=transcription"
    )


class RecordingTranscriber:
    """Stands in for the transcription socket: what it was fed."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.fed: list[bytes] = []
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def feed(self, pcm24: bytes) -> None:
        self.fed.append(pcm24)

    async def close(self) -> None:
        self.closed = True


async def test_a_web_call_gets_the_supervisors_pcm_as_it_is():
    state = BridgeState(session=SessionConfig(audio=PCM16_24K))
    state.on_model_connected()
    state.on_caller_start("web-1", call_ref="c1", now_ms=0)
    to_caller: list[SendAudio] = []
    made: list[RecordingTranscriber] = []

    async def perform(actions: list[Any]) -> None:
        pass

    async def send(command: SendAudio) -> None:
        to_caller.append(command)

    def transcriber(**options: Any) -> RecordingTranscriber:
        made.append(RecordingTranscriber(**options))
        return made[-1]

    control = SupervisorControl(
        state=state,
        audio=PCM16_24K,
        perform=perform,
        to_caller=send,
        record_event=lambda *_: None,
        release_hold=lambda: None,
        model_url="ws://127.0.0.1:9/v1/realtime?model=gpt-realtime",
        api_key="sk-test",
        transcription=None,
        grace_s=1.0,
        transcriber_factory=transcriber,  # type: ignore[arg-type]
    )
    await control.on_audio("L1", tone24())  # nobody holds the call yet
    await control.on_command("supervise-take-over", {"listener": "L1", "by_name": ""})
    frames = [tone24(), tone24(freq=220.0)]
    for frame in frames:
        await control.on_audio("L1", frame)
    assert [base64.b64decode(c.payload_b64) for c in to_caller] == frames
    assert {c.stream_sid for c in to_caller} == {"web-1"}
    (fed,) = made
    assert fed.started and fed.fed == frames
    await control.on_command("supervise-hand-back", {})
    assert fed.closed
    await control.on_audio("L1", tone24())
    assert len(to_caller) == 2
