"""Reads of calls, always scoped to what the asker may see (HackSoft selectors)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, time
from typing import TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import DatabaseError, connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from agents.selectors import organization_scope
from callcenter.draining import is_draining
from calls import live
from calls.models import CallEvent, CallSession, TranscriptEntry
from calls.status import LIVE

log = logging.getLogger(__name__)

# How long /api/health waits for its message to come back through the layer.
CHANNEL_LAYER_TIMEOUT_S = 2.0


def call_list(*, user: object) -> QuerySet[CallSession]:
    """Calls the user may see, newest first."""
    return organization_scope(
        CallSession.objects.select_related("agent", "organization"), user=user
    )


def today_start() -> datetime:
    """Midnight today in the organisation's time zone (TIME_ZONE)."""
    return timezone.make_aware(datetime.combine(timezone.localdate(), time.min))


def calls_today(*, user: object) -> QuerySet[CallSession]:
    """Today's calls: those that started since midnight, and those live now (a call
    that started before midnight and is still going counts today too)."""
    return call_list(user=user).filter(
        Q(created_at__gte=today_start()) | Q(status__in=LIVE)
    )


def call_get(*, user: object, call_id: int) -> CallSession:
    """One call the user may see; CallSession.DoesNotExist otherwise (a 404, not a 403)."""
    return call_list(user=user).get(pk=call_id)


def call_search(
    *,
    user: object,
    status: str | None = None,
    direction: str | None = None,
    path: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    agent_id: int | None = None,
    phone: str | None = None,
) -> QuerySet[CallSession]:
    """Calls the user may see, filtered; `phone` (E.164) matches from or to."""
    calls = call_list(user=user)
    if status:
        calls = calls.filter(status=status)
    if direction:
        calls = calls.filter(direction=direction)
    if path:
        calls = calls.filter(path=path)
    if created_after:
        calls = calls.filter(created_at__gte=created_after)
    if created_before:
        calls = calls.filter(created_at__lt=created_before)
    if agent_id is not None:
        calls = calls.filter(agent_id=agent_id)
    if phone:
        calls = calls.filter(Q(from_number=phone) | Q(to_number=phone))
    return calls


def call_detail(*, user: object, call_id: int) -> CallSession:
    """One call with its transcript and recordings loaded; DoesNotExist if not visible."""
    return (
        call_list(user=user)
        .prefetch_related("transcript", "recordings")
        .get(pk=call_id)
    )


def call_transcript(*, call: CallSession) -> QuerySet[TranscriptEntry]:
    """The call's transcript in call order."""
    return call.transcript.order_by("offset_ms", "id")


def call_transcript_after(*, call_id: int, after_id: int) -> list[TranscriptEntry]:
    """The call's lines saved after entry `after_id`, in call order (a monitor's catch-up)."""
    return list(
        TranscriptEntry.objects.filter(call_id=call_id, pk__gt=after_id).order_by(
            "offset_ms", "id"
        )
    )


def call_status(*, call_id: int) -> str:
    """The call's status now."""
    return CallSession.objects.values_list("status", flat=True).get(pk=call_id)


def call_events(*, call: CallSession) -> QuerySet[CallEvent]:
    """The call's timeline, oldest first."""
    return call.events.order_by("created_at", "id")


def live_call_count() -> int:
    """Calls in a live state across every process (the admission cap counts these)."""
    return CallSession.objects.filter(status__in=LIVE).count()


def live_calls_in_process() -> int:
    """Calls this process is bridging now.

    The bridge's own gauge (`realtime.metrics.LIVE_CALLS_IN_PROCESS`, a number or a
    callable) when that module exists, else the counter in `calls.live`.
    """
    try:
        metrics = importlib.import_module("realtime.metrics")
    except ModuleNotFoundError as exc:
        if exc.name not in ("realtime.metrics", "realtime"):
            raise
        return live.live_calls_in_process()
    gauge = getattr(metrics, "LIVE_CALLS_IN_PROCESS", None)
    if gauge is None:
        return live.live_calls_in_process()
    return int(gauge() if callable(gauge) else gauge)


