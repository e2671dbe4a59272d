"""The media-stream consumer: a thin adapter between Channels and the bridge (F-15).

Accept only a known call that is waiting for its stream and whose upgrade carries a
valid Twilio signature; then hand every frame to the bridge and every control message
from group `call.<id>` to it. Anything else is closed with 1008 (policy violation),
logged, and costs no OpenAI connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from callcenter import draining
from callcenter.logging import bind_call_id
from calls.groups import call_control_group
from calls.live import live_calls_decrement, live_calls_increment
from calls.twilio_security import websocket_signature_valid
from realtime.bridge import CallBridge
from realtime.call_setup import astream_call_setup
from realtime.store import DjangoCallStore

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
# The channel layer (Redis) is never waited on longer than this by a call (F-71).
LAYER_TIMEOUT_S = 2.0
# The control group is joined again this often (a restarted Redis forgets it).
GROUP_REFRESH_S = 10.0
LAYER_RETRY_DELAYS_S = (0.1, 0.25, 0.5, 1.0)


def _layer_retry_delay(failures: int) -> float:
    return LAYER_RETRY_DELAYS_S[min(failures, len(LAYER_RETRY_DELAYS_S)) - 1]


class MediaStreamConsumer(AsyncWebsocketConsumer):
    bridge: CallBridge | None = None
    group: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' consumer loop without its cost per frame.

        Channels waits on the socket and the channel layer together, which costs a
        new task and an `asyncio.wait` for each of the 50 frames a second of a call.
        Here the socket is read in a plain loop and the channel layer in a task of
        its own; a lock keeps the messages of both handled one at a time, as
        Channels does. The call never waits on the channel layer (F-71): with Redis
        down the audio goes on and control comes back with it.
        """
        self.scope = scope
        self.base_send = send
        self._dispatching = asyncio.Lock()
        self._layer_trouble = asyncio.Event()
        self._groups_task: asyncio.Task[None] | None = None
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        control: asyncio.Task[None] | None = None
        if self.channel_layer is not None:
            # Local to this process (no Redis round trip with channels-redis).
            self.channel_name = await self.channel_layer.new_channel()
            control = asyncio.create_task(self._control_loop(), name="call-control")
        try:
            while True:
                message = await receive()
                async with self._dispatching:
                    await self.dispatch(message)
        except StopConsumer:
            pass
        finally:
            for task in (control, self._groups_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _control_loop(self) -> None:
        """Receive control messages for as long as the call lives, whatever Redis does.

        A failed receive (Redis down) is retried with back-off and asks the group
        keeper to rejoin at once: a restarted Redis has forgotten our membership.
        """
        failures = 0
        while True:
            try:
                message = await self.channel_layer.receive(self.channel_name)
            except Exception as exc:
                failures += 1
                self._layer_trouble.set()
                if failures == 1:
                    log.warning(
                        "control channel unreachable (%s); retrying",
                        f"{type(exc).__name__}: {exc}"[:200],
                        extra={"call_id": getattr(self, "call_id", None)},
                    )
                await asyncio.sleep(_layer_retry_delay(failures))
                continue
            if failures:
                log.warning(
                    "control channel back after %d failed receives",
                    failures,
                    extra={"call_id": getattr(self, "call_id", None)},
                )
                failures = 0
            try:
                async with self._dispatching:
                    await self.dispatch(message)
            except Exception:
                # A bad control message must not take the call down with it.
                log.exception("control message failed: %s", message.get("type"))

    async def _keep_groups(self) -> None:
        """Be (and stay) in the call's control group, in the background (F-71).

        Joined after the bridge has started, so a call never waits on Redis to talk;
        joined again every GROUP_REFRESH_S and at once after the control loop saw
        the layer fail, since a Redis that restarted has lost every group.
        """
        assert self.group is not None
        failures = 0
        while True:
            try:
                await asyncio.wait_for(
                    self.channel_layer.group_add(self.group, self.channel_name),
                    LAYER_TIMEOUT_S,
                )
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "control group not joined (%s); retrying",
                        f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__,
                        extra={"call_id": self.call_id},
                    )
                await asyncio.sleep(_layer_retry_delay(failures))
                continue
            if failures:
                log.warning(
                    "control group joined after %d failed tries",
                    failures,
                    extra={"call_id": self.call_id},
                )
                failures = 0
            self._layer_trouble.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._layer_trouble.wait(), GROUP_REFRESH_S)

    async def connect(self) -> None:
        call_id = int(self.scope["url_route"]["kwargs"]["call_id"])
        self.call_id = call_id
        with bind_call_id(call_id):
            if draining.refusing_streams():
                # Twilio asks `<Connect action>` next; another process answers it.
                log.warning("media stream refused: this server is draining (F-69)")
                await self._refuse(TRY_AGAIN_LATER)
                return
            if not websocket_signature_valid(
                path=self.scope["path"], headers=self.scope["headers"]
            ):
                log.warning("media stream refused: bad or missing signature")
                await self._refuse()
                return
            try:
                setup = await astream_call_setup(call_id)
            except Exception:
                log.exception("media stream refused: call cannot be configured")
                await self._refuse()
                return
            if setup is None:
                log.warning(
                    "media stream refused: unknown call or not waiting for a stream"
                )
                await self._refuse()
                return
            call, config = setup
            await self.accept()
            self.bridge = CallBridge(
                config,
                store=DjangoCallStore(call),
                send_to_twilio=self._send_text,
                close_twilio=self._close,
                # Only a proven Twilio upgrade earns a model socket before `start`.
                signature_verified=settings.TWILIO_VALIDATE_SIGNATURES,
            )
            live_calls_increment()
            await self.bridge.start()
            if self.channel_layer is not None:
                self.group = call_control_group(call_id)
                self._groups_task = asyncio.create_task(
                    self._keep_groups(), name="call-control-group"
                )
            # Registered last: a stream accepted while a drain began is drained too.
            draining.register(self.bridge)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Hand media frames straight to the bridge; anything else to its handler.

        Channels (≥ 4.2) first closes stale database connections, in a worker thread,
        before every message: a hop onto the one thread-sensitive executor for each
        frame, connect and control message, queued behind everything else there
        (measured: a control command waited seconds after a Redis outage, F-71; stream
        connects waited behind each other under a burst). This consumer never touches
        the database on that thread: its database work goes through
        `callcenter.db.db_sync_to_async`, whose DB threads check their own connections.
        """
        if message["type"] == "websocket.receive":
            if self.bridge is not None:
                text = message.get("text")
                await self.bridge.on_twilio_frame(
                    text if text is not None else message.get("bytes") or b""
                )
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def _refuse(self, code: int = POLICY_VIOLATION) -> None:
        await self.accept()
        await self.close(code=code)

    async def _send_text(self, text: str) -> None:
        await self.base_send({"type": "websocket.send", "text": text})

    async def _close(self, code: int) -> None:
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        if self._groups_task is not None:
            self._groups_task.cancel()
        if self.bridge is not None:
            bridge, self.bridge = self.bridge, None
            draining.unregister(bridge)
            with bind_call_id(self.call_id):
                await bridge.on_twilio_closed(code)
            live_calls_decrement()
        if self.group is not None:
            # Best effort: with Redis down the membership lapses by itself.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.channel_layer.group_discard(self.group, self.channel_name),
                    LAYER_TIMEOUT_S,
                )

    async def call_control(self, event: dict[str, Any]) -> None:
        """A control command for this call (F-23), from any process."""
        if self.bridge is None:
            return
        data = {k: v for k, v in event.items() if k not in ("type", "command")}
        with bind_call_id(self.call_id):
            await self.bridge.on_control(str(event.get("command", "")), data)
