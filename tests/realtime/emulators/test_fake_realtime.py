"""The fake OpenAI Realtime server, driven by a raw websockets client.

Every server event any test here receives is also validated against the
official SDK's pydantic models (``openai.types.realtime.RealtimeServerEvent``).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, get_args

import pydantic
import pytest
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from realtime.emulators import audio, scenarios
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.realtime_checks import ClientEventError, check_client_event

FAST = {"audio_speed": float("inf"), "transcription_delay_s": 0.0}
PCMU = {"type": "audio/pcmu"}
REPO = Path(__file__).resolve().parents[3]

_SERVER_MODELS: dict[str, type[pydantic.BaseModel]] = {
    get_args(model.model_fields["type"].annotation)[0]: model
    for model in get_args(get_args(RealtimeServerEvent)[0])
}


def assert_sdk_valid(event: dict[str, Any]) -> None:
    """The SDK has a model for the event type and the event validates."""
    model = _SERVER_MODELS.get(event["type"])
    assert model is not None, f"no SDK server event {event['type']!r}"
    model.model_validate(event)
    assert event["event_id"], event


def fast(scenario: scenarios.Scenario = scenarios.GREET_THEN_ANSWER, **changes: Any):
    return dataclasses.replace(scenario, **{**FAST, **changes})


class Client:
    """A raw Realtime client: JSON in, JSON out, every event SDK-checked."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(
            event if isinstance(event, str | bytes) else json.dumps(event)
        )

    async def recv(self, timeout_s: float = 2.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            event = json.loads(await self.ws.recv())
        assert_sdk_valid(event)
        self.seen.append(event)
        return event

    async def until(
        self, event_type: str, timeout_s: float = 2.0
    ) -> list[dict[str, Any]]:
        """Receive events up to and including the first of ``event_type``."""
        events = []
        while True:
            event = await self.recv(timeout_s)
            events.append(event)
            if event["type"] == event_type:
                return events

    async def error(self) -> dict[str, Any]:
        events = await self.until("error")
        return events[-1]["error"]

    async def configure(self, **session: Any) -> dict[str, Any]:
        """Select μ-law both ways (plus ``session``); return session.updated."""
        body = {
            "type": "realtime",
            "audio": {
                "input": {"format": PCMU, **session.pop("input", {})},
                "output": {"format": PCMU, "voice": "marin"},
            },
            **session,
        }
        await self.send({"type": "session.update", "session": body})
        return (await self.until("session.updated"))[-1]["session"]

    async def append(self, ulaw: bytes, frame: int = 160) -> None:
        for start in range(0, len(ulaw), frame):
            chunk = base64.b64encode(ulaw[start : start + frame]).decode()
            await self.send({"type": "input_audio_buffer.append", "audio": chunk})


@asynccontextmanager
async def client(
    server: FakeRealtimeServer,
    *,
    key: str | None = "sk-test",
    query: str = "?model=gpt-realtime",
    headers: dict[str, str] | None = None,
    skip_created: bool = True,
) -> AsyncIterator[Client]:
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    async with connect(server.url + query, additional_headers=all_headers) as ws:
        raw = Client(ws)
        if skip_created:
            assert (await raw.recv())["type"] == "session.created"
        yield raw


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """Start fake servers; afterwards, SDK-check every event they sent."""
    servers: list[FakeRealtimeServer] = []

    async def start(scenario: scenarios.Scenario | None = None, **options: Any):
        server = FakeRealtimeServer(scenario or fast(), **options)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()
        for connection in server.connections:
            for event in connection.sent:
                assert_sdk_valid(event)


def collapse(types: list[str]) -> list[str]:
    """Replace each run of delta events by one "*deltas", to compare orders."""
    out: list[str] = []
    for event_type in types:
        if not event_type.endswith(".delta"):
            out.append(event_type)
        elif not out or out[-1] != "*deltas":
            out.append("*deltas")
    return out


def utterance(speech_ms: int = 600, silence_ms: int = 600) -> bytes:
    return audio.speech(speech_ms) + audio.silence(silence_ms)


# -- handshake -----------------------------------------------------------------


async def test_session_created_comes_first_with_the_full_default_session(serve):
    """session.created is sent unprompted, with 24 kHz PCM and server VAD."""
    server = await serve()
    async with client(server, skip_created=False) as c:
        created = await c.recv()
    assert created["type"] == "session.created"
    session = created["session"]
    assert session["type"] == "realtime"
    assert session["object"] == "realtime.session"
    assert session["id"].startswith("sess_")
    assert session["model"] == "gpt-realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["output_modalities"] == ["audio"]
    assert "temperature" not in session
    assert server.url == f"ws://127.0.0.1:{server.port}/v1/realtime"
    assert server.connection_count == 1


async def test_bad_key_is_accepted_then_refused_with_close_3000(serve):
    """Default auth failure: 101, error invalid_api_key, close 3000."""
    server = await serve()
    async with client(server, key="sk-wrong", skip_created=False) as c:
        error = (await c.recv())["error"]
        with pytest.raises(ConnectionClosed) as closed:
            await c.ws.recv()
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error"
    assert "sk-wrong" not in error["message"]  # keys are masked
    assert closed.value.rcvd.code == 3000
    assert closed.value.rcvd.reason == "invalid_request_error.invalid_api_key"
    connection = server.connections[0]
    await connection.wait_closed()
    assert connection.authorized is False
    assert connection.closed_by == "server"


async def test_missing_key_is_refused_too(serve):
    """No Authorization header at all gets the same treatment."""
    server = await serve()
    async with client(server, key=None, skip_created=False) as c:
        assert (await c.recv())["error"]["code"] == "invalid_api_key"


async def test_bad_key_can_be_refused_at_the_handshake(serve):
    """reject-handshake mode answers HTTP 403 and counts no connection."""
    server = await serve(auth_failure_mode="reject-handshake")
    with pytest.raises(InvalidStatus) as refused:
        async with client(server, key="sk-wrong"):
            pass
    assert refused.value.response.status_code == 403
    body = json.loads(refused.value.response.body)
    assert body["error"]["code"] == "invalid_api_key"
    assert server.connection_count == 0
    assert server.rejected_handshakes[0].status == 403


async def test_any_key_mode_accepts_any_bearer(serve):
    """api_key=None accepts any non-empty bearer key."""
    server = await serve(api_key=None)
    async with client(server, key="sk-whatever"):
        pass
    assert server.connections[0].authorized


async def test_beta_header_is_refused_with_close_4000(serve):
    """OpenAI-Beta: realtime=v1 gets beta_api_shape_disabled, then close 4000."""
    server = await serve()
    async with client(
        server, headers={"OpenAI-Beta": "realtime=v1"}, skip_created=False
    ) as c:
        error = (await c.recv())["error"]
        with pytest.raises(ConnectionClosed) as closed:
            await c.ws.recv()
    assert error["code"] == "beta_api_shape_disabled"
    assert "no longer supported" in error["message"]
    assert closed.value.rcvd.code == 4000
    assert closed.value.rcvd.reason == "invalid_request_error.beta_api_shape_disabled"
    with pytest.raises(AssertionError, match="beta_api_shape_disabled"):
        server.assert_complete()


async def test_wrong_path_is_404(serve):
    """Only /v1/realtime upgrades."""
    server = await serve()
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{server.port}/v1/other"):
            pass
    assert refused.value.response.status_code == 404


async def test_missing_model_is_a_violation(serve):
    """A URL without ?model= still connects, but assert_complete flags it."""
    server = await serve()
    async with client(server, query="") as c:
        await c.configure()
    with pytest.raises(AssertionError, match="missing_model"):
        server.assert_complete()


async def test_handshake_delay(serve):
    """handshake_delay_s delays the upgrade."""
    server = await serve(handshake_delay_s=0.2)
    began = time.monotonic()
    async with client(server):
        assert time.monotonic() - began >= 0.2


# -- session.update ------------------------------------------------------------


async def test_session_update_deep_merges_and_answers_the_full_session(serve):
    """Only the fields sent change; session.updated carries the whole session."""
    server = await serve()
    async with client(server) as c:
        first = await c.configure(
            input={
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}
            },
            instructions="あなたは受付係です。",
        )
        assert first["audio"]["input"]["format"] == PCMU  # no leftover "rate"
        assert first["audio"]["output"]["format"] == PCMU
        vad = first["audio"]["input"]["turn_detection"]
        assert vad["silence_duration_ms"] == 500
        assert vad["prefix_padding_ms"] == 300  # kept from the default
        assert vad["interrupt_response"] is True
        assert first["instructions"] == "あなたは受付係です。"
        assert first["tools"] == []

        await c.send(
            {
                "type": "session.update",
                "event_id": "evt_client_1",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "output": {"speed": 1.2},
                        "input": {"turn_detection": None},
                    },
                    "model": "gpt-realtime-mini",
                },
            }
        )
        updated = (await c.until("session.updated"))[-1]
    second = updated["session"]
    assert updated["event_id"] != "evt_client_1"  # the client's id is not echoed
    assert second["audio"]["output"] == {"format": PCMU, "voice": "marin", "speed": 1.2}
    assert second["audio"]["input"]["turn_detection"] is None
    assert second["audio"]["input"]["format"] == PCMU
    assert second["instructions"] == "あなたは受付係です。"
    assert second["model"] == "gpt-realtime"  # the model cannot change
    assert server.connections[0].session == second
    server.assert_complete()


