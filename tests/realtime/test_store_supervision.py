"""The store's side of a lost supervisor (F-75): the monitors learn the AI holds the
call again (and ``held_by`` is cleared once the supervision migration added it)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from calls.groups import call_monitor_group
from realtime.store import DjangoCallStore
from tests.calls.factories import CallSessionFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


async def test_release_tells_the_monitors_the_ai_holds_the_call():
    call = await database_sync_to_async(CallSessionFactory)()
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(call_monitor_group(call.pk), channel)
    await DjangoCallStore(call).release_supervisor_hold()
    message = await layer.receive(channel)
    assert message == {
        "type": "call.supervision",
        "holder": "ai",
        "mode": None,
        "by_name": None,
    }
