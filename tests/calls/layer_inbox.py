"""A test's inbox on the in-memory channel layer: join a group, drain what arrived.

Tests that use it take the `in_memory_layer` fixture too: the PostgreSQL and Redis
suite's layer is channels-redis, which has no queues to look into.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


@pytest.fixture
def in_memory_layer(settings: Any) -> None:
    """The in-memory channel layer for this test, whatever the suite's layer is."""
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }


def group_inbox(group: str) -> Callable[[], list[dict[str, Any]]]:
    """Join `group` on a new channel; return drain(): the messages so far, in order."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)

    async def drain() -> list[dict[str, Any]]:
        got = []
        while (queue := layer.channels.get(channel)) is not None and not queue.empty():
            got.append(await layer.receive(channel))
        return got

    return async_to_sync(drain)
