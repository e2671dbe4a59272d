"""The supervise benchmark's supervisors: lean aiortc peers in a process of their own.

Each is the console on the wire: the offer's layout (transceivers 0 and 1
recvonly, 2 sendonly with a microphone, the ``events`` channel pinged every
second) and nothing a browser does off it: received packets are counted and one
a second decoded for a level check (``CountingPlayhead``); the microphone replays
pre-encoded Opus (``PreEncodedMicrophone``), so the hub's barge figure (RTP in →
``on_supervisor_audio`` returned) has packets to measure.

The parent drives ``supervisor_worker`` over a pipe: ``("listen", call_id)`` →
``("listening", listener)`` or ``("failed", detail)``; ``("barge", call_id,
listener)`` → ``("barged", status)``; ``("stop",)`` → ``("done", stats)``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Final

import httpx
import uvloop
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from bench.web_client import CountingPlayhead, PreEncodedMicrophone
from realtime.transport.aiortc_tuning import host_addresses_choose

PING_EVERY_S: Final = 1.0
OFFER_TRIES: Final = 50  # 409 while the bridge has not claimed the stream yet


class BenchSupervisor:
    """One listener: caller and AI packets counted, a microphone, pings."""

    def __init__(self, *, mic: bool) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        # The page's microphone track is there only once it barges in.
        self.mic = PreEncodedMicrophone() if mic else None
        self.pc.addTransceiver(self.mic or "audio", direction="sendonly")
        self.channel = self.pc.createDataChannel("events")
        self.caller = CountingPlayhead()
        self.ai = CountingPlayhead()
        self._pinger: asyncio.Task[None] | None = None

    async def connect(self, http: httpx.AsyncClient, call_id: int, csrf: str) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        for _ in range(OFFER_TRIES):
            reply = await http.post(
                f"/calls/{call_id}/supervise/offer/",
                json={"sdp": self.pc.localDescription.sdp},
                headers={"X-CSRFToken": csrf},
            )
            if reply.status_code != 409:
                break
            await asyncio.sleep(0.1)
        reply.raise_for_status()
        body = reply.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
        transceivers = self.pc.getTransceivers()
        self.caller.install(transceivers[0].receiver)
        self.ai.install(transceivers[1].receiver)
        self._pinger = asyncio.ensure_future(self._ping())
        return str(body["listener"])

    async def _ping(self) -> None:
        while True:
            if self.channel.readyState == "open":
                self.channel.send(json.dumps({"type": "ping"}))
            await asyncio.sleep(PING_EVERY_S)

    def stats(self) -> dict[str, int]:
        return {
            "caller_packets": self.caller.packets,
            "caller_loud": self.caller.loud,
            "caller_checked": self.caller.checked,
            "ai_packets": self.ai.packets,
            "ai_loud": self.ai.loud,
            "ai_checked": self.ai.checked,
            "mic_packets": self.mic.frames_sent if self.mic else 0,
        }

    async def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        await self.pc.close()


async def log_in(http: httpx.AsyncClient) -> str:
    """Log in as the demo operator; the CSRF token for later POSTs."""
    page = await http.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, "no CSRF token on the login page"
    reply = await http.post(
        "/accounts/login/",
        data={"username": "demo", "password": "demo", "csrfmiddlewaretoken": token[1]},
    )
    assert reply.status_code == 302, f"login failed: {reply.status_code}"
    return str(http.cookies["csrftoken"])


def supervisor_worker(base_url: str, conn: Any, mic: bool) -> None:
    logging.disable(logging.INFO)
    host_addresses_choose(["127.0.0.1"])
    uvloop.run(_worker(base_url, conn, mic))


async def _worker(base_url: str, conn: Any, mic: bool) -> None:
    http = httpx.AsyncClient(base_url=base_url, timeout=30)
    csrf = await log_in(http)
    supervisors: list[BenchSupervisor] = []
    conn.send(("ready",))
    while True:
        command = await asyncio.to_thread(conn.recv)
        if command[0] == "listen":
            supervisor = BenchSupervisor(mic=mic)
            try:
                listener = await supervisor.connect(http, int(command[1]), csrf)
            except Exception as exc:
                await supervisor.close()
                conn.send(("failed", f"{type(exc).__name__}: {exc}"[:300]))
                continue
            supervisors.append(supervisor)
            conn.send(("listening", listener))
        elif command[0] == "barge":
            # The supervision control's API (issue 16): the listener's mic to the caller.
            reply = await http.post(
                f"/api/calls/{command[1]}/supervise/",
                json={"action": "barge", "listener": command[2]},
                headers={"X-CSRFToken": csrf},
            )
            conn.send(("barged", reply.status_code))
        elif command[0] == "stop":
            stats: dict[str, int] = {}
            for supervisor in supervisors:
                for key, value in supervisor.stats().items():
                    stats[key] = stats.get(key, 0) + value
                await supervisor.close()
            await http.aclose()
            conn.send(("done", stats))
            return