async def test_missing_session_type_is_refused_and_changes_nothing(serve):
    """session.type is required; the old configuration stays."""
    server = await serve()
    async with client(server) as c:
        await c.send(
            {
                "type": "session.update",
                "event_id": "evt_7",
                "session": {"audio": {"output": {"format": PCMU}}},
            }
        )
        error = await c.error()
        assert error == {
            "type": "invalid_request_error",
            "code": "missing_required_parameter",
            "message": "Missing required parameter: 'session.type'.",
            "param": "session.type",
            "event_id": "evt_7",
        }
        await c.send({"type": "session.update", "session": {"type": "realtime"}})
        session = (await c.until("session.updated"))[-1]["session"]
    assert session["audio"]["output"]["format"]["type"] == "audio/pcm"


async def test_voice_cannot_change_after_audio(serve):
    """Once the model has spoken, a new voice is refused."""
    server = await serve()
    async with client(server) as c:
        await c.configure()
        await c.send({"type": "response.create"})
        await c.until("response.done")
        await c.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"output": {"voice": "cedar"}},
                },
            }
        )
        assert (await c.error())["code"] == "cannot_update_voice"


# -- malformed events ------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ('["a list"]', "invalid_type", ""),
        ('{"event_id": "x"}', "missing_required_parameter", "type"),
        ('{"type": "response.audio.delta"}', "invalid_value", "type"),
        (
            '{"type": "session.update", "session": {"type": "realtime", '
            '"temperature": 0.8}}',
            "unknown_parameter",
            "session.temperature",
        ),
        (
            '{"type": "session.update", "session": {"type": "realtime", '
            '"input_audio_format": "g711_ulaw"}}',
            "unknown_parameter",
            "session.input_audio_format",
        ),
        (
            '{"type": "session.update", "session": {"type": "realtime", '
            '"audio": {"input": {"format": "g711_ulaw"}}}}',
            "invalid_value",
            "session.audio.input.format",
        ),
        (
            '{"type": "session.update", "session": {"type": "realtime", '
            '"output_modalities": ["audio", "text"]}}',
            "invalid_value",
            "session.output_modalities",
        ),
        (
            '{"type": "session.update", "session": {"type": "realtime", '
            '"audio": {"output": {"speed": 2.0}}}}',
            "decimal_above_max_value",
            "session.audio.output.speed",
        ),
        (
            '{"type": "session.update", "session": {"type": "realtime", '
            '"max_output_tokens": 5000}}',
            "integer_above_max_value",
            "session.max_output_tokens",
        ),
        (
            '{"type": "input_audio_buffer.append"}',
            "missing_required_parameter",
            "audio",
        ),
        ('{"type": "input_audio_buffer.append", "audio": 5}', "invalid_type", "audio"),
        (
            '{"type": "input_audio_buffer.append", "audio": "@@@"}',
            "invalid_value",
            "audio",
        ),
        (
            '{"type": "conversation.item.truncate", "item_id": "i", '
            '"content_index": 0, "audio_end_ms": "100"}',
            "invalid_type",
            "audio_end_ms",
        ),
        (
            '{"type": "conversation.item.truncate", "item_id": "i", '
            '"content_index": true, "audio_end_ms": 100}',
            "invalid_type",
            "content_index",
        ),
        (
            '{"type": "conversation.item.create", "item": {"type": "message", '
            '"role": "user", "content": [{"type": "output_text", "text": "x"}]}}',
            "invalid_value",
            "item.content[0].type",
        ),
        (
            '{"type": "response.create", "response": {"modalities": ["audio"]}}',
            "unknown_parameter",
            "response.modalities",
        ),
        (
            '{"type": "response.cancel", "response_id": 1}',
            "invalid_type",
            "response_id",
        ),
        (
            '{"type": "input_audio_buffer.commit", "extra": 1}',
            "unknown_parameter",
            "extra",
        ),
    ],
)
async def test_malformed_events_get_the_real_error_shape(serve, frame, code, param):
    """Each malformed event earns an invalid_request_error; the session lives on."""
    server = await serve()
    async with client(server) as c:
        await c.send(frame)
        error = await c.error()
        assert error["type"] == "invalid_request_error"
        assert error["code"] == code
        assert error["param"] == param
        assert error["message"]
        await c.send({"type": "input_audio_buffer.clear"})
        assert (await c.recv())["type"] == "input_audio_buffer.cleared"
    assert server.connections[0].violations[0].code == code


