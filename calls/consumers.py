"""Operators' live sockets: a call's monitor and the organisation's dashboard (F-36, F-37).

Both are adapters: check who is asking, join the monitor group, and forward every
message broadcast to that group (`transcript.update`, `transcript.partial`,
`call.status`, `call.event`, and whatever the handoff adds) to the browser as JSON,
its `type` included. Nothing is received from the browser: control goes through
CSRF-protected HTTP views.

A socket that is not logged in, or asks for a call of another organisation, is
closed with 4403 before it is accepted.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from calls.groups import call_monitor_group, org_monitor_group

CLOSE_FORBIDDEN = 4403


class MonitorConsumer(AsyncJsonWebsocketConsumer):
    """Forward monitor-group messages to the socket; subclasses choose the groups."""

    groups_joined: list[str]
    # Message types not forwarded (too chatty for this page).
    skipped_types: frozenset[str] = frozenset()

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        groups = await self.monitor_groups(user)
        if groups is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        await self.accept()

    async def monitor_groups(self, user: Any) -> list[str] | None:
        """The groups to join for this user, or None to refuse."""
        raise NotImplementedError

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Ignore anything the browser sends."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Group broadcasts have no handler method: forward them whatever their type,
        # so new kinds (handoff steps) reach the page without a change here.
        kind = str(message.get("type", ""))
        if kind.startswith("websocket."):
            await super().dispatch(message)
        elif kind not in self.skipped_types:
            await self.send_json(message)


class CallMonitorConsumer(MonitorConsumer):
    """`ws/calls/<call_id>/`: one call's transcript, partial text, status and events."""

    async def monitor_groups(self, user: Any) -> list[str] | None:
        call_id = self.scope["url_route"]["kwargs"]["call_id"]
        if not await _user_may_see_call(user, call_id):
            return None
        return [call_monitor_group(call_id)]


class DashboardConsumer(MonitorConsumer):
    """`ws/dashboard/`: status and events of every call of the user's organisation."""

    skipped_types = frozenset({"transcript.partial"})

    async def monitor_groups(self, user: Any) -> list[str] | None:
        org_ids = await _user_organization_ids(user)
        if not org_ids:
            return None
        return [org_monitor_group(org_id) for org_id in org_ids]


@database_sync_to_async
def _user_may_see_call(user: Any, call_id: int) -> bool:
    from calls.selectors import call_list

    return call_list(user=user).filter(pk=call_id).exists()


@database_sync_to_async
def _user_organization_ids(user: Any) -> list[int]:
    from agents.models import Organization
    from agents.selectors import user_organization_id

    if user.is_superuser:
        return list(Organization.objects.values_list("pk", flat=True))
    org_id = user_organization_id(user)
    return [org_id] if org_id is not None else []
