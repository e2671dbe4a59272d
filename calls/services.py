"""Writes to calls: status changes, timeline, transcript, usage (HackSoft services).

Every function takes keyword-only arguments. Async twins (`a…`) run the sync one in
a DB thread through `callcenter.db.db_sync_to_async`, which also closes stale
connections: a call is a consumer that lives for minutes.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from callcenter.db import caller_loop, db_sync_to_async, send_in_order
from calls.groups import call_control_group, call_monitor_group, org_monitor_group
from calls.layer import agroup_send_best_effort, broadcasts_paused
from calls.models import CallEvent, CallSession, TranscriptEntry
from calls.status import TERMINAL, CallStatus, check_transition

log = logging.getLogger(__name__)

CONTROL_SEND_TIMEOUT_S = 3.0


def broadcast(*, call: CallSession, message: dict[str, Any]) -> None:
    """Send a monitor message to the call's and the organisation's groups.

    Best effort and bounded (calls/layer.py): this runs in the thread that wrote the
    row, so a down or hanging Redis must not hold it (F-71). On a DB thread
    (callcenter/db.py) the sends are handed to the calling event loop, in order, and
    not waited for at all: a DB thread that waited for a busy loop would hold up
    every query queued behind it. Elsewhere (a command, a test) they are sent before
    this returns.
    """
    if get_channel_layer() is None or broadcasts_paused():
        return
    payload = {"call_id": call.pk, **message}

    async def send_both() -> None:
        for group in (
            call_monitor_group(call.pk),
            org_monitor_group(call.organization_id),
        ):
            if not await agroup_send_best_effort(group, payload):
                return  # the layer is down: don't wait for it twice

    loop = caller_loop()
    if loop is not None and not loop.is_closed():
        send_in_order(loop, send_both)
        return
    try:
        async_to_sync(send_both)()
    except Exception:  # a monitor hiccup must never break a call
        log.warning("broadcast for call %s failed", call.pk, exc_info=True)


def _broadcast_on_commit(*, call: CallSession, message: dict[str, Any]) -> None:
    transaction.on_commit(lambda: broadcast(call=call, message=message))


def call_event_record(
    *, call: CallSession, type: str, payload: dict[str, Any] | None = None
) -> CallEvent:
    """Append a step to the call's timeline."""
    event = CallEvent.objects.create(call=call, type=type, payload=payload or {})
    _broadcast_on_commit(
        call=call,
        message={
            "type": "call.event",
            "event": type,
            "payload": event.payload,
            "at": event.created_at.isoformat(),
        },
    )
    return event


async def acall_event_record(
    *, call: CallSession, type: str, payload: dict[str, Any] | None = None
) -> CallEvent:
    """See call_event_record()."""
    return await db_sync_to_async(call_event_record)(
        call=call, type=type, payload=payload
    )


@transaction.atomic
def call_session_transition(
    *, call: CallSession, to: str, reason: str = "", at: datetime | None = None
) -> CallSession:
    """Move the call to status `to`, or raise IllegalTransition (F-08).

    The row is locked while the change is checked, so two processes racing (a status
    webhook and the bridge, say) cannot both apply conflicting changes. Repeating the
    current status is a no-op. Timestamps follow the status: answered on the first
    live state, ended on a final one.
    """
    locked = CallSession.objects.select_for_update().get(pk=call.pk)
    if not check_transition(locked.status, to):
        call.status = locked.status
        return locked
    now = at or timezone.now()
    previous = locked.status
    locked.status = to
    fields = ["status"]
    if (
        to in {CallStatus.AI_RESPONDING, CallStatus.TRANSFERRING}
        and not locked.answered_at
    ):
        locked.answered_at = now
        fields.append("answered_at")
    if to == CallStatus.HUMAN_CONNECTED and not locked.handoff_connected_at:
        locked.handoff_connected_at = now
        fields.append("handoff_connected_at")
    if to in TERMINAL:
        locked.ended_at = now
        locked.end_reason = (reason or locked.end_reason or to)[:200]
        fields += ["ended_at", "end_reason"]
        if locked.held_by_id is not None:  # no one holds an ended call (F-75)
            locked.held_by = None
            fields.append("held_by")
    locked.save(update_fields=fields)
    CallEvent.objects.create(
        call=locked,
        type="status",
        payload={"from": previous, "to": to, "reason": reason},
    )
    _broadcast_on_commit(
        call=locked,
        message={
            "type": "call.status",
            "status": to,
            "previous": previous,
            "reason": reason,
        },
    )
    for name in fields:
        setattr(call, name, getattr(locked, name))
    if to in TERMINAL:
        # The after-call step (F-76) runs on a worker once this commits: nothing of it
        # on the bridge's path, which goes on to close the model socket at once.
        from calls.summary.dispatch import summary_enqueue_on_commit

        summary_enqueue_on_commit(call_id=locked.pk)
    log.info("call status %s -> %s", previous, to, extra={"call_id": locked.pk})
    return locked


async def acall_session_transition(
    *, call: CallSession, to: str, reason: str = "", at: datetime | None = None
) -> CallSession:
    """See call_session_transition()."""
    return await db_sync_to_async(call_session_transition)(
        call=call, to=to, reason=reason, at=at
    )


def call_session_end(
    *, call: CallSession, reason: str, failed: bool = False
) -> CallSession:
    """Finish a live call as completed (or failed) and record why; idempotent."""
    call.refresh_from_db(fields=["status"])
    if call.status in TERMINAL:
        return call
    return call_session_transition(
        call=call,
        to=CallStatus.FAILED if failed else CallStatus.COMPLETED,
        reason=reason,
    )


