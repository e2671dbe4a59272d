"""The hub: offers answered in the console's layout, both sides fanned out, events."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from realtime.protocol.bridge_state import ClearCaller, SendAudio, SendMark
from realtime.protocol.caller_audio import MULAW_8K
from realtime.supervision.hub import OfferRefused, Supervision
from realtime.transport.aiortc_tuning import host_addresses_choose

SILENT_MULAW = base64.b64encode(b"\xff" * 160).decode()


class Host:
    def __init__(self) -> None:
        self.audio: list[tuple[str, int]] = []
        self.lost: list[str] = []

    async def on_supervisor_audio(self, listener_id: str, pcm24: bytes) -> None:
        self.audio.append((listener_id, len(pcm24)))

    async def on_supervisor_lost(self, listener_id: str) -> None:
        self.lost.append(listener_id)


@pytest.fixture
def hub_parts():
    host_addresses_choose(["127.0.0.1"])
    events: list[tuple[str, dict[str, Any]]] = []
    host = Host()
    hub = Supervision(
        audio=MULAW_8K, host=host, record=lambda k, p: events.append((k, p))
    )
    yield hub, host, events
    host_addresses_choose([])


async def console_offer(*, audio: int = 3) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    for index in range(audio):
        pc.addTransceiver("audio", direction="recvonly" if index < 2 else "sendonly")
    pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_listeners_get_the_callers_audio_encoded_once(hub_parts) -> None:
    hub, host, events = hub_parts
    hub.caller_audio(SILENT_MULAW, 1.0)  # nobody listens: nothing is encoded
    assert hub.caller_packets == 0
    pcs = []
    listeners = []
    for name in ("佐藤", "鈴木"):
        pc, offer = await console_offer()
        pcs.append(pc)
        answer, listener = await hub.add_listener(offer, by_id=7, by_name=name)
        assert answer.startswith("v=0") and answer.count("m=audio") == 3
        listeners.append(listener)
    try:
        for _ in range(3):
            hub.caller_audio(SILENT_MULAW, 2.0)
        assert hub.caller_packets == 3  # once per frame, not once per listener
        for listener in listeners:
            track = hub._listeners[listener].peer.caller_track
            assert len(track._queue) == 3
        assert [k for k, _ in events] == ["supervise-listen-start"] * 2
        assert events[0][1] == {"listener": listeners[0], "by_id": 7, "by_name": "佐藤"}
        assert await hub.remove_listener(listeners[0])
        assert not await hub.remove_listener(listeners[0])
        kind, payload = events[-1]
        assert kind == "supervise-listen-stop" and payload["listener"] == listeners[0]
        assert payload["seconds"] >= 0
        await hub.close()
        assert [k for k, _ in events[-2:]] == [
            "supervise-listen-stop",
            "supervise-media",
        ]
        assert events[-1][1]["listeners"] == 2
        assert host.lost == []  # the hub stopped them: not "lost"
    finally:
        for pc in pcs:
            await pc.close()


async def test_the_ai_side_follows_what_the_caller_is_sent(hub_parts) -> None:
    hub, _, _ = hub_parts
    pc, offer = await console_offer()
    try:
        await hub.add_listener(offer, by_id=1, by_name="x")
        audio = base64.b64encode(b"\x10" * 480).decode()
        hub.caller_command(SendAudio("MZ1", audio), now=10.0)
        hub.caller_command(SendMark("MZ1", "m1"), now=10.0)
        assert hub.playout.waiting == 3
        hub.caller_command(ClearCaller("MZ1"), now=10.0)
        assert hub.playout.waiting == 0
        assert not hub.playout.mark_played("m1", 10.1)  # gone with the clear
        hub.caller_command(SendAudio("MZ1", "%%%"), now=10.0)  # not base64: ignored
        assert hub.playout.waiting == 0
    finally:
        await hub.close()
        await pc.close()


@pytest.mark.parametrize("audio", [0, 2])
async def test_an_offer_without_the_consoles_layout_is_refused(
    hub_parts, audio
) -> None:
    hub, _, events = hub_parts
    pc, offer = await console_offer(audio=audio)
    try:
        with pytest.raises(OfferRefused):
            await hub.add_listener(offer, by_id=1, by_name="x")
        with pytest.raises(OfferRefused):
            await hub.add_listener("v=0\r\nnonsense", by_id=1, by_name="x")
        assert events == [] and hub.listener_ids == []
    finally:
        await pc.close()
