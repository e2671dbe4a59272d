"""The simulated Twilio side of a call (PROTOCOL B1, B4, D).

1. ``sign_request`` / ``post_webhook``: a voice webhook signed as Twilio signs it.
2. ``parse_stream_twiml``: the ``<Connect><Stream>`` the webhook answered.
3. ``SimulatedCaller``: a Media Streams client. It sends ``connected``, then
   ``start``, then a 160-byte μ-law ``media`` frame every 20 ms (scaled by
   ``time_scale``) until ``stop``, silence included, as Twilio does. It plays
   what the bridge sends at 8 bytes/ms, echoes each ``mark`` once the audio
   queued before it has played, and on ``clear`` drops the queue and returns
   every pending mark at once. It refuses what Twilio refuses (binary frames:
   31950; invalid JSON, other events, missing or unexpected fields, a wrong
   ``streamSid``, anything before ``start``: 31951) by recording a violation
   and ignoring the frame; ``assert_clean()`` raises on any.

Scripts are sequences of ``Speak``, ``Pause``, ``Dtmf``, ``WaitForAudio``,
``WaitUntilQuiet`` and ``HangUp`` steps, run by ``caller.run(script)``; the
same steps exist as methods (``speak()``, ``pause()`` …).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime.emulators import audio
from realtime.emulators.caller_media import (
    CallerViolation,
    PendingMark,
    Playback,
    check_bridge_frame,
)
from realtime.emulators.caller_webhook import (
    StreamInstruction,
    TwimlError,
    new_sid,
    parse_stream_twiml,
    post_webhook,
    sign_request,
    voice_webhook_params,
)
from realtime.ws_connections import ShortPathClientConnection
from realtime.ws_send import send_text

__all__ = [
    "CallerViolation",
    "Dtmf",
    "HangUp",
    "MarkEcho",
    "Pause",
    "Received",
    "SimulatedCaller",
    "Speak",
    "Step",
    "StreamInstruction",
    "TwimlError",
    "WaitForAudio",
    "WaitUntilQuiet",
    "new_sid",
    "parse_stream_twiml",
    "post_webhook",
    "sign_request",
    "voice_webhook_params",
]


# -- script ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Speak:
    """Say ``audio`` (μ-law), or ``ms`` of ``audio.speech()``."""

    ms: int = 1000
    audio: bytes | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    """Stay silent for ``ms`` (frames keep flowing)."""

    ms: int


@dataclass(frozen=True, slots=True)
class Dtmf:
    """Press a key."""

    digit: str


@dataclass(frozen=True, slots=True)
class WaitForAudio:
    """Wait until ``ms`` more of the bridge's audio has been played."""

    ms: float = 20.0
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class WaitUntilQuiet:
    """Wait until playback is idle and no media came for ``quiet_ms``.

    With ``require_audio``, some audio must be heard after the step begins.
    """

    quiet_ms: float = 500.0
    require_audio: bool = True
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class HangUp:
    """Send ``stop`` and close the socket."""


Step = Speak | Pause | Dtmf | WaitForAudio | WaitUntilQuiet | HangUp


