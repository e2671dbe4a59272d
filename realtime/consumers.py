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

from callcenter.logging import bind_call_id
from calls.groups import call_control_group
from calls.live import live_calls_decrement, live_calls_increment
from calls.twilio_security import websocket_signature_valid
from realtime.bridge import CallBridge
from realtime.call_setup import astream_call_setup
from realtime.store import DjangoCallStore

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008


class MediaStreamConsumer(AsyncWebsocketConsumer):
    bridge: CallBridge | None = None
    group: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' consumer loop without its cost per frame.

        Channels waits on the socket and the channel layer together, which costs a
        new task and an `asyncio.wait` for each of the 50 frames a second of a call.
        Here the socket is read in a plain loop and the channel layer in a task of
        its own; a lock keeps the messages of both handled one at a time, as
        Channels does.
        """
        self.scope = scope
        self.base_send = send
        self._dispatching = asyncio.Lock()
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        control: asyncio.Task[None] | None = None
        if self.channel_layer is not None:
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
            if control is not None:
                control.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await control

    async def _control_loop(self) -> None:
        while True:
            message = await self.channel_layer.receive(self.channel_name)
            try:
                async with self._dispatching:
                    await self.dispatch(message)
            except Exception:
                # A bad control message must not take the call down with it.
                log.exception("control message failed: %s", message.get("type"))

    async def connect(self) -> None:
        call_id = int(self.scope["url_route"]["kwargs"]["call_id"])
        self.call_id = call_id
        with bind_call_id(call_id):
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
            self.group = call_control_group(call_id)
            await self.channel_layer.group_add(self.group, self.channel_name)
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

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Hand media frames straight to the bridge; anything else to its handler.

        Channels (≥ 4.2) first closes stale database connections, in a worker thread,
        before every message: a hop onto the one thread-sensitive executor for each
        frame, connect and control message, queued behind everything else there.
        This consumer never touches the database on that thread: its database work
        goes through `callcenter.db.db_sync_to_async`, whose DB threads check their
        own connections.
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

    async def _refuse(self) -> None:
        await self.accept()
        await self.close(code=POLICY_VIOLATION)

    async def _send_text(self, text: str) -> None:
        await self.base_send({"type": "websocket.send", "text": text})

    async def _close(self, code: int) -> None:
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.bridge is not None:
            bridge, self.bridge = self.bridge, None
            with bind_call_id(self.call_id):
                await bridge.finish("twilio-disconnected")
            live_calls_decrement()

    async def call_control(self, event: dict[str, Any]) -> None:
        """A control command for this call (F-23), from any process."""
        if self.bridge is None:
            return
        data = {k: v for k, v in event.items() if k not in ("type", "command")}
        with bind_call_id(self.call_id):
            await self.bridge.on_control(str(event.get("command", "")), data)