async def test_error_echoes_the_client_event_id(serve):
    """error.event_id is the client's event_id."""
    server = await serve()
    async with client(server) as c:
        await c.send({"type": "response.cancel", "event_id": "evt_42"})
        assert (await c.error())["event_id"] == "evt_42"


async def test_binary_frame_is_an_error_and_a_violation(serve):
    """Realtime events are text frames."""
    server = await serve()
    async with client(server) as c:
        await c.send(b"\xff" * 160)
        await c.error()
    assert server.connections[0].violations[0].code == "binary_frame"


@pytest.mark.parametrize(
    "event",
    [
        {"type": "session.update", "session": {"type": "realtime", "tools": []}},
        {
            "type": "session.update",
            "event_id": "e1",
            "session": {
                "type": "realtime",
                "model": "gpt-realtime",
                "output_modalities": ["audio"],
                "instructions": "…",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "turn_detection": {
                            "type": "server_vad",
                            "threshold": 0.5,
                            "prefix_padding_ms": 300,
                            "silence_duration_ms": 500,
                            "create_response": True,
                            "interrupt_response": True,
                        },
                        "transcription": {
                            "model": "gpt-4o-transcribe",
                            "language": "ja",
                        },
                        "noise_reduction": {"type": "near_field"},
                    },
                    "output": {
                        "format": {"type": "audio/pcmu"},
                        "voice": "marin",
                        "speed": 1.0,
                    },
                },
                "tools": [
                    {
                        "type": "function",
                        "name": "transfer_to_human",
                        "description": "…",
                        "parameters": {
                            "type": "object",
                            "properties": {"reason": {"type": "string"}},
                            "required": ["reason"],
                        },
                    }
                ],
                "tool_choice": "auto",
                "max_output_tokens": "inf",
                "truncation": {"type": "retention_ratio", "retention_ratio": 0.8},
                "tracing": None,
            },
        },
        {"type": "input_audio_buffer.append", "audio": "//8="},
        {"type": "input_audio_buffer.commit"},
        {"type": "input_audio_buffer.clear", "event_id": "x"},
        {"type": "output_audio_buffer.clear"},
        {
            "type": "conversation.item.create",
            "previous_item_id": "root",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "こんにちは"}],
            },
        },
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": "call_1",
                "output": "{}",
            },
        },
        {"type": "conversation.item.retrieve", "item_id": "item_1"},
        {"type": "conversation.item.delete", "item_id": "item_1"},
        {
            "type": "conversation.item.truncate",
            "item_id": "item_1",
            "content_index": 0,
            "audio_end_ms": 1500,
        },
        {"type": "response.create"},
        {
            "type": "response.create",
            "response": {
                "instructions": "Say 「もしもし」",
                "conversation": "none",
                "output_modalities": ["text"],
                "metadata": {"purpose": "greeting"},
                "tool_choice": {"type": "function", "name": "transfer_to_human"},
            },
        },
        {"type": "response.cancel", "response_id": "resp_1"},
    ],
)
def test_strict_checks_accept_what_the_sdk_accepts(event):
    """Valid client events pass both our checks and the SDK's models."""
    check_client_event(event)
    pydantic.TypeAdapter(RealtimeClientEvent).validate_python(event)


