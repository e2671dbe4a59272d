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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from realtime.call_setup import APOLOGY_LINE, GOODBYE_LINE, IDLE_PROMPT, BridgeConfig
from realtime.protocol.bridge_state import (
    Action,
    BridgeFigures,
    BridgeState,
    BroadcastPartial,
    CallerCommand,
    DigitPressed,
    HangUp,
    ModelCommand,
    RunTool,
    SaveTranscript,
    SessionMisconfigured,
)
from realtime.protocol.errors import ProtocolError, TwilioProtocolError
from realtime.protocol.openai_events import (
    ResponseDone,
    ServerError,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    parse_server_event,
)
from realtime.protocol.twilio_media import Media, Start, Stop, parse_twilio_message
from realtime.tools import REGISTRY, ToolContext, ToolResult
from realtime.ws_connections import ShortPathClientConnection
from realtime.ws_send import write_text_now

log = logging.getLogger(__name__)

RECONNECT_DELAYS_S = (0.25, 1.0, 2.0)  # three tries (F-25)
CONNECT_TIMEOUT_S = 10.0
# A connection that lived this long and then dropped starts the count of tries afresh;
# one that keeps dropping sooner counts towards the fallback.
STABLE_S = 30.0
TOOL_TIMEOUT_S = 8.0
HEARTBEAT_EVERY_S = 15.0
SESSION_ROTATE_AFTER_S = 55 * 60  # before the 60-minute cap (PROTOCOL C11)
HARD_STOP_GRACE_S = 30.0  # after a polite goodbye, hang up regardless
MAX_PENDING_MODEL_FRAMES = 500
MAX_PENDING_WRITES = 1000
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
        self.state = BridgeState(session=config.session, greeting=config.greeting)
        # Without a proven Twilio signature, the model is opened only after the
        # one-time token checks out, so a forged stream costs no OpenAI session.
        self._open_model_early = signature_verified
        self._model: ClientConnection | None = None
        self._model_task: asyncio.Task[None] | None = None
        self._ticker_task: asyncio.Task[None] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self._writes: asyncio.Queue[Callable[[], Awaitable[None]] | None] = (
            asyncio.Queue(MAX_PENDING_WRITES)
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
        self._end_mode = "hangup"  # or "handoff": the call goes on without us
        self._rotating = False
        self._model_connected_at: float | None = None
        self._session_ok = False
        self._last_activity = clock()
        self._idle_prompted = False
        self._goodbye_deadline: float | None = None
        self._heartbeat_slot: int | None = None
        self.first_model_event_ms: float | None = None
        self.model_closed_at: float | None = None
        self.model_failures = 0

    # ------------------------------------------------------------------ lifecycle

    def now_ms(self) -> int:
        return int((self._clock() - self._t0) * 1000)

    async def start(self) -> None:
        """Begin: writer and ticker tasks, and the model socket if allowed early."""
        self._writer_task = asyncio.create_task(self._writer(), name="bridge-writer")
        self._ticker_task = asyncio.create_task(self._ticker(), name="bridge-ticker")
        if self._open_model_early:
            self._start_model()

    def _start_model(self) -> None:
        if self._model_task is None and not self._finishing:
            self._model_task = asyncio.create_task(
                self._model_loop(), name="bridge-model"
            )

    async def wait_finished(self) -> None:
        await self._finished.wait()

    async def finish(self, reason: str, *, failed: bool = False) -> None:
        """End the bridge once: close the model at once, save, finalise, close Twilio."""
        if self._finishing:
            return
        self._finishing = True
        try:
            await self._close_model()
            for task in (self._ticker_task, *self._tool_tasks):
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            figures = self.state.figures()
            self._enqueue(lambda: self.store.save_figures(figures))
            if self._end_mode == "hangup" and self._stream_claimed:
                self._enqueue(lambda: self.store.finish(reason=reason, failed=failed))
            self._enqueue(
                lambda: self.store.record_event(
                    "bridge-end", {"reason": reason, "mode": self._end_mode}
                )
            )
            await self._drain_writes()
        finally:
            with contextlib.suppress(Exception):
                await self._close_twilio(1000)
            self._finished.set()
            log.info(
                "bridge finished: %s", reason, extra={"call_id": self.config.call_id}
            )

    async def _close_model(self) -> None:
        # From here on a closing socket is ours, not a drop: the loop must not reconnect.
        self._released = True
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
        if isinstance(message, Start):
            if self._started_stream:
                return  # Twilio sends one start; a second is ignored
            token = message.custom_parameters.get("stream_token", "")
            if not await self._claim(token, message.stream_sid):
                return
        elif not self._stream_claimed and not isinstance(message, Media):
            if isinstance(message, Stop):
                await self.finish("stopped-before-start")
            return
        await self._perform(self.state.on_twilio_message(message, now_ms=self.now_ms()))

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
        await self._perform(
            self.state.on_caller_audio(payload_b64, now_ms=self.now_ms())
        )

    async def on_playback_mark(self, name: str, *, played_at: float) -> None:
        """A mark reached the caller's ears at ``played_at`` (this bridge's clock)."""
        if self._finishing or not self._stream_claimed:
            return
        played_ms = int((played_at - self._t0) * 1000)
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
        self._enqueue(
            lambda: self.store.record_event("control", {"command": command, **data})
        )
        if command == "instruct":
            await self._perform(self.state.instruct(str(data.get("text", ""))))
        elif command == "hangup":
            await self._perform(
                self.state.hangup(str(data.get("reason") or "operator"))
            )
        elif command == "goodbye":
            await self._say_goodbye(str(data.get("text") or GOODBYE_LINE))
        elif command == "end":
            await self.finish(str(data.get("reason") or "ended"))
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
            open_timeout=CONNECT_TIMEOUT_S,
            max_size=16 * 1024 * 1024,
            compression=None,
            ping_interval=20,
            ping_timeout=20,
            user_agent_header="callcenter-bridge",
            create_connection=ShortPathClientConnection,
        ) as ws:
            self._model = ws
            self._model_connected_at = self._clock()
            if reconnecting:
                pass  # _prepare_reconnect queued the session for this socket
            elif self.config.resume:
                self._lines.extend(await self.store.load_transcript())
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
            self._session_ok = True
            self._enqueue(lambda: self.store.record_event("model-connected", {}))
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
        # The model was opened before `start`; the fallback needs the claimed call.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._claimed.wait(), timeout=3.0)
        if not self._stream_claimed:
            await self.finish(
                f"model-failure before start: {reason}"[:200], failed=True
            )
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

    # ------------------------------------------------------------------- actions

    async def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, CallerCommand):
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
                    )
                )
            elif isinstance(action, RunTool):
                task = asyncio.create_task(self._run_tool(action))
                self._tool_tasks.add(task)
                task.add_done_callback(self._tool_tasks.discard)
            elif isinstance(action, DigitPressed):
                await self._on_digit(action.digit)
            elif isinstance(action, SessionMisconfigured):
                raise ModelGaveUp(f"session misconfigured: {action.detail}")
            elif isinstance(action, HangUp):
                await self._on_hang_up(action.reason)

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
        offset = self.now_ms()
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

    async def _run_tool(self, action: RunTool) -> None:
        """Run one tool off the audio path; any failure becomes an error output."""
        started = self._clock()
        tool = (
            REGISTRY.get(action.name)
            if action.name in self.config.enabled_tools
            else None
        )
        result: ToolResult
        if tool is None:
            result = ToolResult(
                output={"ok": False, "error": f"unknown tool: {action.name}"}
            )
        else:
            try:
                args = json.loads(action.arguments_json or "{}")
                if not isinstance(args, dict):
                    raise ValueError("arguments must be a JSON object")
                ctx = ToolContext(
                    call_id=self.config.call_id,
                    organization_id=self.config.organization_id,
                    caller_number=self.config.caller_number,
                )
                result = await asyncio.wait_for(tool.func(ctx, args), TOOL_TIMEOUT_S)
            except TimeoutError:
                result = ToolResult(output={"ok": False, "error": "tool timed out"})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception(
                    "tool %s failed",
                    action.name,
                    extra={"call_id": self.config.call_id},
                )
                result = ToolResult(
                    output={"ok": False, "error": f"tool failed: {exc}"[:300]}
                )
        elapsed_ms = int((self._clock() - started) * 1000)
        self._enqueue(
            lambda: self.store.record_event(
                "tool-call",
                {
                    "name": action.name,
                    "arguments": action.arguments_json[:1000],
                    "ok": bool(result.output.get("ok")),
                    "output": result.output,
                    "ms": elapsed_ms,
                },
            )
        )
        if self._finishing:
            return
        output = json.dumps(result.output, ensure_ascii=False, default=str)
        await self._perform(self.state.on_tool_result(action.call_id, output))
        if result.hang_up_after_playback:
            await self._say_goodbye(GOODBYE_LINE)
        elif result.handoff_reason is not None:
            await self._request_handoff("ai-tool", result.handoff_reason)

    # --------------------------------------------------------------- background

    def _enqueue(self, write: Callable[[], Awaitable[None]]) -> None:
        try:
            self._writes.put_nowait(write)
        except asyncio.QueueFull:
            log.error(
                "write queue full; dropping a write",
                extra={"call_id": self.config.call_id},
            )

    async def _writer(self) -> None:
        while True:
            write = await self._writes.get()
            try:
                if write is None:
                    return
                await write()
            except Exception:
                log.exception(
                    "bridge write failed", extra={"call_id": self.config.call_id}
                )
            finally:
                self._writes.task_done()

    async def _drain_writes(self) -> None:
        self._enqueue_stop()
        if self._writer_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._writer_task), timeout=10)

    def _enqueue_stop(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._writes.put_nowait(None)

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
            if (
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
