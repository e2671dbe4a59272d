"""CallBridge against scripted model servers, with an in-memory store (no Django)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.server import serve

from realtime.bridge import CallBridge
from realtime.call_setup import BridgeConfig
from realtime.protocol.openai_events import SessionConfig

pytestmark = pytest.mark.timeout(20)


class MemoryStore:
    """The CallStore protocol, kept in lists."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.lines: list[tuple[str, str]] = []
        self.finished: list[tuple[str, bool]] = []
        self.handoffs: list[tuple[str, str]] = []

    async def claim_stream(self, *, token: str, stream_sid: str) -> bool:
        return token == "good"

    async def record_event(
        self, type: str, payload: dict[str, Any] | None = None
    ) -> None:
        self.events.append((type, payload or {}))

    async def save_transcript(
        self, *, speaker, text, item_id, offset_ms, interrupted
    ) -> None:
        self.lines.append((speaker, text))

    async def broadcast_partial(self, *, speaker, item_id, delta) -> None:
        pass

    async def load_transcript(self) -> list[tuple[str, str]]:
        return list(self.lines)

    async def heartbeat(self) -> None:
        pass

    async def set_openai_session(self, session_id: str) -> None:
        pass

    async def save_figures(self, figures) -> None:
        pass

    async def finish(self, *, reason: str, failed: bool = False) -> None:
        self.finished.append((reason, failed))

    async def request_handoff(self, *, trigger: str, reason: str) -> None:
        self.handoffs.append((trigger, reason))

    async def move_caller_to_handoff(self) -> None:
        pass


def _config(url: str, **overrides: Any) -> BridgeConfig:
    values: dict[str, Any] = {
        "call_id": 1,
        "organization_id": 1,
        "caller_number": "+819012345678",
        "session": SessionConfig(instructions="テスト"),
        "greeting": None,
        "model_url": url + "?model=gpt-realtime",
        "api_key": "sk-x",
        "enabled_tools": (),
        "handoff_digit": "0",
        "handoff_farewell": "",
        "on_model_failure": "hang-up",
        "max_duration_s": 600,
        "idle_timeout_s": 600,
    }
    values.update(overrides)
    return BridgeConfig(**values)


SESSION = {
    "type": "realtime",
    "id": "sess_1",
    "audio": {
        "input": {"format": {"type": "audio/pcmu"}},
        "output": {"format": {"type": "audio/pcmu"}},
    },
}


async def _start_frames(bridge: CallBridge, token: str = "good") -> None:
    await bridge.on_twilio_frame(
        json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    )
    await bridge.on_twilio_frame(
        json.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": "MZ1",
                "start": {
                    "streamSid": "MZ1",
                    "accountSid": "AC1",
                    "callSid": "CA1",
                    "tracks": ["inbound"],
                    "customParameters": {"stream_token": token},
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": 8000,
                        "channels": 1,
                    },
                },
            }
        )
    )


async def test_a_clean_close_by_the_model_mid_call_is_a_drop_and_reconnects():
    """The server closes with 1000 while the call goes on: a new session is opened."""
    connections: list[list[str]] = []

    async def handler(ws):
        received: list[str] = []
        connections.append(received)
        await ws.send(
            json.dumps(
                {"type": "session.created", "event_id": "e0", "session": SESSION}
            )
        )
        async for raw in ws:
            received.append(json.loads(raw)["type"])
            if received[-1] == "session.update":
                await ws.send(
                    json.dumps(
                        {
                            "type": "session.updated",
                            "event_id": "e1",
                            "session": SESSION,
                        }
                    )
                )
                if len(connections) == 1:
                    await ws.close(1000)
                    return

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        store = MemoryStore()
        sent: list[str] = []

        async def to_twilio(frame: str) -> None:
            sent.append(frame)

        async def close_twilio(code: int) -> None:
            pass

        bridge = CallBridge(
            _config(f"ws://127.0.0.1:{port}/v1/realtime"),
            store=store,
            send_to_twilio=to_twilio,
            close_twilio=close_twilio,
        )
        await bridge.start()
        await _start_frames(bridge)
        for _ in range(100):
            if len(connections) == 2 and connections[1]:
                break
            await asyncio.sleep(0.05)
        await bridge.finish("test")
    assert len(connections) == 2
    assert connections[1][0] == "session.update"
    assert ("model-reconnect", {"lines": 0}) in store.events
    assert store.finished == [("test", False)]


