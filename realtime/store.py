"""The bridge's persistence, through the calls services (async twins).

The bridge talks to this object only; tests can hand it another one. Nothing here is
called per audio frame: transcripts are written per utterance, heartbeats of all calls
in one UPDATE every 15 s, figures once at the end.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from callcenter.db import db_sync_to_async
from calls import services
from calls.groups import call_monitor_group, org_monitor_group
from calls.layer import agroup_send_best_effort
from calls.models import CallSession, TranscriptEntry
from calls.status import CallStatus
from realtime.protocol.bridge_state import BridgeFigures

log = logging.getLogger(__name__)

# Bridges tick once a second and beat on the same slots; waiting this long puts every
# live call of the process into one UPDATE.
HEARTBEAT_GATHER_S = 1.5
# A heartbeat that could not be written is tried again after 0.5 s, then doubling up
# to this; the reaper waits 90 s without one before it takes a call for dead.
HEARTBEAT_RETRY_FIRST_S = 0.5
HEARTBEAT_RETRY_MAX_S = 2.0

# A call back from a human (F-33, F-34) is already ai-responding, with a fresh token.
STREAM_EXPECTING = (CallStatus.INITIATED, CallStatus.RINGING, CallStatus.AI_RESPONDING)


def stream_call_find(call_id: int) -> CallSession | None:
    """The call if it may start a media stream now (F-15): known, waiting, token unused."""
    return (
        CallSession.objects.select_related("agent", "organization")
        .filter(
            pk=call_id, status__in=STREAM_EXPECTING, stream_token_used_at__isnull=True
        )
        .first()
    )


stream_call_get = db_sync_to_async(stream_call_find)


def _stream_refused_draining(call_id: int) -> bool:
    """This draining process refuses the call's stream (F-69): not a failed resume."""
    from calls.resume import stream_refused_draining_record as record

    return record(call_id=call_id)


stream_refused_draining_record = functools.partial(db_sync_to_async, lane="setup")(
    _stream_refused_draining
)