def database_reachable() -> bool:
    """Return True if the default database answers `SELECT 1`."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        log.warning("health: database unreachable", exc_info=True)
        return False


def channel_layer_reachable(*, timeout: float | None = None) -> bool:
    """Return True if a message sent on the channel layer comes back in time."""
    limit = CHANNEL_LAYER_TIMEOUT_S if timeout is None else timeout
    layer = get_channel_layer()
    if layer is None:
        return False
    marker = secrets.token_hex(8)

    async def round_trip() -> bool:
        # The consumers' own kind of channel: channels-redis reads every process-local
        # channel of one kind with one blocking pop, under one lock per process. A
        # "health." channel would wait for that lock behind the live calls' reads
        # (each held until a message comes) and time out whenever a call is live.
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.ping", "marker": marker})
        message = await layer.receive(channel)
        return bool(message.get("marker") == marker)

    async def bounded() -> bool:
        return await asyncio.wait_for(round_trip(), limit)

    try:
        return async_to_sync(bounded)()
    except Exception:  # any failure of the layer is "unreachable", never a 500
        log.warning("health: channel layer unreachable", exc_info=True)
        return False


@dataclass(frozen=True, slots=True)
class Health:
    database: bool
    channel_layer: bool
    live_calls_in_process: int
    draining: bool = False

    @property
    def ok(self) -> bool:
        """Ready for new calls. Without the channel layer (Redis down) calls still
        talk, only control and monitors wait for it (F-71): degraded, not down."""
        return self.database and not self.draining

    @property
    def status(self) -> str:
        if self.draining:
            return "draining"
        if not self.database:
            return "unavailable"
        return "ok" if self.channel_layer else "degraded"


def health_check() -> Health:
    """Probe the database and the channel layer; count this process's live calls.

    A draining process (F-69: SIGTERM, handing its calls over) is not ready for new
    calls whatever the probes say.
    """
    return Health(
        database=database_reachable(),
        channel_layer=channel_layer_reachable(),
        live_calls_in_process=live_calls_in_process(),
        draining=is_draining(),
    )


# Supervision (F-75) ---------------------------------------------------------------

SUPERVISION_EVENTS = (
    "supervise-listen-start",
    "supervise-listen-stop",
    "supervise-phone-listen",
    "supervise-whisper",
    "supervise-barge",
    "supervise-barge-end",
    "supervise-take-over",
    "supervise-hand-back",
)
# Events that change who holds the call, and the mode each leaves it in.
_MODE_AFTER = {
    "supervise-barge": "barge",
    "supervise-take-over": "take-over",
    "supervise-barge-end": None,
    "supervise-hand-back": None,
}


class SupervisionState(TypedDict):
    holder: str  # "ai" or "supervisor"
    mode: str | None  # None, "barge" or "take-over"
    held_by: int | None
    by_name: str | None


def call_supervision_state(*, call: CallSession) -> SupervisionState:
    """Who holds the call now: {holder, mode, held_by, by_name}.

    `held_by` (a take-over) is the record; a barge leaves no holder on the row, so
    its mode comes from the latest barge / take-over / end / hand-back event.
    """
    last = (
        call.events.filter(type__in=_MODE_AFTER)
        .order_by("-created_at", "-id")
        .values("type", "payload")
        .first()
    )
    mode = _MODE_AFTER[last["type"]] if last else None
    held_by = call.held_by_id
    if held_by is not None:
        mode = "take-over"
    elif mode == "take-over":
        mode = None  # held_by cleared by the bridge (supervisor lost) or a hand-back
    by_name = (last or {}).get("payload", {}).get("by_name") if mode else None
    return {
        "holder": "supervisor" if mode else "ai",
        "mode": mode,
        "held_by": held_by,
        "by_name": by_name,
    }


def call_supervision_history(*, call: CallSession) -> list[dict[str, object]]:
    """Who listened to or stepped into the call, and when, oldest first.

    One row per action; a listen is one row from its start to its stop (`ended_at`
    and `seconds` None while it lasts). Times are aware datetimes; templates show
    them in the organisation's zone (settings.TIME_ZONE).
    """
    rows: list[dict[str, object]] = []
    open_listens: dict[str, dict[str, object]] = {}
    for event in call.events.filter(type__in=SUPERVISION_EVENTS).order_by(
        "created_at", "id"
    ):
        payload = event.payload or {}
        listener = str(payload.get("listener") or "")
        if event.type == "supervise-listen-stop" and listener in open_listens:
            row = open_listens.pop(listener)
            row["ended_at"] = event.created_at
            row["seconds"] = payload.get("seconds")
            continue
        listen = event.type.startswith("supervise-listen-")
        row = {
            "action": "listen" if listen else event.type.removeprefix("supervise-"),
            "by_id": payload.get("by_id"),
            "by_name": payload.get("by_name") or "",
            "at": event.created_at,
            "ended_at": None,
            "seconds": None,
            "text": payload.get("text", ""),
            "to": payload.get("to", ""),
            "coaching": bool(payload.get("coaching", False)),
            "reason": payload.get("reason", ""),
        }
        if event.type == "supervise-listen-start" and listener:
            open_listens[listener] = row
        elif event.type == "supervise-listen-stop":
            # A stop whose start we never saw: a listen that ended here.
            row["ended_at"], row["seconds"] = event.created_at, payload.get("seconds")
        rows.append(row)
    return rows
