"""The load side: probe callers, the direct echo loop, and one call's webhook.

Everything here runs in the benchmark's own event loop, next to the fake model.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import random
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.service import ACCOUNT_SID, AUTH_TOKEN, INBOUND_NUMBER
from realtime.emulators.audio import FRAME_BYTES
from realtime.emulators.caller import (
    _PROBE_MAGIC,
    _PROBE_TAG,
    SimulatedCaller,
    StreamInstruction,
    _probe_number,
    new_sid,
    parse_stream_twiml,
    post_webhook,
    voice_webhook_params,
)
from realtime.ws_connections import ShortPathServerConnection
from realtime.ws_send import send_text


@dataclass(slots=True)
class Echo:
    """A probe frame that came back: its number, send time (s) and round trip."""

    number: int
    sent: float
    ms: float
    held: bool
    """Sent back in the same message as the next probe: it waited for that frame."""


def frame_phase(index: int) -> float:
    """Where call `index`'s 20 ms frames fall within the period: uniform at random,
    as real calls' do, and the same for every loop of a run, so that a server is not
    helped or hurt by how its ramp happened to line the callers up (calls placed
    16 ms apart put every fifth caller on the same millisecond)."""
    return random.Random(index).random()


class ProbeCaller(SimulatedCaller):
    """A `SimulatedCaller(probe=True)` at real-time pace that can stop talking.

    `mute()` parks the frame loop at the next 40 ms boundary, so the frames still
    in flight can come back before `stop`; `hang_up()` cancels the parked loop.
    `frames_sent` stays exact. The boundary: the bridge sends 40 ms messages and
    keeps a lone 20 ms tail until the response's audio is done, which the echo
    never says; an odd last frame would be counted lost for that.
    """

    def __init__(self, stream_url: str, **kwargs: Any) -> None:
        super().__init__(stream_url, probe=True, time_scale=1.0, **kwargs)
        self._muted = False
        self._parked = asyncio.Event()

    def mute(self) -> None:
        self._muted = True

    async def _send_numbered(self, event: str, body: dict[str, Any]) -> None:
        if event == "media" and self._muted and self.frames_sent % 2 == 0:
            self._parked.set()
            await asyncio.Event().wait()  # until hang_up() cancels the frame loop
        await super()._send_numbered(event, body)

    @property
    def echoed_bytes(self) -> int:
        """μ-law received back so far."""
        return len(self._rx_audio)

    def all_echoed(self) -> bool:
        return self.echoed_bytes >= self.frames_sent * FRAME_BYTES

    async def wait_echoed(self, timeout_s: float) -> bool:
        """Once muted: wait until the last frame is out and every frame sent has come
        back; False after `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._parked.wait()
                await self._wait(self.all_echoed, None, "the echoes")
        except TimeoutError:
            return False
        return True

    def probe_echoes(self) -> list[Echo]:
        """Every probe that came back, by number (`echo_latencies_ms()`, kept whole).

        With the numbers, a window of send times can be chosen and lost frames
        counted exactly.
        """
        stream = bytes(self._rx_audio)
        found: list[Echo] = []
        frames: list[int] = []
        position = stream.find(_PROBE_MAGIC)
        while position != -1 and position + _PROBE_TAG <= len(stream):
            number = _probe_number(stream[position + 4 : position + _PROBE_TAG])
            frame = bisect.bisect_left(self._rx_ends, position + _PROBE_TAG - 1)
            if number < self.frames_sent and frame < len(self._rx_times):
                sent = self.frame_send_times[number]
                ms = (self._rx_times[frame] - sent) * 1000
                found.append(Echo(number, sent, ms, held=False))
                frames.append(frame)
            position = stream.find(_PROBE_MAGIC, position + _PROBE_TAG)
        # A probe is held when a later one came back in the same message.
        for i in range(len(found) - 1):
            if frames[i] == frames[i + 1]:
                found[i].held = True
        return found


class DirectEcho:
    """The direct loop: Twilio's protocol straight back, no bridge in between.

    Per frame it does what the fake model's frame echo does (one JSON parse, a
    base64 check, one JSON serialisation) and answers with the `media` message the
    bridge would send, so that the caller's and the fake's costs are in the
    baseline and the bridge's are not.
    """

    def __init__(self) -> None:
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> DirectEcho:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            compression=None,
            server_header=None,
            create_connection=ShortPathServerConnection,
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @staticmethod
    async def _handle(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await DirectEcho._echo(ws)

    @staticmethod
    async def _echo(ws: ServerConnection) -> None:
        stream_sid = ""
        async for raw in ws:
            message = orjson.loads(raw)
            event = message.get("event")
            if event == "media":
                payload = message["media"]["payload"]
                base64.b64decode(payload, validate=True)
                reply = {
                    "event": "media",
                    "streamSid": stream_sid,
                    "media": {"payload": payload},
                }
                await send_text(ws, orjson.dumps(reply))
            elif event == "start":
                stream_sid = message["streamSid"]


async def inbound_call(
    client: httpx.AsyncClient, base_url: str, index: int
) -> tuple[str, StreamInstruction]:
    """POST a signed inbound voice webhook; return the CallSid and its `<Stream>`."""
    params = voice_webhook_params(
        call_sid=new_sid("CA"),
        account_sid=ACCOUNT_SID,
        from_=f"+81901234{index % 10000:04d}",
        to=INBOUND_NUMBER,
    )
    url = f"{base_url}/api/twilio/voice/incoming"
    response = await post_webhook(url, params, AUTH_TOKEN, client=client)
    response.raise_for_status()
    return params["CallSid"], parse_stream_twiml(response.text)