async def acall_session_end(
    *, call: CallSession, reason: str, failed: bool = False
) -> CallSession:
    """See call_session_end()."""
    return await db_sync_to_async(call_session_end)(
        call=call, reason=reason, failed=failed
    )


def transcript_entry_add(
    *,
    call: CallSession,
    speaker: str,
    text: str,
    item_id: str = "",
    offset_ms: int = 0,
    interrupted: bool = False,
) -> TranscriptEntry:
    """Save one utterance and broadcast it to the monitors (F-20)."""
    entry = TranscriptEntry.objects.create(
        call=call,
        speaker=speaker,
        text=text,
        item_id=item_id,
        offset_ms=max(offset_ms, 0),
        interrupted=interrupted,
    )
    _broadcast_on_commit(call=call, message=transcript_update_message(entry))
    return entry


def transcript_update_message(entry: TranscriptEntry) -> dict[str, Any]:
    """A saved line as the monitors receive it (live and in a socket's catch-up)."""
    return {
        "type": "transcript.update",
        "entry_id": entry.pk,
        "speaker": entry.speaker,
        "text": entry.text,
        "item_id": entry.item_id,
        "offset_ms": entry.offset_ms,
        "interrupted": entry.interrupted,
        "final": True,
    }


async def atranscript_entry_add(
    *,
    call: CallSession,
    speaker: str,
    text: str,
    item_id: str = "",
    offset_ms: int = 0,
    interrupted: bool = False,
) -> TranscriptEntry:
    """See transcript_entry_add()."""
    return await db_sync_to_async(transcript_entry_add)(
        call=call,
        speaker=speaker,
        text=text,
        item_id=item_id,
        offset_ms=offset_ms,
        interrupted=interrupted,
    )


def usage_cost_usd(
    *,
    model: str,
    input_text: int,
    input_audio: int,
    input_cached: int,
    output_text: int,
    output_audio: int,
) -> Decimal:
    """Estimate cost from token counts and the per-model prices in settings (F-26).

    Cached tokens are a subset of input tokens; they are priced at the cached audio
    rate (the conversation re-sent each turn is mostly earlier audio).
    """
    prices = (
        settings.REALTIME_PRICES.get(model) or settings.REALTIME_PRICES["gpt-realtime"]
    )
    uncached_audio = max(input_audio - input_cached, 0)
    total = (
        input_text * prices["text_in"]
        + uncached_audio * prices["audio_in"]
        + input_cached * prices["audio_cached"]
        + output_text * prices["text_out"]
        + output_audio * prices["audio_out"]
    ) / 1_000_000
    return Decimal(str(round(total, 6)))


def call_session_save_figures(
    *,
    call: CallSession,
    usage: dict[str, int],
    first_audio_ms: int | None,
    turn_latencies_ms: list[int],
    barge_in_count: int,
) -> CallSession:
    """Store the usage, cost and latency figures the bridge measured (F-26, F-27)."""
    call.input_text_tokens = usage.get("input_text", 0)
    call.input_audio_tokens = usage.get("input_audio", 0)
    call.input_cached_tokens = usage.get("input_cached", 0)
    call.output_text_tokens = usage.get("output_text", 0)
    call.output_audio_tokens = usage.get("output_audio", 0)
    model = call.agent.model if call.agent_id else settings.OPENAI_REALTIME_MODEL
    call.cost_usd = usage_cost_usd(
        model=model,
        input_text=call.input_text_tokens,
        input_audio=call.input_audio_tokens,
        input_cached=call.input_cached_tokens,
        output_text=call.output_text_tokens,
        output_audio=call.output_audio_tokens,
    )
    call.first_audio_ms = first_audio_ms
    call.turn_latencies_ms = list(turn_latencies_ms)
    call.barge_in_count = barge_in_count
    call.save(
        update_fields=[
            "input_text_tokens",
            "input_audio_tokens",
            "input_cached_tokens",
            "output_text_tokens",
            "output_audio_tokens",
            "first_audio_ms",
            "turn_latencies_ms",
            "barge_in_count",
        ]
    )
    # The after-call summary (F-76) may have added its cost already: keep it, in one
    # statement, whichever of the two writes lands first.
    realtime_cost = call.cost_usd
    CallSession.objects.filter(pk=call.pk).update(
        cost_usd=realtime_cost + F("summary_cost_usd")
    )
    call.refresh_from_db(fields=["cost_usd", "summary_cost_usd"])
    return call


async def acall_session_save_figures(
    *,
    call: CallSession,
    usage: dict[str, int],
    first_audio_ms: int | None,
    turn_latencies_ms: list[int],
    barge_in_count: int,
) -> CallSession:
    """See call_session_save_figures()."""
    return await db_sync_to_async(call_session_save_figures)(
        call=call,
        usage=usage,
        first_audio_ms=first_audio_ms,
        turn_latencies_ms=turn_latencies_ms,
        barge_in_count=barge_in_count,
    )


def call_control_send(*, call_id: int, command: str, **data: Any) -> None:
    """Send a control command to the call's bridge, wherever it runs (F-23).

    Commands: `instruct` (text), `hangup`, `end` (reason), `handoff` (farewell).
    The bridge's consumer listens on `call.<id>`; with channels-redis this reaches it in
    any process.
    """
    async_to_sync(acall_control_send)(call_id=call_id, command=command, **data)


async def acall_control_send(*, call_id: int, command: str, **data: Any) -> None:
    """See call_control_send()."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("No channel layer configured")
    # Bounded (F-71): with Redis down the caller learns it now (the API answers
    # 502, try again), not after the client's retries and back-off.
    await asyncio.wait_for(
        layer.group_send(
            call_control_group(call_id),
            {"type": "call.control", "command": command, **data},
        ),
        CONTROL_SEND_TIMEOUT_S,
    )