def test_strict_checks_refuse_what_the_sdk_refuses():
    """A type error the SDK catches, the fake catches too."""
    event = {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0}
    with pytest.raises(pydantic.ValidationError):
        pydantic.TypeAdapter(RealtimeClientEvent).validate_python(event)
    with pytest.raises(ClientEventError, match="audio_end_ms"):
        check_client_event(event)


# -- the response rules ------------------------------------------------------------


async def test_second_response_create_while_one_is_active_is_refused(serve):
    """Only one response writes to the conversation at a time."""
    server = await serve(fast(audio_speed=1.0))
    async with client(server) as c:
        await c.configure()
        await c.send({"type": "response.create"})
        created = (await c.until("response.created"))[-1]["response"]
        await c.send({"type": "response.create"})
        error = await c.error()
        assert error["code"] == "conversation_already_has_active_response"
        assert created["id"] in error["message"]
        await c.send({"type": "response.cancel"})
        done = (await c.until("response.done"))[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    item = done["output"][0]
    assert item["status"] == "incomplete"
    server.assert_complete(allowed={"conversation_already_has_active_response"})


async def test_cancel_without_active_response_is_harmless_error(serve):
    """response.cancel with nothing active: response_cancel_not_active."""
    server = await serve()
    async with client(server) as c:
        await c.configure()
        await c.send({"type": "response.cancel"})
        error = await c.error()
    assert error["code"] == "response_cancel_not_active"
    with pytest.raises(AssertionError, match="response_cancel_not_active"):
        server.assert_complete()


async def test_out_of_band_response_does_not_touch_the_conversation(serve):
    """conversation "none" responses run beside a default one, outside it."""
    server = await serve(fast(reply_ms=8000, audio_speed=20.0))
    async with client(server) as c:
        await c.configure()
        await c.send({"type": "response.create"})
        await c.until("response.created")
        await c.send(
            {
                "type": "response.create",
                "response": {"conversation": "none", "output_modalities": ["text"]},
            }
        )
        events = await c.until("response.output_text.done")
        await c.send({"type": "response.cancel"})
        await c.until("response.done")
    second = [e for e in events if e["type"] == "response.created"][-1]["response"]
    assert second["conversation_id"] is None
    server.assert_complete()


# -- input audio ---------------------------------------------------------------------


async def test_commit_needs_100_ms(serve):
    """A manual commit of less than 100 ms fails; 200 ms makes a user item."""
    server = await serve()
    async with client(server) as c:
        await c.configure(input={"turn_detection": None})
        await c.append(audio.speech(40))
        await c.send({"type": "input_audio_buffer.commit"})
        error = await c.error()
        assert error["code"] == "input_audio_buffer_commit_empty"
        assert "Expected at least 100ms" in error["message"]
        await c.append(audio.speech(200))
        await c.send({"type": "input_audio_buffer.commit"})
        events = await c.until("conversation.item.done")
    assert [e["type"] for e in events] == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    item = events[1]["item"]
    assert item["role"] == "user"
    assert item["content"] == [{"type": "input_audio", "transcript": None}]
    assert server.connections[0].input_audio_ms == 240


async def test_vad_times_count_appended_audio(serve):
    """speech_started/stopped carry ms of appended audio (pcmu: bytes / 8)."""
    server = await serve()
    async with client(server) as c:
        await c.configure(
            input={
                "turn_detection": {
                    "type": "server_vad",
                    "silence_duration_ms": 500,
                    "prefix_padding_ms": 300,
                    "create_response": False,
                }
            }
        )
        await c.append(audio.silence(1000) + audio.speech(800) + audio.silence(600))
        events = await c.until("conversation.item.done")
    started, stopped, committed = events[:3]
    assert started["type"] == "input_audio_buffer.speech_started"
    assert started["audio_start_ms"] == 1000 - 300
    assert stopped["audio_end_ms"] == 1800 + 500
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert server.connections[0].response_statuses == {}


async def test_pcm_input_counts_48_bytes_per_ms(serve):
    """With the default audio/pcm input, 4800 bytes are 100 ms."""
    server = await serve(fast(expect_audio_format=None))
    async with client(server) as c:
        await c.send({"type": "session.update", "session": {"type": "realtime"}})
        await c.until("session.updated")
        pcm = audio.from_ulaw(audio.speech(100), "audio/pcm")
        await c.send(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(pcm).decode(),
            }
        )
        await c.send({"type": "input_audio_buffer.clear"})
        await c.until("input_audio_buffer.cleared")
    assert server.connections[0].input_audio_ms == 100


