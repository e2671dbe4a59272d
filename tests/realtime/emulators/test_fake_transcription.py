"""The fake Realtime server's transcription sessions (``?intent=transcription``)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from realtime.emulators import audio
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.emulators.realtime_checks import (
    ClientEventError,
    check_transcription_session,
)
from realtime.protocol.openai_events import Transcription
from realtime.supervision.transcriber import transcription_session_update
from tests.realtime.emulators.test_fake_realtime import (
    Client,
    assert_sdk_valid,
    client,
    collapse,
    fast,
    utterance,
)

QUERY = "?intent=transcription"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """Start fake servers; afterwards, SDK-check every event they sent."""
    servers: list[FakeRealtimeServer] = []

    async def start(scenario: Any = None) -> FakeRealtimeServer:
        server = FakeRealtimeServer(scenario or fast())
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()
        for connection in server.connections:
            for event in connection.sent:
                assert_sdk_valid(event)


PCM = {"type": "audio/pcm", "rate": 24000}


def _session(**input_fields: Any) -> dict[str, Any]:
    return {
        "type": "transcription",
        "audio": {
            "input": {
                "format": PCM,
                "transcription": {"model": "gpt-4o-transcribe", "language": "ja"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                **input_fields,
            }
        },
    }


async def _append_pcm(raw: Client, ulaw: bytes) -> None:
    pcm = audio.from_ulaw(ulaw, "audio/pcm")
    for start in range(0, len(pcm), 960):
        chunk = base64.b64encode(pcm[start : start + 960]).decode()
        await raw.send({"type": "input_audio_buffer.append", "audio": chunk})


async def test_transcription_session_is_created_without_a_model(serve):
    server = await serve()
    async with client(server, query=QUERY, skip_created=False) as raw:
        created = await raw.recv()
    assert created["type"] == "session.created"
    assert created["session"]["type"] == "transcription"
    assert "voice" not in str(created["session"])
    assert server.connections[0].violations == []


async def test_the_bridges_session_update_is_accepted(serve):
    server = await serve()
    async with client(server, query=QUERY) as raw:
        update = transcription_session_update(Transcription("gpt-4o-transcribe", "ja"))
        await raw.send(update)
        session = (await raw.until("session.updated"))[-1]["session"]
    assert session["audio"]["input"]["transcription"]["language"] == "ja"
    assert session["audio"]["input"]["format"] == PCM
    server.assert_complete()


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"instructions": "Be kind."}, "session.instructions"),
        ({"output_modalities": ["text"]}, "session.output_modalities"),
        ({"tools": []}, "session.tools"),
        ({"model": "gpt-realtime"}, "session.model"),
    ],
)
async def test_realtime_only_fields_are_unknown_parameters(serve, extra, param):
    server = await serve()
    async with client(server, query=QUERY) as raw:
        await raw.send({"type": "session.update", "session": {**_session(), **extra}})
        error = await raw.error()
    assert error["code"] == "unknown_parameter"
    assert error["param"] == param
    assert server.connections[0].session_updates == 0


async def test_a_voice_is_an_unknown_parameter_too(serve):
    server = await serve()
    body = _session()
    body["audio"]["output"] = {"voice": "marin"}
    async with client(server, query=QUERY) as raw:
        await raw.send({"type": "session.update", "session": body})
        error = await raw.error()
    assert (error["code"], error["param"]) == (
        "unknown_parameter",
        "session.audio.output",
    )


async def test_a_realtime_session_type_is_refused(serve):
    server = await serve()
    async with client(server, query=QUERY) as raw:
        await raw.send({"type": "session.update", "session": {"type": "realtime"}})
        error = await raw.error()
    assert (error["code"], error["param"]) == ("invalid_value", "session.type")


@pytest.mark.parametrize(
    "event",
    [
        {"type": "response.create"},
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": "note"}],
            },
        },
        {"type": "response.cancel"},
    ],
)
async def test_conversation_and_response_events_are_refused(serve, event):
    server = await serve()
    async with client(server, query=QUERY) as raw:
        await raw.send({**event, "event_id": "ev_1"})
        error = await raw.error()
        # The session is still usable.
        await raw.send({"type": "session.update", "session": _session()})
        await raw.until("session.updated")
    assert (error["code"], error["param"], error["event_id"]) == (
        "invalid_value",
        "type",
        "ev_1",
    )
    assert event["type"] in error["message"]


async def test_speech_is_detected_and_transcribed_turn_by_turn(serve):
    server = await serve(fast())
    async with client(server, query=QUERY) as raw:
        await raw.send({"type": "session.update", "session": _session()})
        await raw.until("session.updated")
        await _append_pcm(raw, utterance(600, 600) + utterance(400, 600))
        first = await raw.until("conversation.item.input_audio_transcription.completed")
        second = await raw.until(
            "conversation.item.input_audio_transcription.completed"
        )
    types = collapse([e["type"] for e in first])
    assert types[:4] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
    ]
    assert types[-2:] == [
        "*deltas",
        "conversation.item.input_audio_transcription.completed",
    ]
    lines = fast().supervisor_transcripts
    assert first[-1]["transcript"] == lines[0]
    assert second[-1]["transcript"] == lines[1]
    assert not any(e["type"].startswith("response.") for e in raw.seen)
    assert first[0]["audio_start_ms"] >= 0
    server.assert_complete()


async def test_no_transcription_model_means_turns_without_text(serve):
    server = await serve(fast())
    async with client(server, query=QUERY) as raw:
        await raw.send(
            {"type": "session.update", "session": _session(transcription=None)}
        )
        await raw.until("session.updated")
        await _append_pcm(raw, utterance(600, 600))
        await raw.until("conversation.item.done")
        await raw.send({"type": "input_audio_buffer.clear"})
        await raw.until("input_audio_buffer.cleared")
    assert not any("transcription" in e["type"] for e in raw.seen)


async def test_the_fake_records_what_it_received(serve):
    server = await serve(fast())
    async with client(server, query=QUERY) as raw:
        await raw.send({"type": "session.update", "session": _session()})
        await raw.until("session.updated")
        await _append_pcm(raw, utterance(200, 0))
        await raw.send({"type": "input_audio_buffer.clear"})
        await raw.until("input_audio_buffer.cleared")  # the appends are all in
    record = server.connections[0]
    await record.wait_closed()
    assert record.received_types()[0] == "session.update"
    assert record.received_of("input_audio_buffer.append")
    assert record.input_audio_ms == pytest.approx(200, abs=1)


def test_the_check_refuses_what_only_a_realtime_session_has():
    check_transcription_session(_session())
    with pytest.raises(ClientEventError) as caught:
        check_transcription_session({**_session(), "voice": "marin"})
    assert caught.value.code == "unknown_parameter"
