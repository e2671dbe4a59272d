"""Cross-process delivery through channels-redis (runs when REDIS_URL is set, as on CI)."""

from __future__ import annotations

import asyncio
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
