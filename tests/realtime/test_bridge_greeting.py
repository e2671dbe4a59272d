"""CallBridge with a cached greeting (F-73): played at `start`, beside the claim."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from websockets.asyncio.server import serve

from realtime.bridge import CallBridge
from realtime.protocol.greeting import CachedGreeting
from tests.realtime.test_bridge_unit import MemoryStore, _config, _start_frames

pytestmark = pytest.mark.timeout(20)

GREETING = CachedGreeting.from_audio(
    "お電話ありがとうございます。", random.Random(1).randbytes(4000)
)


class SlowClaimStore(MemoryStore):
    """The claim takes a while (a busy database)."""

    def __init__(self) -> None:
        super().__init__()
        self.claim_done = asyncio.Event()

    async def claim_stream(self, *, token: str, stream_sid: str) -> bool:
        await asyncio.sleep(0.2)
        self.claim_done.set()
        return await super().claim_stream(token=token, stream_sid=stream_sid)


async def _bridge(
    port: int, store: MemoryStore, *, verified: bool = True
) -> tuple[CallBridge, list[tuple[str, bool]], list[int]]:
    sent: list[tuple[str, bool]] = []  # (event, claimed yet)
    closed: list[int] = []

    async def to_twilio(frame: str) -> None:
        claimed = getattr(store, "claim_done", asyncio.Event()).is_set()
        sent.append((json.loads(frame)["event"], claimed))

    async def close_twilio(code: int) -> None:
        closed.append(code)

    bridge = CallBridge(
        _config(
            f"ws://127.0.0.1:{port}/v1/realtime",
            cached_greeting=GREETING,
            greeting_key="ab" * 32,
        ),
        store=store,
        send_to_twilio=to_twilio,
        close_twilio=close_twilio,
        signature_verified=verified,
    )
    await bridge.start()
    return bridge, sent, closed


async def _silent_model(ws) -> None:
    async for _ in ws:  # never confirms a session
        pass


async def test_greeting_plays_before_the_claim_and_the_model():
    async with serve(_silent_model, "127.0.0.1", 0) as server:
        store = SlowClaimStore()
        bridge, sent, closed = await _bridge(server.sockets[0].getsockname()[1], store)
        await _start_frames(bridge)
        assert sent, "nothing played"
        assert sent[0] == ("media", False)  # before the claim came back
        assert {event for event, _ in sent} == {"media", "mark"}
        assert not bridge.state.session_confirmed
        await bridge.finish("test")
    assert closed == [1000]
    assert ("greeting-cache", {"hit": True}) in store.events


async def test_a_refused_claim_still_closes_the_stream():
    async with serve(_silent_model, "127.0.0.1", 0) as server:
        store = SlowClaimStore()
        bridge, _, closed = await _bridge(server.sockets[0].getsockname()[1], store)
        await _start_frames(bridge, token="bad")
        await bridge.wait_finished()
    assert closed == [1008]
    assert store.finished == []
    assert ("greeting-cache", {"hit": True}) not in store.events


async def test_an_unverified_upgrade_hears_nothing_before_the_claim():
    """Without a proven Twilio signature (dev), the claim comes first; a bad token
    then hears nothing at all."""
    async with serve(_silent_model, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        store = SlowClaimStore()
        bridge, sent, _ = await _bridge(port, store, verified=False)
        await _start_frames(bridge)
        assert sent and all(claimed for _, claimed in sent)
        await bridge.finish("test")
        refused_store = SlowClaimStore()
        refused, refused_sent, closed = await _bridge(
            port, refused_store, verified=False
        )
        await _start_frames(refused, token="bad")
        await refused.wait_finished()
    assert refused_sent == [] and closed == [1008]


async def test_marks_echoed_during_the_claim_are_counted():
    async with serve(_silent_model, "127.0.0.1", 0) as server:
        store = SlowClaimStore()
        bridge, _, _ = await _bridge(server.sockets[0].getsockname()[1], store)
        start = asyncio.create_task(_start_frames(bridge))
        for _ in range(100):
            if bridge.state.stream_sid is not None:
                break
            await asyncio.sleep(0.005)
        assert not store.claim_done.is_set()
        await bridge.on_twilio_frame(
            json.dumps(
                {
                    "event": "mark",
                    "sequenceNumber": "2",
                    "streamSid": "MZ1",
                    "mark": {"name": "a1"},
                }
            )
        )
        audio = bridge.state.item_audio("item_cached_greeting")
        assert audio is not None and audio.heard_bytes == 320  # the first 40 ms
        await start
        await bridge.finish("test")