class DjangoCallStore:
    """Reads and writes of one call on behalf of its bridge."""

    def __init__(self, call: CallSession) -> None:
        self.call = call

    async def claim_stream(self, *, token: str, stream_sid: str) -> bool:
        """Spend the one-time stream token; True only for the first, valid use.

        A resumed stream (F-68) also tells any bridge still holding an older stream
        of the call (a half-open socket it has not seen break) to let go.
        """
        claimed, resumed = await self._claim_stream(token=token, stream_sid=stream_sid)
        if resumed:
            try:
                await services.acall_control_send(
                    call_id=self.call.pk,
                    command="stream-claimed",
                    stream_sid=stream_sid,
                )
            except Exception:
                log.warning("stream-claimed not sent", exc_info=True)
        return claimed

    @functools.partial(db_sync_to_async, lane="setup")
    def _claim_stream(self, *, token: str, stream_sid: str) -> tuple[bool, bool]:
        """(claimed, a resume) for the token."""
        if not token:
            return False, False
        # One transaction: one commit (one write turn on SQLite) for the claim, the
        # status change and the events.
        with transaction.atomic():
            return self._claim_in_transaction(token=token, stream_sid=stream_sid)

    def _claim_in_transaction(
        self, *, token: str, stream_sid: str
    ) -> tuple[bool, bool]:
        now = timezone.now()
        claimed = CallSession.objects.filter(
            pk=self.call.pk,
            stream_token=token,
            stream_token_used_at__isnull=True,
            status__in=STREAM_EXPECTING,
        ).update(
            stream_token_used_at=now,
            stream_sid=stream_sid,
            ai_resume_note="",
            # A resumed stream (F-68) is back: the loss is over, its count reset.
            stream_lost_at=None,
            stream_resume_failures=0,
            heartbeat_at=now,
        )
        if not claimed:
            return False, False
        self.call.stream_sid = stream_sid
        services.call_session_transition(
            call=self.call, to=CallStatus.AI_RESPONDING, reason="stream-start"
        )
        services.call_event_record(
            call=self.call, type="stream-start", payload={"stream_sid": stream_sid}
        )
        lost_at = self.call.stream_lost_at  # as stream-ended left it for this token
        if lost_at is not None:
            self.call.stream_lost_at = None
            gap_ms = int((now - lost_at).total_seconds() * 1000)
            services.call_event_record(
                call=self.call,
                type="stream-resumed",
                payload={"gap_ms": gap_ms, "stream_sid": stream_sid},
            )
        return True, lost_at is not None

    async def record_event(
        self, type: str, payload: dict[str, Any] | None = None
    ) -> None:
        await services.acall_event_record(call=self.call, type=type, payload=payload)

    async def save_transcript(
        self,
        *,
        speaker: str,
        text: str,
        item_id: str,
        offset_ms: int,
        interrupted: bool,
    ) -> None:
        await services.atranscript_entry_add(
            call=self.call,
            speaker=speaker,
            text=text,
            item_id=item_id,
            offset_ms=offset_ms,
            interrupted=interrupted,
        )

    async def broadcast_partial(
        self, *, speaker: str, item_id: str, delta: str
    ) -> None:
        """Live text for monitors; not saved (F-20). Best effort, bounded (F-71)."""
        message = {
            "type": "transcript.partial",
            "call_id": self.call.pk,
            "speaker": speaker,
            "item_id": item_id,
            "delta": delta,
        }
        for group in (
            call_monitor_group(self.call.pk),
            org_monitor_group(self.call.organization_id),
        ):
            if not await agroup_send_best_effort(group, message):
                return

    @staticmethod
    def retryable(exc: Exception) -> bool:
        """Whether a failed write is worth another try: the database was down or
        locked (F-71), not a refusal such as an illegal status change."""
        return isinstance(exc, (OperationalError, InterfaceError))

    @functools.partial(db_sync_to_async, lane="setup")
    def load_transcript(self) -> list[tuple[str, str]]:
        """Saved lines, oldest first, to re-seed a new model session (F-25).

        On the setup lane: the caller waits for it (a resume, a model reconnect),
        not behind the writes of the calls already up."""
        return list(
            TranscriptEntry.objects.filter(call_id=self.call.pk)
            .order_by("offset_ms", "id")
            .values_list("speaker", "text")
        )

    async def heartbeat(self) -> None:
        heartbeats.beat(self.call.pk)

    @db_sync_to_async
    def set_openai_session(self, session_id: str) -> None:
        CallSession.objects.filter(pk=self.call.pk).update(openai_session_id=session_id)

    async def save_figures(self, figures: BridgeFigures) -> None:
        usage = figures.usage
        await services.acall_session_save_figures(
            call=self.call,
            usage={
                "input_text": usage.input_text_tokens,
                "input_audio": usage.input_audio_tokens,
                "input_cached": usage.input_cached_tokens,
                "output_text": usage.output_text_tokens,
                "output_audio": usage.output_audio_tokens,
            },
            first_audio_ms=figures.start_to_first_audio_ms,
            turn_latencies_ms=list(figures.turn_latencies_ms),
            barge_in_count=figures.barge_ins,
        )

    @db_sync_to_async
    def finish(self, *, reason: str, failed: bool = False) -> None:
        """End the call, unless a newer stream of it was claimed since ours (F-68):
        then it goes on elsewhere and is not this bridge's to end."""
        with transaction.atomic():
            current = (
                CallSession.objects.select_for_update()
                .filter(pk=self.call.pk)
                .values_list("stream_sid", flat=True)
                .first()
            )
            if self.call.stream_sid and current != self.call.stream_sid:
                services.call_event_record(
                    call=self.call,
                    type="stale-bridge-end",
                    payload={"reason": reason, "stream_sid": self.call.stream_sid},
                )
                return
            services.call_session_end(call=self.call, reason=reason, failed=failed)

    @db_sync_to_async
    def current_status(self) -> str:
        return CallSession.objects.values_list("status", flat=True).get(pk=self.call.pk)

    async def move_caller_to_handoff(self) -> None:
        """Update the caller's call into the handoff room (after the farewell)."""
        from handoff.services import ahandoff_move_caller

        await ahandoff_move_caller(call_id=self.call.pk)

    @functools.partial(db_sync_to_async, lane="setup")
    def fall_back_to_legacy(self, *, reason: str) -> bool:
        """Realtime refused the session (F-71): the call goes on on the legacy path
        (F-72), and new calls take it for LEGACY_REALTIME_BACKOFF_S. Phone calls
        only (a browser has no `<Gather>`)."""
        from calls.legacy.entry import REALTIME_REFUSED_EVENT, call_path_set_legacy

        if self.call.direction == CallSession.Direction.WEB:
            return False
        services.call_event_record(
            call=self.call, type=REALTIME_REFUSED_EVENT, payload={"reason": reason}
        )
        call_path_set_legacy(call=self.call, reason="realtime-unavailable")
        return True

    async def release_supervisor_hold(self) -> None:
        """The supervisor who held the call was lost (F-75): the AI holds it again.

        Clears ``CallSession.held_by`` (added by the supervision migration; until
        it exists there is nothing to clear) and tells the monitors.
        """
        await self._clear_held_by()
        message = {
            "type": "call.supervision",
            "holder": "ai",
            "mode": None,
            "by_name": None,
        }
        await agroup_send_best_effort(call_monitor_group(self.call.pk), message)

    @db_sync_to_async
    def _clear_held_by(self) -> None:
        if any(f.name == "held_by" for f in CallSession._meta.concrete_fields):
            CallSession.objects.filter(pk=self.call.pk).update(held_by=None)

    async def request_handoff(self, *, trigger: str, reason: str) -> None:
        """Hand the call to a human (F-29); the handoff service does the rest."""
        from handoff.services import ahandoff_request

        await ahandoff_request(call_id=self.call.pk, trigger=trigger, reason=reason)