async def test_audio_before_choosing_pcmu_breaks_the_expected_format(serve):
    """Scenarios expect μ-law both ways before audio flows (PROTOCOL C3)."""
    server = await serve()
    async with client(server) as c:
        await c.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"format": PCMU}}},
            }
        )
        await c.until("session.updated")
        await c.append(audio.silence(20))
        await c.send({"type": "input_audio_buffer.clear"})
        await c.until("input_audio_buffer.cleared")
    with pytest.raises(AssertionError, match="audio_format"):
        server.assert_complete()


# -- scenarios -------------------------------------------------------------------------


TURN_ORDER = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.added",
    "conversation.item.done",
    "response.created",
    "rate_limits.updated",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "*deltas",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


async def test_greet_then_answer_plays_a_spoken_turn_in_protocol_order(serve):
    """Greeting on request, then a caller turn answered in A4 order."""
    server = await serve()
    async with client(server) as c:
        await c.configure()
        await c.send({"type": "response.create"})
        greeting = await c.until("response.done")
        await c.append(utterance())
        turn = await c.until("response.done")
    assert collapse([e["type"] for e in greeting]) == TURN_ORDER[5:]
    assert collapse([e["type"] for e in turn]) == TURN_ORDER
    deltas = [e for e in turn if e["type"] == "response.output_audio.delta"]
    sizes = [len(base64.b64decode(e["delta"])) for e in deltas]
    assert all(size % 2 == 1 for size in sizes[:-1])  # odd sizes
    assert len(set(sizes)) > 2
    transcript = "".join(
        e["delta"]
        for e in turn
        if e["type"] == "response.output_audio_transcript.delta"
    )
    assert transcript == scenarios.GREET_THEN_ANSWER.replies[0]
    done = turn[-1]["response"]
    assert done["status"] == "completed"
    audio_ms = sum(sizes) / 8
    usage = done["usage"]
    assert usage["output_token_details"]["audio_tokens"] == -(-audio_ms // 50)
    assert usage["input_token_details"]["audio_tokens"] > 0
    assert usage["input_token_details"]["cached_tokens"] > 0  # the prefix was seen
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert done["output"][0]["content"][0] == {
        "type": "output_audio",
        "transcript": transcript,
    }
    server.assert_complete()


async def test_caller_transcription_arrives_when_enabled(serve):
    """Transcription deltas and completed follow the commit, asynchronously."""
    server = await serve(fast(caller_transcripts=("もしもし",)))
    async with client(server) as c:
        await c.configure(input={"transcription": {"model": "gpt-4o-transcribe"}})
        await c.append(utterance())
        events = await c.until("conversation.item.input_audio_transcription.completed")
    completed = events[-1]
    committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
    assert completed["item_id"] == committed["item_id"]
    assert completed["transcript"] == "もしもし"
    assert completed["usage"]["type"] == "tokens"
    deltas = [
        e["delta"]
        for e in events
        if e["type"] == "conversation.item.input_audio_transcription.delta"
    ]
    assert "".join(deltas) == "もしもし"


async def test_no_transcription_events_by_default(serve):
    """Transcription is off unless the session turns it on."""
    server = await serve()
    async with client(server) as c:
        await c.configure()
        await c.append(utterance())
        await c.until("response.done")
        await asyncio.sleep(0.05)
    assert not any("transcription" in t for t in server.connections[0].sent_types())


async def test_echo_answers_with_the_callers_own_audio(serve):
    """ECHO plays back the committed utterance."""
    server = await serve(fast(scenarios.ECHO))
    said = utterance(400, 600)
    async with client(server) as c:
        await c.configure(
            input={"turn_detection": {"type": "server_vad", "prefix_padding_ms": 0}}
        )
        await c.append(audio.silence(100) + said)
        events = await c.until("response.done")
    echoed = b"".join(
        base64.b64decode(e["delta"])
        for e in events
        if e["type"] == "response.output_audio.delta"
    )
    # The turn ends once silence_duration_ms (200 by default) of silence is heard.
    assert echoed == said[: (400 + 200) * 8]


async def test_echo_frames_returns_each_append_as_one_delta(serve):
    """ECHO_FRAMES: one response, one output_audio.delta per appended chunk."""
    server = await serve(fast(scenarios.ECHO_FRAMES))
    frames = [audio.tone(20, 300.0 + 50 * i) for i in range(5)]
    async with client(server) as c:
        await c.configure()
        for frame in frames:
            await c.append(frame)
        events = [await c.recv() for _ in range(5 + 5)]
        await c.send({"type": "response.cancel"})
        done = (await c.until("response.done"))[-1]
    assert [e["type"] for e in events[:5]] == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    deltas = [base64.b64decode(e["delta"]) for e in events[5:]]
    assert deltas == frames
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["usage"]["output_token_details"]["audio_tokens"] == 2
    server.assert_complete()


async def test_echo_frames_response_create_opens_the_echo(serve):
    """A greeting request becomes the echo response; appends then flow into it."""
    server = await serve(fast(scenarios.ECHO_FRAMES, open_on_append=False))
    async with client(server) as c:
        await c.configure()
        await c.append(audio.tone(20))  # nothing open: dropped
        await c.send({"type": "response.create"})
        await c.until("response.content_part.added")
        await c.append(audio.tone(20, 500.0))
        delta = (await c.until("response.output_audio.delta"))[-1]
    assert base64.b64decode(delta["delta"]) == audio.tone(20, 500.0)


async def test_tool_call_round_trip(serve):
    """TOOL_CALL: function_call item, then the answer after the tool's output."""
    scenario = fast(
        scenarios.TOOL_CALL,
        tool_name="transfer_to_human",
        arguments='{"reason": "要望"}',
    )
    server = await serve(scenario)
    async with client(server) as c:
        await c.configure()
        await c.append(utterance())
        events = await c.until("response.done")
        kinds = collapse([e["type"] for e in events])
        call_added = [e for e in events if e["type"] == "response.output_item.added"][
            -1
        ]["item"]
        assert call_added["type"] == "function_call"
        assert call_added["arguments"] == ""
        assert call_added["status"] == "in_progress"
        arguments_done = next(
            e for e in events if e["type"] == "response.function_call_arguments.done"
        )
        assert arguments_done["name"] == "transfer_to_human"
        assert arguments_done["arguments"] == '{"reason": "要望"}'
        assert arguments_done["call_id"] == call_added["call_id"]
        output = events[-1]["response"]["output"]
        assert [item["type"] for item in output] == ["message", "function_call"]
        assert output[1]["arguments"] == '{"reason": "要望"}'
        with pytest.raises(AssertionError, match="function_call_output"):
            server.assert_complete()

        await c.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": call_added["call_id"],
                    "output": '{"ok": true}',
                },
            }
        )
        added = await c.until("conversation.item.done")
        assert [e["type"] for e in added] == [
            "conversation.item.added",
            "conversation.item.done",
        ]
        with pytest.raises(AssertionError, match=r"response\.create"):
            server.assert_complete()
        await c.send({"type": "response.create"})
        answer = await c.until("response.done")
    transcript = answer[-1]["response"]["output"][0]["content"][0]["transcript"]
    assert transcript == scenarios.TOOL_CALL.tool_answer
    assert kinds.count("response.function_call_arguments.done") == 1
    server.assert_complete()


