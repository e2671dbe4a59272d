"""/api/health's channel-layer probe beside live consumers, on channels-redis.

A live call's consumer waits on its process-local channel; channels-redis lets one
coroutine at a time read the process's channels, for its own channel's prefix. The
probe must be answered while that read is under way (HAProxy's health checks of
`make cluster` time out otherwise and take every process out).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from calls.selectors import channel_layer_reachable

REDIS_URL = os.environ.get("REDIS_URL", "")
pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        not REDIS_URL, reason="REDIS_URL not set: the probe needs channels-redis"
    ),
]


async def test_probe_answers_while_a_consumer_waits_on_its_channel() -> None:
    layer = get_channel_layer()
    consumer_channel = await layer.new_channel()
    waiting = asyncio.create_task(layer.receive(consumer_channel))
    await asyncio.sleep(0.2)  # the consumer's read holds the layer's receive lock
    try:
        began = time.monotonic()
        reachable = await sync_to_async(channel_layer_reachable)(timeout=1.5)
        took = time.monotonic() - began
    finally:
        # The consumer's read ends as a consumer's does: with its message.
        await layer.send(consumer_channel, {"type": "test.done"})
        assert (await asyncio.wait_for(waiting, 10))["type"] == "test.done"
    assert reachable, f"probe failed after {took:.2f} s"
