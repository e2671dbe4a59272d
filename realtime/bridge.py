"""The call bridge: asyncio glue between the caller's transport and the Realtime socket.

One `CallBridge` per call. It owns the model socket, feeds every parsed frame from
either side to the pure `BridgeState`, and carries out the actions it returns: frames
to the model or to the caller, tools, transcript writes, hang-ups. It reads no settings
and no models (a `BridgeConfig` and a store arrive from outside), so tests drive it with
a fake Twilio side and the fake Realtime server.

Two caller transports use it: Twilio's media stream (`on_twilio_frame`, commands sent
as Media Streams JSON through `send_to_twilio`) and the browser's WebRTC connection
(`realtime/transport/webrtc.py`: `on_caller_started`, `on_caller_audio`,
`on_playback_mark`, `on_caller_stopped`, commands handed to `send_to_caller`).

Why the pieces are where they are:
- Writes go through one queue drained by one task, so the audio loops never wait on
  the database and the transcript keeps its order.
- Tools run as tasks with a time-out; the audio keeps flowing while they run (F-21).
- The model socket is opened as soon as the stream connects (F-16) and re-opened with
  back-off when it drops; the conversation is re-seeded from the saved transcript
  (F-25). A planned rotation before the 60-minute session cap is not a failure.
- A drain (F-69) hands the stream over at the call's next quiet moment (`drain`):
  `BridgeState.quiet` says when nothing is playing or pending; every frame in wakes
  the waiting drain, so the hand-over follows the last echoed mark at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from realtime.bridge_writes import BridgeWrites
from realtime.call_setup import APOLOGY_LINE, GOODBYE_LINE, IDLE_PROMPT, BridgeConfig
from realtime.call_tools import CallTools
from realtime.protocol.bridge_state import (
    Action,
    BridgeFigures,
    BridgeState,
    BroadcastPartial,
    CallerCommand,
    DigitPressed,
    GreetingSpoken,
    HangUp,
    ModelCommand,
    RunTool,
    SaveTranscript,
    SendAudio,
    SessionMisconfigured,
)
from realtime.protocol.errors import ProtocolError, TwilioProtocolError
from realtime.protocol.openai_events import (
    FunctionTool,
    ResponseDone,
    ServerError,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    parse_server_event,
)
from realtime.protocol.twilio_media import (
    Mark,
    Media,
    Start,
    Stop,
    parse_twilio_message,
)
from realtime.supervision.control import COMMANDS as SUPERVISE_COMMANDS
from realtime.supervision.control import SupervisorControl
from realtime.tool_providers import FunctionTool as ProvidedTool
from realtime.tools import ToolContext
from realtime.ws_connections import ShortPathClientConnection
from realtime.ws_send import write_text_now

if TYPE_CHECKING:
    from realtime.supervision.hub import Supervision

log = logging.getLogger(__name__)

RECONNECT_DELAYS_S = (0.25, 1.0, 2.0)  # three tries (F-25)
CONNECT_TIMEOUT_S = 10.0
# A new call's first connect (F-71): the caller hears silence meanwhile, so a time-out
# is shorter, and a rate limit or server error gets one quick retry, not three.
FIRST_CONNECT_TIMEOUT_S = 3.0
FIRST_CONNECT_RETRY_S = 0.25
# A connection that lived this long and then dropped starts the count of tries afresh;
# one that keeps dropping sooner counts towards the fallback.
STABLE_S = 30.0
TOOL_TIMEOUT_S = 8.0
# MCP/HTTP tools are looked for once the greeting's first audio went out (nothing
# competes with it), or this long after the start when no greeting comes first.
TOOLS_AFTER_START_S = 1.5
HEARTBEAT_EVERY_S = 15.0
SESSION_ROTATE_AFTER_S = 55 * 60  # before the 60-minute cap (PROTOCOL C11)
HARD_STOP_GRACE_S = 30.0  # after a polite goodbye, hang up regardless
MAX_PENDING_MODEL_FRAMES = 500
MAX_RESEED_LINES = 200
NOT_RETRYABLE_CODES = {"invalid_api_key", "beta_api_shape_disabled"}


class CallStore(Protocol):
    """What the bridge persists; `realtime.store.DjangoCallStore` is the real one."""

    async def claim_stream(self, *, token: str, stream_sid: str) -> bool: ...
    async def record_event(
        self, type: str, payload: dict[str, Any] | None = None
    ) -> None: ...
    async def save_transcript(
        self,
        *,
        speaker: str,
        text: str,
        item_id: str,
        offset_ms: int,
        interrupted: bool,
    ) -> None: ...
    async def broadcast_partial(
        self, *, speaker: str, item_id: str, delta: str
    ) -> None: ...
    async def load_transcript(self) -> list[tuple[str, str]]: ...
    async def heartbeat(self) -> None: ...
    async def set_openai_session(self, session_id: str) -> None: ...
    async def save_figures(self, figures: BridgeFigures) -> None: ...
    async def finish(self, *, reason: str, failed: bool = False) -> None: ...
    async def request_handoff(self, *, trigger: str, reason: str) -> None: ...
    async def move_caller_to_handoff(self) -> None: ...
    async def fall_back_to_legacy(self, *, reason: str) -> bool: ...
    async def release_supervisor_hold(self) -> None: ...


class ModelGaveUp(Exception):
    """The model could not be reached after every retry (or refused us for good)."""


class ModelDropped(Exception):
    """The model closed the socket cleanly while the call still needed it."""


class CallBridge:
    """Bridge one caller (a Twilio media stream or a browser) to one Realtime session."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        store: CallStore,
        send_to_twilio: Callable[[str], Awaitable[None]],
        close_twilio: Callable[[int], Awaitable[None]],
        signature_verified: bool = True,
        clock: Callable[[], float] = time.monotonic,
        send_to_caller: Callable[[CallerCommand], Awaitable[None]] | None = None,
    ) -> None:
        """``send_to_caller``, when given, takes caller commands as objects (the
        WebRTC transport); else they go to ``send_to_twilio`` as JSON."""
        self.config = config
        self.store = store
        self._send_twilio_fn = send_to_twilio
        self._send_caller_fn = send_to_caller
        self._close_twilio = close_twilio
        self._clock = clock
        self._t0 = clock()
        self.state = BridgeState(
            session=config.session,
            greeting=config.greeting,
            cached_greeting=config.cached_greeting,
            record_greeting=config.greeting_key is not None,
        )
        # Without a proven Twilio signature, the model is opened only after the
        # one-time token checks out, so a forged stream costs no OpenAI session.
        self._open_model_early = signature_verified
        self._model: ClientConnection | None = None
        self._model_task: asyncio.Task[None] | None = None
        self._ticker_task: asyncio.Task[None] | None = None
        self._tool_tasks: set[asyncio.Task[None]] = set()
        # Tools beyond the built-ins (MCP, HTTP): found in the background (issue 18).
        self.tools = CallTools(
            enabled=config.enabled_tools,
            providers=config.tool_providers,
            builtin_timeout_s=TOOL_TIMEOUT_S,
        )
        self._discovery: asyncio.Task[None] | None = None
        self._audio_out = asyncio.Event()  # the first audio went to the caller
        # A resumed call's saved lines, read while its model socket opens (F-68).
        self._resume_lines: asyncio.Task[list[tuple[str, str]]] | None = None
        self._background: set[asyncio.Task[None]] = set()
        # Every database write, in order, never waited on (F-71).
        self._write_queue = BridgeWrites(
            call_id=config.call_id, clock=clock, retryable=self._write_retryable
        )
        self._pending_model: deque[str] = deque(maxlen=MAX_PENDING_MODEL_FRAMES)
        # What this call has said so far, to re-seed a new model session (F-25).
        self._lines: deque[tuple[str, str]] = deque(maxlen=MAX_RESEED_LINES)
        self._model_ready = asyncio.Event()
        self._stream_claimed = False
        self._claimed = asyncio.Event()
        self._started_stream = False
        self._finished = asyncio.Event()
        self._finishing = False
        self._released = False  # the model socket was let go of on purpose
        # "hangup" ends the call; "handoff" (to a human), "handover" (to another
        # bridge, F-68/F-69) and "lost" (the stream broke) leave it going without us.
        self._end_mode = "hangup"
        self._saw_stop = False
        self._rotating = False
        self._model_connected_at: float | None = None
        self._ever_opened = False  # a model socket was opened at least once
        self._model_given_up = False  # the claim must not start the model again
        self._session_ok = False
        self._last_activity = clock()
        self._idle_prompted = False
        self._goodbye_deadline: float | None = None
        self._heartbeat_slot: int | None = None
        self.first_model_event_ms: float | None = None
        self.model_closed_at: float | None = None
        self.model_failures = 0
        # Set while `drain` waits for a quiet moment: every frame in pokes it.
        self._drain_poke: asyncio.Event | None = None
        # Barge, take-over, hand-back (F-75): made at the first supervise command.
        self.supervisor_control: SupervisorControl | None = None
        # Supervisors listening (F-75): created at the first one's offer.
        self.supervision: Supervision | None = None

    # ------------------------------------------------------------------ lifecycle

    def now_ms(self) -> int:
        return int((self._clock() - self._t0) * 1000)

    async def start(self) -> None:
        """Begin: writer and ticker tasks, and the model socket if allowed early."""
        self._write_queue.start()
        self._ticker_task = asyncio.create_task(self._ticker(), name="bridge-ticker")
        if self._open_model_early:
            self._start_model()
        if self.tools.providers:
            # Off the greeting's path: the session opens with the built-ins.
            self._discovery = asyncio.create_task(
                self._discover_tools(), name="bridge-tools"
            )
            self._discovery.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _start_model(self) -> None:
        if self._model_task is None and not (self._finishing or self._model_given_up):
            if self.config.resume and self._resume_lines is None:
                # Beside the connect, not after it: one DB read off the resume's
                # path to first audio.
                self._resume_lines = asyncio.create_task(
                    self.store.load_transcript(), name="bridge-resume-lines"
                )
                # Read by `_saved_lines`; a failure shows there, not as a stray log.
                self._resume_lines.add_done_callback(
                    lambda t: t.cancelled() or t.exception()
                )
            self._model_task = asyncio.create_task(
                self._model_loop(), name="bridge-model"
            )

    async def _saved_lines(self) -> list[tuple[str, str]]:
        """The saved transcript for the re-seed: read at the model's start, or now."""
        task, self._resume_lines = self._resume_lines, None
        if task is None:
            return await self.store.load_transcript()
        return await task

    async def wait_finished(self) -> None:
        await self._finished.wait()

    async def finish(self, reason: str, *, failed: bool = False) -> None:
        """End the bridge once: close the model at once, save, finalise, close Twilio."""
        if self._finishing:
            return
        self._finishing = True
        try:
            await self._close_model()
            for task in (self._ticker_task, self._discovery, *self._tool_tasks):
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            if self.supervisor_control is not None:
                await self.supervisor_control.close()
            if self._end_mode in ("handover", "lost"):
                # What the AI already said is saved before another bridge re-seeds.
                for action in self.state.hangup(self._end_mode):
                    if isinstance(action, SaveTranscript):
                        self._save_transcript(action)
            if self.supervision is not None:
                await self.supervision.close()
            figures = self.state.figures()
            self._enqueue(lambda: self.store.save_figures(figures))
            if self._end_mode == "hangup" and self._stream_claimed:
                self._enqueue(lambda: self.store.finish(reason=reason, failed=failed))
            self._enqueue(
                lambda: self.store.record_event(
                    "bridge-end", {"reason": reason, "mode": self._end_mode}
                )
            )
            await self._write_queue.drain()
        finally:
            with contextlib.suppress(Exception):
                await self._close_twilio(1000)
            self._finished.set()
            self._poke_drain()
            log.info(
                "bridge finished: %s", reason, extra={"call_id": self.config.call_id}
            )

    async def hand_over(self, reason: str) -> None:
        """Let go of the stream without ending the call (F-68, F-69).

        The model closes, figures and pending writes are saved, and the Twilio socket
        closes with 1000; the call stays ai-responding, so Twilio's `<Connect action>`
        (any process) answers a fresh stream that resumes it.
        """
        if self._finishing:
            return
        self._end_mode = "handover"
        self._enqueue(
            lambda: self.store.record_event("stream-handover", {"reason": reason})
        )
        await self.finish(f"handover: {reason}"[:200])

    async def on_twilio_closed(self, code: int | None = None) -> None:
        """Twilio's socket closed. Without a `stop` (and not by us) the stream was
        lost, not the call: mode "lost" saves everything and leaves it ai-responding
        for the resume (F-68); Twilio's status callback or the reaper (F-52) end it
        if the caller really left."""
        if self._finishing:
            return
        if self._stream_claimed and not self._saw_stop:
            self._end_mode = "lost"
            payload = {"code": code}
            self._enqueue(lambda: self.store.record_event("stream-broken", payload))
            await self.finish("stream-lost")
            return
        await self.finish("twilio-disconnected")

    async def drain(self, within_s: float) -> bool:
        """Hand the stream over at the call's next quiet moment (F-69).

        Quiet: the stream has started, `BridgeState.quiet` holds (nothing of the AI
        still playing at Twilio per the marks, no response under way or queued, no
        tool call awaited, the caller not mid-utterance, every caller transcript in)
        and no tool task runs here. After `within_s` the call is handed over anyway.
        True when it was quiet (or ended by itself meanwhile).
        """
        started = self._clock()
        poke = self._drain_poke = asyncio.Event()
        quiet = True
        try:
            async with asyncio.timeout(max(within_s, 0.0)):
                while not self._finishing and not self.quiet:
                    poke.clear()
                    await poke.wait()
        except TimeoutError:
            quiet = False
        finally:
            self._drain_poke = None
        if self._finishing:
            await self._finished.wait()
            return True
        waited_ms = int((self._clock() - started) * 1000)
        log.info(
            "draining: handing the stream over after %d ms (%s)",
            waited_ms,
            "quiet" if quiet else "timed out mid-turn",
            extra={"call_id": self.config.call_id},
        )
        payload = {"quiet": quiet, "waited_ms": waited_ms}
        self._enqueue(lambda: self.store.record_event("drain", payload))
        await self.hand_over("drain" if quiet else "drain-timeout")
        return quiet

    @property
    def quiet(self) -> bool:
        """Whether the stream can be handed over now without cutting anything."""
        return self._stream_claimed and not self._tool_tasks and self.state.quiet

    def _poke_drain(self, *_: object) -> None:
        poke = self._drain_poke
        if poke is not None:
            poke.set()

    async def _close_model(self) -> None:
        # From here on a closing socket is ours, not a drop: the loop must not reconnect.
        self._released = True
        lines, self._resume_lines = self._resume_lines, None
        if lines is not None:
            lines.cancel()
        task, self._model_task = self._model_task, None
        model, self._model = self._model, None
        if model is not None:
            # close() waits for the peer's close frame; don't let a dead peer hold us.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(model.close(), timeout=0.5)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if model is not None or task is not None:
            self.model_closed_at = self._clock()

    # ------------------------------------------------------------ Twilio side in

    async def on_twilio_frame(self, frame: str | bytes) -> None:
        """One frame from Twilio's socket."""
        if self._finishing:
            return
        arrived = self._clock() if self.supervision is not None else 0.0
        try:
            message = parse_twilio_message(frame)
        except TwilioProtocolError as exc:
            log.warning(
                "malformed Twilio frame (%s): %s",
                exc.code,
                exc,
                extra={"call_id": self.config.call_id},
            )
            payload = {
                "source": "twilio",
                "code": int(exc.code),
                "detail": str(exc)[:300],
            }
            self._enqueue(lambda: self.store.record_event("error", payload))
            await self.finish("twilio-protocol-error", failed=True)
            return
        if self.config.debug_twilio and not isinstance(message, Media):
            log.info(
                "twilio ← %s",
                type(message).__name__,
                extra={"call_id": self.config.call_id},
            )
        if self.supervision is not None:
            if isinstance(message, Media):
                self.supervision.caller_audio(message.payload_b64, arrived)
            elif isinstance(message, Mark):
                self.supervision.mark_played(message.name, self._clock())
        if isinstance(message, Stop):
            self._saw_stop = True
        if isinstance(message, Start):
            if self._started_stream:
                return  # Twilio sends one start; a second is ignored
            token = message.custom_parameters.get("stream_token", "")
            # A cached greeting plays at once, beside the claim (F-73), on an upgrade
            # whose signature earned the model socket too; a refused claim then
            # closes the stream as before.
            early = self._open_model_early and self.config.cached_greeting is not None
            if early:
                self._started_stream = True
                await self._perform(
                    self.state.on_twilio_message(message, now_ms=self.now_ms())
                )
            if not await self._claim(token, message.stream_sid) or early:
                return
        elif not self._stream_claimed and not (
            isinstance(message, Media)
            or (isinstance(message, Mark) and self._started_stream)
        ):
            if isinstance(message, Stop):
                await self.finish("stopped-before-start")
            return
        await self._perform(self.state.on_twilio_message(message, now_ms=self.now_ms()))
        if self._drain_poke is not None:
            self._drain_poke.set()

    async def _claim(self, token: str, stream_sid: str) -> bool:
        self._started_stream = True
        if not await self.store.claim_stream(token=token, stream_sid=stream_sid):
            log.warning(
                "stream refused: bad or reused token",
                extra={"call_id": self.config.call_id},
            )
            await self._close_model()
            self._finishing = True
            self._finished.set()
            with contextlib.suppress(Exception):
                await self._close_twilio(1008)
            return False
        self._stream_claimed = True
        self._claimed.set()
        self._start_model()
        if self.config.greeting_key is not None:
            hit = {"hit": self.config.cached_greeting is not None}
            self._enqueue(lambda: self.store.record_event("greeting-cache", hit))
        return True

    # ------------------------------------------------- another caller transport in

    async def on_caller_started(
        self, *, stream_id: str, call_ref: str, token: str
    ) -> bool:
        """The caller's stream is up: spend its one-time token, as Twilio's start does.

        Returns whether the stream was accepted; a refused one ends the bridge.
        """
        if self._finishing or self._started_stream:
            return False
        if not await self._claim(token, stream_id):
            return False
        await self._perform(
            self.state.on_caller_start(
                stream_id, call_ref=call_ref, now_ms=self.now_ms()
            )
        )
        return True

    async def on_caller_audio(self, payload_b64: str) -> None:
        """Caller audio, base64 in the session's format (kept until the claim)."""
        if self._finishing:
            return
        if self.supervision is not None:
            self.supervision.caller_audio(payload_b64, self._clock())
        await self._perform(
            self.state.on_caller_audio(payload_b64, now_ms=self.now_ms())
        )

    async def on_playback_mark(self, name: str, *, played_at: float) -> None:
        """A mark reached the caller's ears at ``played_at`` (this bridge's clock)."""
        if self._finishing or not self._stream_claimed:
            return
        played_ms = int((played_at - self._t0) * 1000)
        if self.supervision is not None:
            self.supervision.mark_played(name, played_at)
        await self._perform(
            self.state.on_playback_mark(
                name, now_ms=self.now_ms(), played_at_ms=played_ms
            )
        )

    async def on_caller_stopped(self) -> None:
        """The caller hung up."""
        if self._finishing:
            return
        if not self._stream_claimed:
            await self.finish("stopped-before-start")
            return
        await self._perform(self.state.on_caller_stop(now_ms=self.now_ms()))

    # ----------------------------------------------------------- control in (F-23)

    async def on_control(self, command: str, data: dict[str, Any]) -> None:
        """A command from an operator, the API or a webhook, via the channel layer."""
        if self._finishing:
            return
        if command == "stream-claimed":
            # A newer stream of this call was claimed (a resume, F-68): one still
            # held here broke without our seeing it. Let go, leaving the call be.
            if self._stream_claimed and data.get("stream_sid") != self.state.stream_sid:
                self._end_mode = "lost"
                self._enqueue(
                    lambda: self.store.record_event(
                        "stream-superseded", {"by": data.get("stream_sid")}
                    )
                )
                await self.finish("superseded by a resumed stream")
            return
        if command == "supervise-offer":
            # Answered on the request's reply channel; the SDP is not an event.
            from realtime.supervise_offer import supervise_offer_answer

            await supervise_offer_answer(self, data)
            return
        if not command.startswith("supervise-"):  # those are recorded with who (F-75)
            self._enqueue(
                lambda: self.store.record_event("control", {"command": command, **data})
            )
        if command in SUPERVISE_COMMANDS:
            await self._supervisor().on_command(command, data)
        elif command == "instruct":
            await self._perform(self.state.instruct(str(data.get("text", ""))))
        elif command == "hangup":
            await self._perform(
                self.state.hangup(str(data.get("reason") or "operator"))
            )
        elif command == "goodbye":
            await self._say_goodbye(str(data.get("text") or GOODBYE_LINE))
        elif command == "end":
            await self.finish(str(data.get("reason") or "ended"))
        elif command == "handover":
            # Move the call's stream elsewhere (another process) without ending it.
            await self.hand_over(str(data.get("reason") or "control"))
        elif command == "handoff":
            # The caller is moving to a human: say the farewell, then let go (F-29).
            self._end_mode = "handoff"
            farewell = str(data.get("farewell") or "")
            if farewell and self.state.session_confirmed:
                await self._say_goodbye(farewell)
            else:
                await self._finish_handoff()
        else:
            log.warning(
                "unknown control command %r",
                command,
                extra={"call_id": self.config.call_id},
            )

    @property
    def live_for_supervision(self) -> bool:
        """The caller's stream is up here and the call is not ending."""
        return self._stream_claimed and not self._finishing

    def supervision_start(self, *, ice_servers: list[dict[str, Any]]) -> Supervision:
        """The call's supervision hub, created at the first listener's offer."""
        if self.supervision is None:
            # aiortc and the codecs load with the first listener, not every bridge.
            from realtime.supervision.hub import Supervision

            self.supervision = Supervision(
                audio=self.config.session.audio,
                host=self,
                record=lambda kind, payload: self._enqueue(
                    lambda: self.store.record_event(kind, payload)
                ),
                ice_servers=ice_servers,
                clock=self._clock,
            )
        return self.supervision

    # ------------------------------------------------------------ supervisor (F-75)

    def _supervisor(self) -> SupervisorControl:
        control = self.supervisor_control
        if control is None:
            config = self.config
            control = self.supervisor_control = SupervisorControl(
                state=self.state,
                audio=config.session.audio,
                perform=self._perform,
                to_caller=self._caller_out,
                record_event=lambda type_, payload: self._enqueue(
                    lambda: self.store.record_event(type_, payload)
                ),
                release_hold=lambda: self._enqueue(self.store.release_supervisor_hold),
                model_url=config.model_url,
                api_key=config.api_key,
                transcription=config.session.transcription,
                grace_s=config.supervisor_grace_s,
            )
        return control

    async def on_supervisor_audio(self, listener_id: str, pcm24: bytes) -> None:
        """A 20 ms PCM16 24 kHz frame of a listener's microphone (the media hub's)."""
        control = self.supervisor_control
        if control is not None and not self._finishing:
            await control.on_audio(listener_id, pcm24)

    async def on_supervisor_lost(self, listener_id: str) -> None:
        """A listener's browser is gone; one holding the call gets a grace period."""
        control = self.supervisor_control
        if control is not None and not self._finishing:
            await control.on_lost(listener_id)

    async def _caller_out(self, command: CallerCommand) -> None:
        """To the caller's transport at once (a supervisor's audio: no AI tap)."""
        if self._send_caller_fn is not None:
            await self._send_caller(command)
        else:
            await self._send_twilio(command.to_json())

    async def _say_goodbye(self, text: str) -> None:
        self._goodbye_deadline = self._clock() + HARD_STOP_GRACE_S
        await self._perform(self.state.say_and_hang_up(text))

    # ------------------------------------------------------------------ model side

    async def _model_loop(self) -> None:
        failures = 0
        reconnecting = False
        while not (self._finishing or self._released):
            try:
                await self._run_model_connection(reconnecting)
            except ModelGaveUp as exc:
                await self._model_failed(str(exc))
                return
            except (
                OSError,
                TimeoutError,
                InvalidHandshake,
                ConnectionClosed,
                ModelDropped,
            ) as exc:
                if self._finishing or self._released:
                    return
                connected = self._model_connected_at
                if (
                    self._session_ok
                    and connected
                    and self._clock() - connected >= STABLE_S
                ):
                    failures = 0  # it had worked for a while: a fresh count of tries
                failures += 1
                self.model_failures += 1
                reason = f"{type(exc).__name__}: {exc}"[:500]
                log.warning(
                    "model connection lost: %s",
                    reason,
                    extra={"call_id": self.config.call_id},
                )
                payload = {"source": "openai", "detail": reason}
                self._enqueue(lambda p=payload: self.store.record_event("error", p))
                if not self._ever_opened:
                    # A new session refused: fall back fast, no dead air (F-71).
                    if self._first_connect_gives_up(exc, failures):
                        await self._model_failed(reason)
                        return
                    await asyncio.sleep(FIRST_CONNECT_RETRY_S)
                    continue
                refused = isinstance(
                    exc, InvalidStatus
                ) and exc.response.status_code in (401, 403)
                if refused or failures > len(RECONNECT_DELAYS_S):
                    await self._model_failed(reason)
                    return
                # Forget the lost session at once, so caller audio is buffered by the
                # state (not sent into a dead socket) while we back off.
                await self._prepare_reconnect()
                await asyncio.sleep(RECONNECT_DELAYS_S[failures - 1])
            else:
                if self._finishing or self._released:
                    return
                await self._prepare_reconnect()  # a planned rotation
            self._rotating = False
            reconnecting = True

    def _first_connect_gives_up(self, exc: BaseException, failures: int) -> bool:
        """Record why a new call's first connect failed; True to fall back now.

        Refusals (401/403 and other 4xx) and a time-out fall back at once; a rate
        limit (429), a server error (5xx) or a refused TCP connection get one quick
        retry. Mid-call drops keep the F-25 back-off (RECONNECT_DELAYS_S).
        """
        status: int | None = None
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            if status == 429:
                kind = "rate-limited"
            elif status >= 500:
                kind = "server-error"
            else:
                kind = "refused"
        elif isinstance(exc, TimeoutError):
            kind = "timeout"
        elif isinstance(exc, OSError):
            kind = "unreachable"
        else:
            kind = "handshake-failed"
        retry = kind in ("rate-limited", "server-error", "unreachable") and failures < 2
        payload: dict[str, Any] = {
            "kind": kind,
            "attempt": failures,
            "ms": self.now_ms(),
            "retry": retry,
        }
        if status is not None:
            payload["status"] = status
        self._enqueue(lambda: self.store.record_event("model-connect-failed", payload))
        return not retry

    async def _prepare_reconnect(self) -> None:
        """Forget the lost session now; its commands wait for the next socket."""
        self._model = None
        self._model_ready.clear()
        # Frames meant for the lost session would confuse the new one.
        self._pending_model.clear()
        lines = list(self._lines)
        actions = self.state.on_model_reconnected(lines)
        self._enqueue(
            lambda: self.store.record_event("model-reconnect", {"lines": len(lines)})
        )
        await self._perform(actions)

    async def _run_model_connection(self, reconnecting: bool) -> None:
        self._model_connected_at = None
        self._session_ok = False
        headers = {"Authorization": f"Bearer {self.config.api_key}"}
        async with connect(
            self.config.model_url,
            additional_headers=headers,
            # A new call's caller hears silence while we wait: give up sooner.
            open_timeout=CONNECT_TIMEOUT_S
            if self._ever_opened
            else FIRST_CONNECT_TIMEOUT_S,
            max_size=16 * 1024 * 1024,
            compression=None,
            ping_interval=20,
            ping_timeout=20,
            user_agent_header="callcenter-bridge",
            create_connection=ShortPathClientConnection,
        ) as ws:
            self._model = ws
            self._model_connected_at = self._clock()
            self._ever_opened = True
            if reconnecting:
                pass  # _prepare_reconnect queued the session for this socket
            elif self.config.resume:
                self._lines.extend(await self._saved_lines())
                await self._perform(self.state.on_model_reconnected(list(self._lines)))
            else:
                await self._perform(self.state.on_model_connected())
            # Commands produced while no socket was open go first, in order.
            while self._pending_model:
                await ws.send(self._pending_model.popleft())
            self._model_ready.set()
            async for raw in ws:
                await self._on_model_frame(raw)
                if self._finishing or self._released:
                    return
                if self._drain_poke is not None:
                    self._drain_poke.set()
            # The server closed the socket: a drop unless we rotated on purpose.
            rcvd = ws.close_code
            if self._finishing or self._released:
                return
            if rcvd in (3000, 4000):
                raise ModelGaveUp(
                    f"model closed the session ({rcvd}: {ws.close_reason})"
                )
            if not self._rotating:
                raise ModelDropped(
                    f"model closed the socket ({rcvd}: {ws.close_reason})"
                )

    async def _on_model_frame(self, raw: str | bytes) -> None:
        if self.first_model_event_ms is None:
            self.first_model_event_ms = (self._clock() - self._t0) * 1000
        try:
            event = parse_server_event(raw)
        except ProtocolError as exc:
            log.warning(
                "malformed model event: %s", exc, extra={"call_id": self.config.call_id}
            )
            return
        if self.config.debug_realtime and not type(event).__name__.startswith(
            "OutputAudioDelta"
        ):
            log.info(
                "openai → %s",
                type(event).__name__,
                extra={"call_id": self.config.call_id},
            )
        if isinstance(event, (SpeechStarted, SpeechStopped)):
            self._last_activity = self._clock()
            self._idle_prompted = False
        elif isinstance(event, SessionCreated):
            session_id = str(event.session.get("id", ""))
            if session_id:
                self._enqueue(lambda: self.store.set_openai_session(session_id))
        elif isinstance(event, SessionUpdated):
            if not self._session_ok:  # a later update (tools added) is no new session
                self._enqueue(lambda: self.store.record_event("model-connected", {}))
            self._session_ok = True
        elif isinstance(event, ServerError):
            await self._on_model_error(event)
        elif isinstance(event, ResponseDone) and event.status == "failed":
            failure = {
                "source": "openai",
                "response_id": event.response_id,
                "code": event.error_code,
                "message": (event.error_message or "")[:300],
            }
            self._enqueue(lambda: self.store.record_event("response-failed", failure))
        try:
            actions = self.state.on_server_event(event, now_ms=self.now_ms())
        except ProtocolError as exc:
            log.warning(
                "unusable model event: %s", exc, extra={"call_id": self.config.call_id}
            )
            return
        await self._perform(actions)

    async def _on_model_error(self, error: ServerError) -> None:
        payload = {
            "source": "openai",
            "code": error.code,
            "message": error.message[:300],
        }
        self._enqueue(lambda: self.store.record_event("error", payload))
        log.warning(
            "model error %s: %s",
            error.code,
            error.message,
            extra={"call_id": self.config.call_id},
        )
        if error.code in NOT_RETRYABLE_CODES:
            raise ModelGaveUp(f"model refused: {error.code}")
        if error.code == "session_expired":
            # Not a failure: open a new session transparently (F-24).
            self._rotating = True
            if self._model is not None:
                await self._model.close()

    async def _model_failed(self, reason: str) -> None:
        """Every retry failed: hand off or apologise, as the profile says (F-25)."""
        log.error(
            "model unavailable: %s", reason, extra={"call_id": self.config.call_id}
        )
        self._enqueue(
            lambda: self.store.record_event("model-failed", {"reason": reason[:500]})
        )
        self._model_task = None
        self._model_given_up = True
        # The model was opened before `start`; the fallback needs the claimed call.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._claimed.wait(), timeout=3.0)
        if not self._stream_claimed:
            await self.finish(
                f"model-failure before start: {reason}"[:200], failed=True
            )
            return
        if not self._ever_opened and await self._fall_back_to_legacy(reason):
            return
        if self.config.on_model_failure == "handoff":
            self._end_mode = "handoff"
            try:
                await self.store.request_handoff(
                    trigger="model-failure", reason=reason[:200]
                )
            except Exception:
                log.exception(
                    "handoff after model failure failed",
                    extra={"call_id": self.config.call_id},
                )
                self._end_mode = "hangup"
                await self.finish(f"model-failure: {reason}"[:200], failed=True)
            return
        # The model cannot speak the apology; Twilio's <Say> after the stream does.
        self._end_mode = "hangup"
        self._enqueue(
            lambda: self.store.record_event("apology", {"text": APOLOGY_LINE})
        )
        await self.finish(f"model-failure: {reason}"[:200], failed=True)

    async def _fall_back_to_legacy(self, reason: str) -> bool:
        """Realtime refused this new call's session: let go of the stream so Twilio
        asks `stream-ended`, which goes on with the legacy Gather path (F-71, F-72).
        False when the call cannot take it (a web call, the store said no)."""
        try:
            switched = await self.store.fall_back_to_legacy(reason=reason[:200])
        except Exception:
            log.exception(
                "legacy fallback failed", extra={"call_id": self.config.call_id}
            )
            return False
        if switched:
            await self.hand_over("legacy-fallback")
        return switched

    # ------------------------------------------------------------------- actions

    async def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, CallerCommand):
                if not self._audio_out.is_set() and isinstance(action, SendAudio):
                    self._audio_out.set()
                if self.supervision is not None:
                    self.supervision.caller_command(action, self._clock())
                if self._send_caller_fn is not None:
                    await self._send_caller(action)
                else:
                    await self._send_twilio(action.to_json())
            elif isinstance(action, ModelCommand):
                await self._send_model(action.to_json())
            elif isinstance(action, SaveTranscript):
                self._save_transcript(action)
            elif isinstance(action, BroadcastPartial):
                speaker, item_id, delta = action.speaker, action.item_id, action.delta
                self._enqueue(
                    lambda s=speaker, i=item_id, d=delta: self.store.broadcast_partial(
                        speaker=s, item_id=i, delta=d
                    ),
                    essential=False,
                )
            elif isinstance(action, RunTool):
                task = asyncio.create_task(self._run_tool(action))
                self._tool_tasks.add(task)
                task.add_done_callback(self._tool_tasks.discard)
                task.add_done_callback(self._poke_drain)
            elif isinstance(action, DigitPressed):
                await self._on_digit(action.digit)
            elif isinstance(action, SessionMisconfigured):
                raise ModelGaveUp(f"session misconfigured: {action.detail}")
            elif isinstance(action, HangUp):
                await self._on_hang_up(action.reason)
            elif isinstance(action, GreetingSpoken):
                self._greeting_spoken(action)

    def _greeting_spoken(self, spoken: GreetingSpoken) -> None:
        """Fill the greeting cache from the live greeting, off the loop (F-73)."""
        cache, key = self.config.greeting_cache, self.config.greeting_key
        if cache is None or key is None:
            return

        async def store() -> None:
            try:
                await asyncio.to_thread(cache.put, key, spoken.text, spoken.audio)
            except Exception:
                log.exception(
                    "greeting not cached", extra={"call_id": self.config.call_id}
                )
                return
            ms = len(spoken.audio) // self.config.session.audio.bytes_per_ms
            self._enqueue(
                lambda: self.store.record_event("greeting-cached", {"audio_ms": ms})
            )

        task = asyncio.create_task(store(), name="bridge-greeting-cache")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_model(self, frame: str) -> None:
        model = self._model
        if model is None or not self._model_ready.is_set():
            # Not connected yet (or reconnecting): keep order, send on connect.
            self._pending_model.append(frame)
            return
        if write_text_now(model, frame):
            return
        try:
            await model.send(frame)
        except ConnectionClosed:
            self._pending_model.append(frame)

    async def _send_twilio(self, frame: str) -> None:
        try:
            await self._send_twilio_fn(frame)
        except Exception:
            log.debug("twilio send failed", exc_info=True)

    async def _send_caller(self, command: CallerCommand) -> None:
        assert self._send_caller_fn is not None
        try:
            await self._send_caller_fn(command)
        except Exception:
            log.debug("caller send failed", exc_info=True)

    def _save_transcript(self, action: SaveTranscript) -> None:
        offset = self.config.transcript_offset_ms + self.now_ms()
        self._lines.append((action.speaker, action.text))
        self._last_activity = self._clock()
        self._enqueue(
            lambda: self.store.save_transcript(
                speaker=action.speaker,
                text=action.text,
                item_id=action.item_id,
                offset_ms=offset,
                interrupted=action.interrupted,
            )
        )

    async def _on_digit(self, digit: str) -> None:
        self._enqueue(lambda: self.store.record_event("dtmf", {"digit": digit}))
        if self.config.handoff_digit and digit == self.config.handoff_digit:
            await self._request_handoff("dtmf", f"caller pressed {digit}")
            return
        await self._perform(
            self.state.instruct(
                f"お客様が電話のキー「{digit}」を押しました。必要なら対応してください。"
            )
        )

    async def _request_handoff(self, trigger: str, reason: str) -> None:
        try:
            await self.store.request_handoff(trigger=trigger, reason=reason)
        except Exception as exc:
            log.warning(
                "handoff refused: %s", exc, extra={"call_id": self.config.call_id}
            )
            detail = {"detail": str(exc)[:300]}
            self._enqueue(lambda: self.store.record_event("handoff-refused", detail))
            await self._perform(
                self.state.instruct(
                    "担当者への引き継ぎができませんでした。お客様にお詫びし、"
                    "引き続きご用件を伺ってください。"
                )
            )

    async def _on_hang_up(self, reason: str) -> None:
        if reason == "stop":
            await self.finish("caller-hangup")
        elif self._end_mode == "handoff":
            await self._finish_handoff()
        else:
            await self.finish(reason)

    async def _finish_handoff(self) -> None:
        """The farewell has played: let go of the model, move the caller to the room."""
        await self._close_model()
        try:
            await self.store.move_caller_to_handoff()
        except Exception:
            # Closing the stream still reaches the room through `<Connect action>`.
            log.exception(
                "moving the caller failed", extra={"call_id": self.config.call_id}
            )
        await self.finish("handoff")

    async def _discover_tools(self) -> None:
        """Find the providers' tools once the greeting is under way (its first audio
        sent), or at once when the caller speaks first."""
        if self.config.greeting is not None or self.config.cached_greeting is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._audio_out.wait(), TOOLS_AFTER_START_S)
        await self.tools.discover(self._add_tools)

    async def _add_tools(self, tools: list[ProvidedTool]) -> None:
        """Give the model the tools a provider found: one session.update."""
        if self._finishing:
            return
        actions = self.state.add_tools(
            [FunctionTool(t.name, t.description, t.parameters) for t in tools]
        )
        servers = sorted({t.server for t in tools})
        names = [t.name for t in tools]
        self._enqueue(
            lambda: self.store.record_event(
                "tools-added", {"servers": servers, "tools": names, "ms": self.now_ms()}
            )
        )
        if self._model is not None:
            # No socket yet: the connect's own session.update carries them.
            await self._perform(actions)

    async def _run_tool(self, action: RunTool) -> None:
        """Run one tool off the audio path; any failure becomes an error output."""
        outcome = await self.tools.run(
            action.name,
            action.arguments_json,
            ToolContext(
                call_id=self.config.call_id,
                organization_id=self.config.organization_id,
                caller_number=self.config.caller_number,
            ),
        )
        result = outcome.result
        event = outcome.event(action.name, action.arguments_json)
        self._enqueue(lambda: self.store.record_event("tool-call", event))
        if self._finishing:
            return
        await self._perform(
            self.state.on_tool_result(action.call_id, outcome.output_json)
        )
        if result.hang_up_after_playback:
            await self._say_goodbye(GOODBYE_LINE)
        elif result.handoff_reason is not None:
            await self._request_handoff("ai-tool", result.handoff_reason)

    # --------------------------------------------------------------- background

    def _enqueue(
        self, write: Callable[[], Awaitable[None]], *, essential: bool = True
    ) -> None:
        """Queue a write; never waits (see `realtime/bridge_writes.py`).

        Essential writes (transcript lines, events, figures, the end of the call)
        are kept and retried until the database takes them; live-only ones
        (partial text for monitors) are dropped when the writer is behind.
        """
        self._write_queue.enqueue(write, essential=essential)

    def _write_retryable(self, exc: Exception) -> bool:
        retryable = getattr(self.store, "retryable", None)
        return True if retryable is None else bool(retryable(exc))

    @property
    def writes_dropped(self) -> int:
        """Essential writes lost (buffer full, or given up after the call)."""
        return self._write_queue.dropped

    @property
    def writes_skipped(self) -> int:
        """Live-only writes skipped while the writer was behind."""
        return self._write_queue.skipped

    @property
    def write_retries(self) -> int:
        return self._write_queue.retries

    async def _ticker(self) -> None:
        """Once a second: heartbeat, limits, idle prompt, session rotation (F-24)."""
        config = self.config
        while not self._finishing:
            await asyncio.sleep(1.0)
            now = self._clock()
            # Beats fall on the same clock slots in every bridge of the process, so
            # the store can write them in one statement.
            slot = int(now // HEARTBEAT_EVERY_S)
            if slot != self._heartbeat_slot and self._stream_claimed:
                self._heartbeat_slot = slot
                self._enqueue(self.store.heartbeat)
            if self._goodbye_deadline is not None and now >= self._goodbye_deadline:
                await self.finish("goodbye-timeout")
                return
            if not self._stream_claimed or self._goodbye_deadline is not None:
                continue
            if now - self._t0 >= config.max_duration_s:
                self._enqueue(
                    lambda: self.store.record_event("limit", {"kind": "max-duration"})
                )
                await self._say_goodbye(
                    "お話の途中で申し訳ございませんが、お時間となりましたので失礼いたします。"
                )
                continue
            if self.state.paused:
                self._last_activity = now  # a supervisor holds the call: no idle prompt
            elif (
                self.state.active_response_id is None
                and now - self._last_activity >= config.idle_timeout_s
            ):
                if not self._idle_prompted:
                    self._idle_prompted = True
                    self._last_activity = now
                    self._enqueue(
                        lambda: self.store.record_event(
                            "limit", {"kind": "idle-prompt"}
                        )
                    )
                    await self._perform(self.state.instruct(IDLE_PROMPT))
                else:
                    self._enqueue(
                        lambda: self.store.record_event(
                            "limit", {"kind": "idle-timeout"}
                        )
                    )
                    await self._say_goodbye(GOODBYE_LINE)
                continue
            connected = self._model_connected_at
            if (
                connected is not None
                and self._model is not None
                and now - connected >= SESSION_ROTATE_AFTER_S
                and self.state.active_response_id is None
            ):
                self._rotating = True
                await self._model.close()


__all__ = ["CallBridge", "CallStore", "ModelDropped", "ModelGaveUp"]