# -- records ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """A frame from the bridge and when it arrived (``time.monotonic()``).

    ``message`` is the parsed dict when Twilio would accept the frame, else
    the raw frame.
    """

    at: float
    message: dict[str, Any] | str | bytes


@dataclass(frozen=True, slots=True)
class MarkEcho:
    """A mark the caller returned."""

    name: str
    received_at: float
    echoed_at: float
    cleared: bool
    """Returned by a ``clear`` rather than by playback."""
    heard_ms: float
    """Audio played in total when the mark was returned."""


_PROBE_MAGIC = b"\x00\x80\x00\x80"  # μ-law codes a tone below ±30000 never uses
_PROBE_BASE = 96  # counter digits are 0x10..0x6F: never 0x00 nor 0x80
_PROBE_TAG = len(_PROBE_MAGIC) + 3


def _probe_frame(number: int) -> bytes:
    digits = bytes(0x10 + (number // _PROBE_BASE**k) % _PROBE_BASE for k in (2, 1, 0))
    return _PROBE_MAGIC + digits + audio.tone(20, 600.0)[_PROBE_TAG:]


def _probe_number(digits: bytes) -> int:
    return sum(
        (d - 0x10) * _PROBE_BASE**k for d, k in zip(digits, (2, 1, 0), strict=True)
    )


# -- the caller ------------------------------------------------------------------


class SimulatedCaller:
    """A Twilio Media Streams client that speaks, listens and checks the bridge.

    ``time_scale`` stretches every pace (0.1 runs ten times faster than real
    time; media timestamps stay in audio milliseconds). ``probe=True`` makes
    every outbound frame a numbered probe, so ``echo_latencies_ms()`` can match
    the audio the bridge sends back to the frame that caused it (``Speak`` then
    only takes time). ``signature_url`` is the URL ``X-Twilio-Signature`` is
    computed over (default: the stream URL with the ``wss`` scheme).
    ``start_delay_ms`` puts a gap between ``connected`` and ``start``.
    ``frame_phase`` (0 ≤ p < 1) starts the 20 ms frame clock at that fraction of
    a period on a grid shared by every caller of the process, so that many
    callers' frames fall where real calls' would, wherever their connects
    happened to land (None: the first frame goes at once).
    """

    def __init__(
        self,
        stream_url: str,
        *,
        parameters: Mapping[str, str] | None = None,
        auth_token: str | None = None,
        signature_url: str | None = None,
        account_sid: str | None = None,
        call_sid: str | None = None,
        stream_sid: str | None = None,
        time_scale: float = 1.0,
        start_delay_ms: float = 0.0,
        probe: bool = False,
        compression: str | None = None,
        frame_phase: float | None = None,
    ) -> None:
        if frame_phase is not None and not 0.0 <= frame_phase < 1.0:
            raise ValueError(f"frame_phase {frame_phase} is not in [0, 1)")
        self.stream_url = stream_url
        self.parameters = dict(parameters or {})
        self.auth_token = auth_token
        self.signature_url = signature_url or urlunsplit(
            urlsplit(stream_url)._replace(scheme="wss")
        )
        self.account_sid = account_sid or new_sid("AC")
        self.call_sid = call_sid or new_sid("CA")
        self.stream_sid = stream_sid or new_sid("MZ")
        self.time_scale = time_scale
        self.start_delay_ms = start_delay_ms
        self.probe = probe
        self.compression = compression
        self.frame_phase = frame_phase

        self.received: list[Received] = []
        """Every frame from the bridge, valid or not."""
        self.violations: list[CallerViolation] = []
        self.marks_echoed: list[MarkEcho] = []
        self.closed_by_server: tuple[int | None, str | None] | None = None
        """(code, reason) when the bridge closed the socket (1006: no frame)."""
        self.frames_sent = 0
        self.frame_send_times: list[float] = []
        """Send time of every media frame, by chunk number - 1 (probe mode)."""
        self.playback = Playback(time_scale)

        self._ws: ClientConnection | None = None
        self._sequence = 0
        self._started = False
        self._stopped = False
        self._hung_up = False
        self._closed = False
        self._last_media_at = 0.0
        self._mic = bytearray()
        self._rx_audio = bytearray()
        self._rx_ends: list[int] = []
        self._rx_times: list[float] = []
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- what tests read -------------------------------------------------------

    @property
    def heard_bytes(self) -> bytes:
        """μ-law the caller has played so far."""
        return bytes(self.playback.heard)

    @property
    def heard_ms(self) -> float:
        """Milliseconds of audio played so far."""
        return len(self.playback.heard) / 8

    @property
    def queued_ms(self) -> float:
        """Milliseconds of audio waiting to be played."""
        return self.playback.queued_bytes / 8

    @property
    def clears(self) -> int:
        """How many ``clear`` messages the bridge sent."""
        return self.playback.clears

    @property
    def closed(self) -> bool:
        """Whether the stream has ended (either side)."""
        return self._closed

    def assert_clean(self) -> None:
        """Raise AssertionError if the bridge sent anything Twilio refuses."""
        if self.violations:
            lines = "\n".join(
                f"  {v.code}: {v.reason} ({v.frame!r:.120})" for v in self.violations
            )
            raise AssertionError(f"the bridge sent frames Twilio refuses:\n{lines}")

    def media_received(self) -> list[Received]:
        """Return the accepted ``media`` frames, in order."""
        return [
            r
            for r in self.received
            if isinstance(r.message, dict) and r.message.get("event") == "media"
        ]

    def echo_latencies_ms(self) -> list[float]:
        """Return receive − send time of each probe found in the received audio.

        Probe mode only. The receive time is that of the media frame that
        completed the probe's tag, so the bridge may re-chunk freely.
        """
        stream = bytes(self._rx_audio)
        latencies: list[float] = []
        position = stream.find(_PROBE_MAGIC)
        while position != -1 and position + _PROBE_TAG <= len(stream):
            number = _probe_number(stream[position + 4 : position + _PROBE_TAG])
            frame = bisect.bisect_left(self._rx_ends, position + _PROBE_TAG - 1)
            if number < len(self.frame_send_times) and frame < len(self._rx_times):
                sent = self.frame_send_times[number]
                latencies.append((self._rx_times[frame] - sent) * 1000)
            position = stream.find(_PROBE_MAGIC, position + _PROBE_TAG)
        return latencies

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> SimulatedCaller:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.hang_up()

    async def connect(self) -> None:
        """Open the stream: ``connected``, then ``start``, then frames flow."""
        headers = {"User-Agent": "Twilio.TmeWs/1.0"}
        if self.auth_token is not None:
            headers["X-Twilio-Signature"] = sign_request(
                self.auth_token, self.signature_url, {}
            )
        self._ws = await connect(
            self.stream_url,
            additional_headers=headers,
            user_agent_header=None,
            compression=self.compression,
            create_connection=ShortPathClientConnection,
        )
        self._tasks.append(asyncio.create_task(self._receive_loop()))
        try:
            await self._send(
                {"event": "connected", "protocol": "Call", "version": "1.0.0"}
            )
            if self.start_delay_ms:
                await asyncio.sleep(self.start_delay_ms * self.time_scale / 1000)
            self._started = True
            await self._send_numbered(
                "start",
                {
                    "start": {
                        "streamSid": self.stream_sid,
                        "accountSid": self.account_sid,
                        "callSid": self.call_sid,
                        "tracks": ["inbound"],
                        "customParameters": self.parameters,
                        "mediaFormat": {
                            "encoding": "audio/x-mulaw",
                            "sampleRate": 8000,
                            "channels": 1,
                        },
                    }
                },
            )
        except ConnectionClosed:
            # Upgraded, then closed by the server at once (a draining server
            # refuses new streams so): the stream has ended, as for Twilio, which
            # goes on with <Connect action>.
            await asyncio.gather(self._tasks[0], return_exceptions=True)
            return
        self._tasks.append(asyncio.create_task(self._frame_loop()))

    async def run(self, script: Iterable[Step], *, hang_up: bool = True) -> None:
        """Connect if needed, play ``script``, then hang up (unless told not to)."""
        if self._ws is None:
            await self.connect()
        for step in script:
            if self._closed:
                break
            await self._play_step(step)
        if hang_up:
            await self.hang_up()

    async def _play_step(self, step: Step) -> None:
        if isinstance(step, Speak):
            await self.speak(step.ms, step.audio)
        elif isinstance(step, Pause):
            await self.pause(step.ms)
        elif isinstance(step, Dtmf):
            await self.send_dtmf(step.digit)
        elif isinstance(step, WaitForAudio):
            await self.wait_for_audio(step.ms, timeout_s=step.timeout_s)
        elif isinstance(step, WaitUntilQuiet):
            await self.wait_until_quiet(
                step.quiet_ms,
                require_audio=step.require_audio,
                timeout_s=step.timeout_s,
            )
        else:
            await self.hang_up()

    async def hang_up(self) -> None:
        """Send ``stop`` and close the socket, unless the bridge closed it first."""
        if self._ws is None or self._hung_up:
            return
        self._hung_up = True
        bridge_closed = self._stopped
        self._stopped = True
        for task in self._tasks[1:]:
            task.cancel()
        if not bridge_closed:
            stop = {"stop": {"accountSid": self.account_sid, "callSid": self.call_sid}}
            with contextlib.suppress(ConnectionClosed):
                await self._send_numbered("stop", stop)
            await self._ws.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._closed = True
        self._notify()

    async def break_connection(self) -> None:
        """Drop the TCP connection with no close frame and no ``stop``, as a
        network break does: both ends see an abnormal closure (1006)."""
        if self._ws is None or self._closed:
            return
        self._ws.transport.abort()
        await self.wait_closed()

    async def wait_closed(self, timeout_s: float = 5.0) -> None:
        """Wait until the stream has ended (either side)."""
        await self._wait(lambda: self._closed, timeout_s, "the stream to close")

    # -- speaking ----------------------------------------------------------------

    async def speak(self, ms: int = 1000, sound: bytes | None = None) -> None:
        """Send ``sound`` (default: ``ms`` of speech); return once it is sent."""
        data = sound if sound is not None else audio.speech(ms)
        if self.probe:
            await self.pause(len(data) // 8)
            return
        self._mic += data
        await self._wait(lambda: not self._mic, None, "the utterance to be sent")

    async def pause(self, ms: int) -> None:
        """Let ``ms`` of silence (or of probe frames) go out."""
        target = self.frames_sent + -(-ms // 20)
        await self._wait(lambda: self.frames_sent >= target, None, "silence")

    async def send_dtmf(self, digit: str) -> None:
        """Send a ``dtmf`` event for one key."""
        if len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise ValueError(f"not a DTMF digit: {digit!r}")
        await self._send_numbered(
            "dtmf", {"dtmf": {"track": "inbound_track", "digit": digit}}
        )

    async def wait_for_audio(
        self, ms: float = 20.0, *, timeout_s: float = 10.0
    ) -> None:
        """Wait until ``ms`` more audio has been played."""
        target = len(self.playback.heard) + ms * 8
        await self._wait(
            lambda: len(self.playback.heard) >= target, timeout_s, f"{ms} ms heard"
        )

    async def wait_until_quiet(
        self,
        quiet_ms: float = 500.0,
        *,
        require_audio: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        """Wait until playback is idle and no media came for ``quiet_ms``."""
        heard_before = len(self.playback.heard)

        def quiet() -> bool:
            if require_audio and len(self.playback.heard) == heard_before:
                return False
            idle_since = max(self.playback.playing_until, self._last_media_at)
            return (
                not self.playback.queued_bytes
                and time.monotonic() - idle_since >= quiet_ms * self.time_scale / 1000
            )

        await self._wait(quiet, timeout_s, "playback to go quiet")

    # -- internals: waiting and sending ------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(
        self, predicate: Callable[[], bool], timeout_s: float | None, what: str
    ) -> None:
        """Wait for ``predicate`` (or the end of the stream)."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate() and not self._closed:
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"caller timed out waiting for {what}") from None

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await send_text(self._ws, orjson.dumps(message))

    async def _send_numbered(self, event: str, body: dict[str, Any]) -> None:
        self._sequence += 1
        await self._send(
            {
                "event": event,
                "sequenceNumber": str(self._sequence),
                "streamSid": self.stream_sid,
                **body,
            }
        )

    def _next_frame(self) -> bytes:
        if self.probe:
            return _probe_frame(self.frames_sent)
        frame = bytes(self._mic[: audio.FRAME_BYTES])
        del self._mic[: audio.FRAME_BYTES]
        if len(frame) < audio.FRAME_BYTES:
            frame += audio.silence(20)[len(frame) :]
        return frame

    async def _frame_loop(self) -> None:
        """Send a frame and play 20 ms every 20 ms (× time_scale), until stop."""
        period = 0.020 * self.time_scale
        began = time.monotonic()
        if self.frame_phase is not None:
            began = (began // period + 1 + self.frame_phase) * period
            await asyncio.sleep(began - time.monotonic())
        with contextlib.suppress(ConnectionClosed):
            while not self._stopped:
                frame = self._next_frame()
                chunk = self.frames_sent + 1
                if self.probe:
                    self.frame_send_times.append(time.monotonic())
                await self._send_numbered(
                    "media",
                    {
                        "media": {
                            "track": "inbound",
                            "chunk": str(chunk),
                            "timestamp": str(self.frames_sent * 20),
                            "payload": base64.b64encode(frame).decode(),
                        }
                    },
                )
                self.frames_sent = chunk
                now = time.monotonic()
                for mark in self.playback.tick(now):
                    await self._echo_mark(mark, now, cleared=False)
                self._notify()
                # An absolute schedule: a late tick does not delay the next ones.
                await asyncio.sleep(max(0.0, began + chunk * period - time.monotonic()))

    # -- internals: receiving ----------------------------------------------------

    async def _receive_loop(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                now = time.monotonic()
                checked = check_bridge_frame(
                    frame, stream_sid=self.stream_sid, started=self._started
                )
                if isinstance(checked, CallerViolation):
                    self.violations.append(checked)
                    self.received.append(Received(now, frame))
                else:
                    self.received.append(Received(now, checked))
                    if not self._stopped:
                        await self._handle(checked, now)
                self._notify()
        except ConnectionClosed:
            pass
        finally:
            if not self._stopped:
                self.closed_by_server = (self._ws.close_code, self._ws.close_reason)
                self._stopped = True
            self._closed = True
            self._notify()

    async def _handle(self, message: dict[str, Any], now: float) -> None:
        event = message["event"]
        if event == "media":
            data = base64.b64decode(message["media"]["payload"])
            self._last_media_at = now
            self.playback.add_media(data)
            if self.probe:
                self._rx_audio += data
                self._rx_ends.append(len(self._rx_audio) - 1)
                self._rx_times.append(now)
        elif event == "mark":
            for mark in self.playback.add_mark(message["mark"]["name"], now):
                await self._echo_mark(mark, now, cleared=False)
        else:
            for mark in self.playback.clear(now):
                await self._echo_mark(mark, now, cleared=True)

    async def _echo_mark(self, mark: PendingMark, now: float, *, cleared: bool) -> None:
        self.marks_echoed.append(
            MarkEcho(mark.name, mark.received_at, now, cleared, self.heard_ms)
        )
        with contextlib.suppress(ConnectionClosed):
            await self._send_numbered("mark", {"mark": {"name": mark.name}})