async def test_function_output_for_unknown_call_is_a_violation(serve):
    """A function_call_output must answer a function_call in the conversation."""
    server = await serve()
    async with client(server) as c:
        await c.configure()
        await c.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": "call_x",
                    "output": "{}",
                },
            }
        )
        await c.until("conversation.item.done")
    with pytest.raises(AssertionError, match="unknown_call_id"):
        server.assert_complete()


async def test_barge_in_cancels_server_side_and_expects_a_truncate(serve):
    """Caller speech during an answer: speech_started, then a turn_detected cancel."""
    server = await serve(fast(scenarios.BARGE_IN, audio_speed=4.0))
    async with client(server) as c:
        await c.configure()
        await c.send({"type": "response.create"})
        first = await c.until("response.output_audio.delta")
        item_id = first[-1]["item_id"]
        await c.append(audio.speech(100))
        events = await c.until("response.done")
        kinds = [e["type"] for e in events if not e["type"].endswith(".delta")]
        assert kinds == [
            "input_audio_buffer.speech_started",
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
        late = [e for e in events[1:] if e["type"] == "response.output_audio.delta"]
        assert len(late) >= 2  # in flight after speech_started: to be dropped
        done = events[-1]["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "turn_detected"
        item_done = next(e for e in events if e["type"] == "response.output_item.done")
        assert item_done["item"]["status"] == "incomplete"
        with pytest.raises(AssertionError, match="truncate"):
            server.assert_complete()
        await c.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 40,  # the first delta alone holds 49 ms
            }
        )
        truncated = (await c.until("conversation.item.truncated"))[-1]
    assert truncated["audio_end_ms"] == 40
    server.assert_complete()


async def test_truncate_rules(serve):
    """Only assistant messages; never beyond the audio the server holds."""
    server = await serve()
    async with client(server) as c:
        await c.configure()
        await c.append(utterance())
        events = await c.until("response.done")
        user_item = next(
            e for e in events if e["type"] == "input_audio_buffer.committed"
        )
        assistant = events[-1]["response"]["output"][0]
        audio_ms = (
            sum(
                len(base64.b64decode(e["delta"]))
                for e in events
                if e["type"] == "response.output_audio.delta"
            )
            // 8
        )

        async def truncate(item_id: str, end_ms: int) -> dict[str, Any]:
            await c.send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": end_ms,
                }
            )
            return await c.recv()

        refused = await truncate(user_item["item_id"], 10)
        assert refused["type"] == "error"
        beyond = await truncate(assistant["id"], audio_ms + 500)
        assert beyond["error"] == {
            "type": "invalid_request_error",
            "code": None,
            "message": f"Audio content of {audio_ms}ms is already shorter than {audio_ms + 500}ms",
            "param": None,
            "event_id": None,
        }
        unknown = await truncate("item_nope", 10)
        assert unknown["type"] == "error"
        ok = await truncate(assistant["id"], 300)
        assert ok == {**ok, "type": "conversation.item.truncated", "audio_end_ms": 300}
        # The item is now 300 ms long.
        again = await truncate(assistant["id"], 301)
        assert "Audio content of 300ms" in again["error"]["message"]