async def test_refused_token_costs_no_session_and_finishes_nothing():
    """A wrong token closes the stream (1008); the model socket opened early is closed."""
    closed: list[int] = []
    opened = asyncio.Event()

    async def handler(ws):
        opened.set()
        await ws.send(
            json.dumps(
                {"type": "session.created", "event_id": "e0", "session": SESSION}
            )
        )
        async for _ in ws:
            pass

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        store = MemoryStore()

        async def to_twilio(frame: str) -> None:
            pass

        async def close_twilio(code: int) -> None:
            closed.append(code)

        bridge = CallBridge(
            _config(f"ws://127.0.0.1:{port}/v1/realtime"),
            store=store,
            send_to_twilio=to_twilio,
            close_twilio=close_twilio,
        )
        await bridge.start()
        await asyncio.wait_for(opened.wait(), 5)
        await _start_frames(bridge, token="bad")
        await bridge.wait_finished()
        assert bridge.model_closed_at is not None
    assert closed == [1008]
    assert store.finished == []


async def _model_server_session(ws) -> None:
    """A model that confirms the session and then listens."""
    await ws.send(
        json.dumps({"type": "session.created", "event_id": "e0", "session": SESSION})
    )
    async for raw in ws:
        if json.loads(raw)["type"] == "session.update":
            await ws.send(
                json.dumps(
                    {"type": "session.updated", "event_id": "e1", "session": SESSION}
                )
            )


async def _claimed_bridge(port: int, store: MemoryStore, closed: list[int]):
    async def to_twilio(frame: str) -> None:
        pass

    async def close_twilio(code: int) -> None:
        closed.append(code)

    bridge = CallBridge(
        _config(f"ws://127.0.0.1:{port}/v1/realtime"),
        store=store,
        send_to_twilio=to_twilio,
        close_twilio=close_twilio,
    )
    await bridge.start()
    await _start_frames(bridge)
    for _ in range(100):
        if ("model-connected", {}) in store.events:
            break
        await asyncio.sleep(0.02)
    return bridge


async def test_hand_over_closes_the_stream_with_1000_and_does_not_end_the_call():
    """Mode "handover" (F-68/F-69): model closed, event and figures written before
    Twilio's socket closes with 1000, and no store.finish (the call goes on)."""
    async with serve(_model_server_session, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        store, closed = MemoryStore(), []
        bridge = await _claimed_bridge(port, store, closed)
        await bridge.hand_over("drain")
        await bridge.wait_finished()
        await bridge.hand_over("again")  # once only
    assert closed == [1000]
    assert store.finished == []
    assert ("stream-handover", {"reason": "drain"}) in store.events
    assert ("bridge-end", {"reason": "handover: drain", "mode": "handover"}) in (
        store.events
    )
    assert bridge.model_closed_at is not None


async def test_a_socket_closed_without_stop_is_lost_not_ended():
    """Twilio's socket goes away with no `stop` (a network break, our process's
    socket killed): mode "lost", the call is not finished."""
    async with serve(_model_server_session, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        store, closed = MemoryStore(), []
        bridge = await _claimed_bridge(port, store, closed)
        await bridge.on_twilio_closed(1006)
    assert store.finished == []
    assert ("stream-broken", {"code": 1006}) in store.events
    assert ("bridge-end", {"reason": "stream-lost", "mode": "lost"}) in store.events


async def test_a_socket_closed_after_stop_ends_the_call():
    """`stop` then the close: the caller hung up, the call is finished once."""
    async with serve(_model_server_session, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        store, closed = MemoryStore(), []
        bridge = await _claimed_bridge(port, store, closed)
        await bridge.on_twilio_frame(
            json.dumps(
                {
                    "event": "stop",
                    "sequenceNumber": "9",
                    "streamSid": "MZ1",
                    "stop": {"accountSid": "AC1", "callSid": "CA1"},
                }
            )
        )
        await bridge.on_twilio_closed(1000)
    assert store.finished == [("caller-hangup", False)]


async def test_a_newer_stream_claimed_elsewhere_makes_the_bridge_let_go():
    """`stream-claimed` for another stream: this one is stale (mode lost, the
    call not finished); for its own stream: nothing happens."""
    async with serve(_model_server_session, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        store, closed = MemoryStore(), []
        bridge = await _claimed_bridge(port, store, closed)
        await bridge.on_control("stream-claimed", {"stream_sid": "MZ1"})
        assert closed == [] and not bridge._finishing
        await bridge.on_control("stream-claimed", {"stream_sid": "MZ2"})
    assert closed == [1000]
    assert store.finished == []
    assert ("stream-superseded", {"by": "MZ2"}) in store.events
    assert not any(type == "control" for type, _ in store.events)
