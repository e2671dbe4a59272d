"""Operators' live sockets: a call's monitor and the organisation's dashboard (F-36, F-37).

Both are adapters: check who is asking, join the monitor group, and forward every
message broadcast to that group (`transcript.update`, `transcript.partial`,
`call.status`, `call.event`, `call.supervision` (who holds the call, F-75), and
whatever the handoff adds) to the browser as JSON, its `type` included. Nothing is received from the browser: control goes through
CSRF-protected HTTP views.

A socket that is not logged in, or asks for a call of another organisation, is
closed with 4403 before it is accepted. With the channel layer (Redis) down, a socket
is closed with 1013 and one that was open is closed when its layer read fails; the
page reconnects with back-off and catches up (F-71).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import translation
from django.utils.translation.trans_real import parse_accept_lang_header

from callcenter.db import db_sync_to_async
from calls.groups import call_monitor_group, org_monitor_group
from calls.timeline import event_text

CLOSE_FORBIDDEN = 4403
CLOSE_TRY_AGAIN = 1013  # RFC 6455 "try again later": the channel layer is down
LAYER_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)


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
        try:
            for group in groups:
                await asyncio.wait_for(
                    self.channel_layer.group_add(group, self.channel_name),
                    LAYER_TIMEOUT_S,
                )
                self.groups_joined.append(group)
        except Exception:
            # Redis is down (F-71): refuse now; the page retries with back-off and
            # catches up (`?after=`) once it is back.
            log.warning("monitor socket refused: channel layer unreachable")
            self.groups_joined = []
            await self.accept()  # so the page sees the code, not a refused upgrade
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        await self.accept()

    async def monitor_groups(self, user: Any) -> list[str] | None:
        """The groups to join for this user, or None to refuse."""
        raise NotImplementedError

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            with contextlib.suppress(Exception):  # membership lapses by itself
                await asyncio.wait_for(
                    self.channel_layer.group_discard(group, self.channel_name),
                    LAYER_TIMEOUT_S,
                )

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
    """`ws/calls/<call_id>/`: one call's transcript, partial text, status and events.

    A `call.event` gets `text`: the event in words, in the page's language, as the
    page renders saved events (calls/timeline.py).

    `?after=<entry id>` (the newest line the page shows) asks for a catch-up: once
    the socket is in the group, one `call.snapshot` {status, entries, supervision}
    brings the lines saved after that one, the status now and who holds the call
    ({holder, mode, by_name}, as in `call.supervision`). So a line saved between the
    page's render and its socket joining, or while the socket was reconnecting,
    still shows; a line that also arrives live is shown once (the page keys lines
    by entry id).
    """

    async def connect(self) -> None:
        self.language = _socket_language(self.scope)
        await super().connect()
        after_id = _catch_up_from(self.scope.get("query_string", b""))
        if self.groups_joined and after_id is not None:
            call_id = self.scope["url_route"]["kwargs"]["call_id"]
            await self.send_json(await _snapshot(call_id, after_id))

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == "call.event" and "text" not in message:
            with translation.override(self.language):
                text = event_text(str(message.get("event", "")), message.get("payload"))
            message = {**message, "text": text}
        await super().dispatch(message)

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


@db_sync_to_async
def _user_may_see_call(user: Any, call_id: int) -> bool:
    from calls.selectors import call_list

    return call_list(user=user).filter(pk=call_id).exists()


@db_sync_to_async
def _user_organization_ids(user: Any) -> list[int]:
    from agents.models import Organization
    from agents.selectors import user_organization_id

    if user.is_superuser:
        return list(Organization.objects.values_list("pk", flat=True))
    org_id = user_organization_id(user)
    return [org_id] if org_id is not None else []


def _socket_language(scope: dict[str, Any]) -> str:
    """The page's language: the language cookie, else Accept-Language, else the default."""
    headers = {
        k.decode("latin-1").lower(): v.decode("latin-1")
        for k, v in scope.get("headers", [])
    }
    cookies = SimpleCookie(headers.get("cookie", ""))
    candidates = []
    if settings.LANGUAGE_COOKIE_NAME in cookies:
        candidates.append(cookies[settings.LANGUAGE_COOKIE_NAME].value)
    candidates += [
        code for code, _ in parse_accept_lang_header(headers.get("accept-language", ""))
    ]
    for code in candidates:
        with contextlib.suppress(LookupError):
            return translation.get_supported_language_variant(code)
    return settings.LANGUAGE_CODE


def _catch_up_from(query_string: bytes) -> int | None:
    """The entry id in `?after=`, or None when absent or not a whole number."""
    values = parse_qs(query_string.decode("latin-1")).get("after")
    if not values or not (values[-1].isascii() and values[-1].isdigit()):
        return None
    return int(values[-1])


@db_sync_to_async
def _snapshot(call_id: int, after_id: int) -> dict[str, Any]:
    from calls.models import CallSession
    from calls.selectors import (
        call_status,
        call_supervision_state,
        call_transcript_after,
    )
    from calls.services import transcript_update_message

    state = call_supervision_state(call=CallSession.objects.get(pk=call_id))
    return {
        "type": "call.snapshot",
        "call_id": call_id,
        "status": call_status(call_id=call_id),
        "entries": [
            transcript_update_message(entry)
            for entry in call_transcript_after(call_id=call_id, after_id=after_id)
        ],
        "supervision": {k: state[k] for k in ("holder", "mode", "by_name")},
    }