async def test_items_can_be_created_retrieved_and_deleted(serve):
    """conversation.item.create/retrieve/delete, and errors for unknown ids."""
    server = await serve()
    async with client(server) as c:
        await c.configure()
        await c.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "前回の会話の要約"}],
                },
            }
        )
        added = (await c.until("conversation.item.done"))[0]
        item_id = added["item"]["id"]
        await c.send(
            {
                "type": "conversation.item.create",
                "previous_item_id": "root",
                "item": {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "はい"}],
                },
            }
        )
        root = (await c.until("conversation.item.done"))[0]
        assert root["previous_item_id"] is None
        await c.send({"type": "conversation.item.retrieve", "item_id": item_id})
        retrieved = (await c.until("conversation.item.retrieved"))[-1]
        assert retrieved["item"]["content"][0]["text"] == "前回の会話の要約"
        await c.send({"type": "conversation.item.delete", "item_id": item_id})
        assert (await c.until("conversation.item.deleted"))[-1]["item_id"] == item_id
        await c.send({"type": "conversation.item.delete", "item_id": item_id})
        assert (await c.error())["param"] == "item_id"
        await c.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_audio", "audio": "//8="}],
                },
            }
        )
        assert (await c.error())["code"] == "invalid_value"


async def test_text_only_sessions_stream_output_text(serve):
    """output_modalities ["text"] gives output_text events and no audio."""
    server = await serve()
    async with client(server) as c:
        await c.configure(output_modalities=["text"])
        await c.send({"type": "response.create"})
        events = await c.until("response.done")
    kinds = collapse([e["type"] for e in events])
    assert "response.output_text.done" in kinds
    assert not any("output_audio" in e["type"] for e in events)


async def test_pcm_output_is_24khz_pcm16(serve):
    """Output follows the session's format: audio/pcm deltas are 48 bytes/ms."""
    server = await serve(fast(expect_audio_format=None))
    async with client(server) as c:
        await c.send({"type": "session.update", "session": {"type": "realtime"}})
        await c.until("session.updated")
        await c.send({"type": "response.create"})
        events = await c.until("response.done")
    sizes = [
        len(base64.b64decode(e["delta"]))
        for e in events
        if e["type"] == "response.output_audio.delta"
    ]
    assert all(size % 2 == 0 for size in sizes)
    greeting = scenarios.GREET_THEN_ANSWER.greeting
    assert sum(sizes) == len(audio.tone_for_text(greeting)) * 6


