"""The supervisor's transcription socket (F-75) against the fake and broken servers."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from websockets.asyncio.server import serve

from realtime.emulators import audio, scenarios
from realtime.emulators.fake_realtime import FakeRealtimeServer
from realtime.protocol.openai_events import Transcription
from realtime.supervision.transcriber import SupervisorTranscriber

pytestmark = pytest.mark.timeout(20)

SCENARIO = dataclasses.replace(
    scenarios.GREET_THEN_ANSWER, transcription_delay_s=0.0, silence_ms=200
)


def speech_pcm(speech_ms: int, silence_ms: int) -> list[bytes]:
    pcm = audio.from_ulaw(
        audio.speech(speech_ms) + audio.silence(silence_ms), "audio/pcm"
    )
    return [pcm[at : at + 960] for at in range(0, len(pcm), 960)]


class Outcome:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.failures: list[str] = []
        self.changed = asyncio.Event()

    async def on_line(self, item_id: str, text: str) -> None:
        self.lines.append((item_id, text))
        self.changed.set()

    async def on_failure(self, detail: str) -> None:
        self.failures.append(detail)
        self.changed.set()

    async def wait(self) -> None:
        async with asyncio.timeout(10):
            await self.changed.wait()
        self.changed.clear()


def _transcriber(
    url: str, outcome: Outcome, **options: object
) -> SupervisorTranscriber:
    return SupervisorTranscriber(
        model_url=f"{url}?model=gpt-realtime",
        api_key="sk-test",
        transcription=Transcription("gpt-4o-transcribe", "ja"),
        on_line=outcome.on_line,
        on_failure=outcome.on_failure,
        **options,  # type: ignore[arg-type]
    )


async def test_frames_fed_before_the_socket_opens_are_transcribed():
    async with FakeRealtimeServer(SCENARIO) as server:
        outcome = Outcome()
        transcriber = _transcriber(server.url, outcome)
        transcriber.start()
        for frame in speech_pcm(600, 400):  # at once: the socket is not up yet
            transcriber.feed(frame)
        await outcome.wait()
        await transcriber.close()
        record = server.connections[0]
        await record.wait_closed()
    assert outcome.lines and outcome.lines[0][1] == SCENARIO.supervisor_transcripts[0]
    assert outcome.failures == []
    assert "intent=transcription" in record.path and "model=" not in record.path
    assert record.headers["authorization"] == "Bearer sk-test"
    assert record.received_types()[0] == "session.update"
    assert record.input_audio_ms == pytest.approx(1000, abs=20)
    assert record.violations == []


async def test_a_server_that_drops_the_session_is_a_failure_once():
    async def hang_up_after_the_update(ws) -> None:
        await ws.recv()
        await ws.close(1011, "internal error")

    async with serve(hang_up_after_the_update, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        outcome = Outcome()
        transcriber = _transcriber(f"ws://127.0.0.1:{port}/v1/realtime", outcome)
        transcriber.start()
        await outcome.wait()
        transcriber.feed(bytes(960))  # ignored from now on
        await transcriber.close()
    assert len(outcome.failures) == 1 and "1011" in outcome.failures[0]
    assert transcriber.failed is not None


async def test_a_refused_key_is_a_failure():
    async with FakeRealtimeServer(SCENARIO, api_key="sk-other") as server:
        outcome = Outcome()
        transcriber = _transcriber(server.url, outcome)
        transcriber.start()
        await outcome.wait()
        await transcriber.close()
    assert outcome.failures and outcome.lines == []


async def test_an_unreachable_server_is_a_failure():
    outcome = Outcome()
    transcriber = _transcriber("ws://127.0.0.1:9/v1/realtime", outcome)
    transcriber.start()
    await outcome.wait()
    await transcriber.close()
    assert outcome.failures


async def test_closing_before_anything_arrived_reports_no_failure():
    updated = asyncio.Event()

    async def silent(ws) -> None:
        async for raw in ws:
            assert json.loads(raw)["type"] == "session.update"
            updated.set()

    async with serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        outcome = Outcome()
        transcriber = _transcriber(f"ws://127.0.0.1:{port}/v1/realtime", outcome)
        transcriber.start()
        async with asyncio.timeout(5):
            await updated.wait()
        await transcriber.close()
    assert outcome.failures == [] and outcome.lines == []
