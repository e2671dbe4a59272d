"""Cross-process delivery through channels-redis (runs when REDIS_URL is set, as on CI)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.conf import settings

REDIS_URL = os.environ.get("REDIS_URL", "")
pytestmark = [
    pytest.mark.redis,
    # The consumer touches no model, but the thread-sensitive executor may hold a
    # connection opened by an earlier async test: allow it a database.
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not REDIS_URL,
        reason="REDIS_URL not set: Redis channel-layer test needs a server",
    ),
]


class GroupEchoConsumer(AsyncJsonWebsocketConsumer):
    """Joins the group named in the URL and forwards group messages to its socket."""

    async def connect(self):
        self.group = self.scope["group"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def control_message(self, event):
        await self.send_json({"text": event["text"]})


async def _sent_from_another_layer_after(wait_s: float, text: str) -> object:
    """Connect a consumer on the configured layer, wait, send from a second layer
    instance (as another process would), and return what the consumer got."""
    from channels_redis.core import RedisChannelLayer

    group = f"test.{uuid.uuid4().hex}"
    communicator = WebsocketCommunicator(GroupEchoConsumer.as_asgi(), "/")
    communicator.scope["group"] = group
    connected, _ = await communicator.connect()
    assert connected
    other_process_layer = RedisChannelLayer(hosts=[REDIS_URL])
    try:
        await asyncio.sleep(wait_s)
        await other_process_layer.group_send(
            group, {"type": "control.message", "text": text}
        )
        return await communicator.receive_json_from(timeout=3)
    finally:
        await communicator.disconnect()
        await other_process_layer.flush()


async def test_group_message_from_another_layer_instance_reaches_consumer():
    """A message sent by one RedisChannelLayer instance reaches a consumer on another."""
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("RedisChannelLayer")
    assert await _sent_from_another_layer_after(0.05, "引き継ぎ") == {
        "text": "引き継ぎ"
    }


async def test_an_idle_consumer_survives_longer_than_the_blocking_pop():
    """A call's consumer waits for minutes between control messages: a read that
    times out with the blocking pop (5 s in channels-redis) must not kill it."""
    assert await _sent_from_another_layer_after(6.5, "まだ") == {"text": "まだ"}


async def test_health_sees_the_layer_while_calls_wait_for_control():
    """Every live call's consumer blocks reading its channel; channels-redis reads
    all of a process's channels of one kind under one lock. The health probe must
    not queue behind that lock (it used to time out whenever a call was live)."""
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer

    from calls.selectors import channel_layer_reachable

    layer = get_channel_layer()
    waiting = asyncio.create_task(layer.receive(await layer.new_channel()))
    try:
        await asyncio.sleep(0.2)  # the call's read holds the lock now
        assert await sync_to_async(channel_layer_reachable)(timeout=2.0)
    finally:
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