async def test_errors_scenario_injects_a_server_error_and_a_failed_response(serve):
    """ERRORS: server_error after session.update; the caller turn's response fails."""
    server = await serve(fast(scenarios.ERRORS))
    async with client(server) as c:
        await c.configure()
        error = (await c.recv())["error"]
        assert error["type"] == "server_error"
        await c.send({"type": "response.create"})
        assert (await c.until("response.done"))[-1]["response"]["status"] == "completed"
        await c.append(utterance())
        failed = (await c.until("response.done"))[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["status_details"]["error"]["type"] == "server_error"
    assert failed["output"] == []
    server.assert_complete()


async def test_scheduled_events_are_sent_on_time(serve):
    """A test can inject raw events at a time after session.created."""
    event = {"type": "input_audio_buffer.cleared"}
    server = await serve(fast(schedule=(scenarios.Scheduled(event, at_ms=30),)))
    async with client(server) as c:
        assert (await c.recv())["type"] == "input_audio_buffer.cleared"


async def test_mid_call_drop_aborts_then_the_next_connection_works(serve):
    """MID_CALL_DROP: no close frame (1006) on the first connection only."""
    server = await serve(fast(scenarios.MID_CALL_DROP, drop_after_client_events=5))
    async with client(server) as c:
        await c.configure()
        with pytest.raises(ConnectionClosed) as dropped:
            for _ in range(10):
                await c.append(audio.speech(20))
                await asyncio.sleep(0.01)
            await c.recv()
    assert dropped.value.rcvd is None  # abnormal closure, 1006
    first = server.connections[0]
    await first.wait_closed()
    assert first.closed_by == "drop"
    assert first.close_code == 1006
    async with client(server) as c:
        await c.configure()
        await c.append(utterance())
        await c.until("response.done")
    server.assert_complete()


async def test_drop_after_ms(serve):
    """Drops can also be timed."""
    server = await serve(fast(drop_after_ms=50))
    async with client(server) as c:
        with pytest.raises(ConnectionClosed):
            await c.recv(timeout_s=1.0)


async def test_session_expired_sends_the_error_then_closes(serve):
    """SESSION_EXPIRED: session_expired, then the server ends the session."""
    server = await serve(fast(scenarios.SESSION_EXPIRED, expire_after_ms=50))
    async with client(server) as c:
        await c.configure()
        error = await c.error()
        with pytest.raises(ConnectionClosed) as closed:
            await c.recv()
    assert error["code"] == "session_expired"
    assert error["message"] == "Your session hit the maximum duration of 60 minutes."
    assert closed.value.rcvd.reason == "invalid_request_error.session_expired"
    assert server.connections[0].closed_by == "server"


async def test_demo_speaks_japanese_and_greets_with_its_instructions(serve):
    """DEMO greets with the quoted part of the instructions, then replies in turn."""
    server = await serve(fast(scenarios.DEMO))
    async with client(server) as c:
        await c.configure()
        await c.send(
            {
                "type": "response.create",
                "response": {
                    "instructions": "次のように挨拶してください:「はい、山田歯科です。」"
                },
            }
        )
        greeting = (await c.until("response.done"))[-1]["response"]
        await c.append(utterance())
        reply = (await c.until("response.done"))[-1]["response"]
    assert greeting["output"][0]["content"][0]["transcript"] == "はい、山田歯科です。"
    assert reply["output"][0]["content"][0]["transcript"] == scenarios.DEMO.replies[0]


async def test_server_records_and_counts_connections(serve):
    """connections[i].received holds every client event; closed is tracked."""
    server = await serve()
    async with client(server) as c:
        await c.configure()
    connection = server.connections[0]
    await connection.wait_closed()
    assert connection.received_types() == ["session.update"]
    assert connection.closed
    assert connection.closed_by == "client"
    assert server.open_connections == 0


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_standalone_server_prints_its_url_and_stops_on_ctrl_c():
    """python -m realtime.emulators.fake_realtime serves until SIGINT."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "realtime.emulators.fake_realtime",
        "--port",
        "0",
        "--scenario",
        "demo",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        # A shell's background job ignores SIGINT, and the child would inherit
        # that (CI runs two suites at once); a terminal's Ctrl-C is what we mimic.
        preexec_fn=_sigint_default,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 5)).decode()
        url = line.split(" at ")[1].strip()
        assert url.startswith("ws://127.0.0.1:")
        async with connect(
            url + "?model=gpt-realtime",
            additional_headers={"Authorization": "Bearer sk-test"},
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 5) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_official_sdk_client_drives_the_fake(serve):
    """AsyncOpenAI(websocket_base_url=server.base_url) talks to the fake (A1)."""
    from openai import AsyncOpenAI

    server = await serve(fast(scenarios.TOOL_CALL))
    sdk = AsyncOpenAI(api_key="sk-test", websocket_base_url=server.base_url)
    async with sdk.realtime.connect(model="gpt-realtime") as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {"input": {"format": PCMU}, "output": {"format": PCMU}},
            }
        )
        updated = await conn.recv()
        assert updated.type == "session.updated"
        said = utterance()
        for start in range(0, len(said), 160):
            chunk = base64.b64encode(said[start : start + 160]).decode()
            await conn.input_audio_buffer.append(audio=chunk)
        while (event := await conn.recv()).type != "response.done":
            pass
        call = event.response.output[1]
        assert call.type == "function_call"
        await conn.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": "{}",
            }
        )
        await conn.response.create()
        while (event := await conn.recv()).type != "response.done":
            pass
        assert event.response.status == "completed"
    connection = server.connections[0]
    assert connection.headers["authorization"] == "Bearer sk-test"
    assert "openai-beta" not in connection.headers
    server.assert_complete()


def test_emulators_import_nothing_from_django():
    """The emulators run without Django (STYLE: no Django in emulators)."""
    modules = [
        "realtime.emulators." + name
        for name in (
            "audio",
            "caller",
            "caller_media",
            "caller_webhook",
            "fake_realtime",
            "realtime_checks",
            "realtime_config",
            "realtime_conversation",
            "realtime_record",
            "realtime_responses",
            "realtime_session",
            "realtime_shapes",
            "scenarios",
            "strict_json",
        )
    ]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "invalid_api_key"),
        (429, "rate_limit_exceeded"),
        (500, None),
        (503, None),
    ],
)
async def test_handshake_faults_answer_the_status_with_an_api_error(
    serve, status, code
):
    """fail_handshakes(status, count): that many upgrades get the HTTP status and
    the API's JSON error body; the next one is served as usual (F-71)."""
    server = await serve()
    server.fail_handshakes(status, count=1)
    with pytest.raises(InvalidStatus) as refused:
        async with client(server):
            pass
    response = refused.value.response
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    error = json.loads(response.body)["error"]
    assert error["code"] == code and error["message"]
    assert error["type"] == ("server_error" if status >= 500 else error["type"])
    assert server.rejected_handshakes[0].status == status
    assert server.connection_count == 0
    async with client(server, skip_created=False) as c:
        assert (await c.recv())["type"] == "session.created"
    assert server.connection_count == 1


async def test_a_hanging_handshake_is_never_answered(serve):
    server = await serve(handshake_fault="hang")
    with pytest.raises(TimeoutError):
        async with connect(
            server.url + "?model=gpt-realtime",
            additional_headers={"Authorization": "Bearer sk-test"},
            open_timeout=0.3,
        ):
            pass
    assert server.connection_count == 0
    assert [r.status for r in server.rejected_handshakes] == [0]
    server.fail_handshakes(None)
    async with client(server):
        pass
    assert server.connection_count == 1


def test_a_handshake_fault_must_be_an_error_status_or_hang():
    server = FakeRealtimeServer()
    for wrong in (200, 101, 600, True):
        with pytest.raises(ValueError):
            server.fail_handshakes(wrong)