@db_sync_to_async
def heartbeats_save(call_ids: list[int]) -> None:
    CallSession.objects.filter(pk__in=call_ids).update(heartbeat_at=timezone.now())


class HeartbeatBatch:
    """The heartbeats of every bridge in this process, written together.

    One UPDATE for all live calls every beat, instead of one per call (each costs a
    trip to the database thread).
    """

    def __init__(self) -> None:
        self._due: set[int] = set()
        self._flush: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # keep running flushes alive

    def beat(self, call_id: int) -> None:
        self._due.add(call_id)
        flush = self._flush
        if (
            flush is None
            or flush.done()
            or flush.get_loop() is not asyncio.get_running_loop()
        ):
            self._schedule()

    def _schedule(self) -> None:
        self._flush = asyncio.create_task(self._flush_later(), name="heartbeats")
        self._tasks.add(self._flush)
        self._flush.add_done_callback(self._tasks.discard)

    async def _flush_later(self) -> None:
        await asyncio.sleep(HEARTBEAT_GATHER_S)
        delay = HEARTBEAT_RETRY_FIRST_S
        while True:
            due, self._due = sorted(self._due), set()
            try:
                await heartbeats_save(due)
            except Exception as exc:
                # The database is down or locked (F-71): beat again soon (beats that
                # come meanwhile join in), so a live call's heartbeat is fresh as
                # soon as it is back, before a reaper could take the call for dead.
                self._due.update(due)
                if delay == HEARTBEAT_RETRY_FIRST_S:
                    log.warning(
                        "heartbeats not saved for %d calls (%s); retrying",
                        len(due),
                        f"{type(exc).__name__}: {exc}"[:200],
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, HEARTBEAT_RETRY_MAX_S)
                continue
            if delay != HEARTBEAT_RETRY_FIRST_S:
                log.warning("heartbeats saved again for %d calls", len(due))
            break
        if self._flush is asyncio.current_task():
            self._flush = None
            if self._due:  # beats that came during the write start the next batch
                self._schedule()


heartbeats = HeartbeatBatch()
