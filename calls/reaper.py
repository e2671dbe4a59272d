"""The reaper (F-52): close calls that a crashed process left open.

A live bridge touches `heartbeat_at` every few seconds. A call whose bridge stopped
touching it (or whose stream never came, or whose human leg never reported back) is
closed as `failed` with a reason; its saved transcript and events stay. A call whose
stream was lost stays `ai-responding` for the resume (F-68): it is reaped only when
the resumed stream has not come a heartbeat time-out after the loss.

It runs from `manage.py reap_calls` (cron, or `--every` as a loop) and, so a plain
`make run` needs no extra process, opportunistically from inbound webhooks at most once
a minute per process.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from calls.models import CallSession
from calls.services import call_event_record, call_session_transition
from calls.status import CallStatus, IllegalTransition

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT = timedelta(seconds=90)
STREAM_NEVER_CAME = timedelta(minutes=10)
TRANSFER_TIMEOUT = timedelta(minutes=10)
HUMAN_CALL_TIMEOUT = timedelta(hours=4)
_last_opportunistic_run = 0.0


def stale_calls(*, now=None):  # type: ignore[no-untyped-def]
    """Live calls nobody is looking after any more, with the reason for each."""
    now = now or timezone.now()
    rules = [
        (
            Q(status__in=[CallStatus.INITIATED, CallStatus.RINGING])
            & Q(created_at__lt=now - STREAM_NEVER_CAME),
            "reaped: the media stream never connected",
        ),
        (
            # Lost, and `stream-ended` answered a resume (F-68) that never came: the
            # caller left without Twilio telling us. Not before the loss is as old
            # as a missed heartbeat, however old the last beat.
            Q(status=CallStatus.AI_RESPONDING)
            & Q(stream_lost_at__lt=now - HEARTBEAT_TIMEOUT),
            "reaped: the stream was lost and never resumed",
        ),
        (
            Q(status=CallStatus.AI_RESPONDING, stream_lost_at__isnull=True)
            & (
                Q(heartbeat_at__lt=now - HEARTBEAT_TIMEOUT)
                | Q(heartbeat_at__isnull=True, created_at__lt=now - HEARTBEAT_TIMEOUT)
            ),
            "reaped: no heartbeat from the bridge",
        ),
        (
            Q(status=CallStatus.TRANSFERRING)
            & Q(handoff_requested_at__lt=now - TRANSFER_TIMEOUT),
            "reaped: the transfer never completed",
        ),
        (
            Q(status=CallStatus.HUMAN_CONNECTED)
            & Q(handoff_connected_at__lt=now - HUMAN_CALL_TIMEOUT),
            "reaped: no final status from Twilio",
        ),
    ]
    for condition, reason in rules:
        for call in CallSession.objects.filter(condition):
            yield call, reason


def calls_reap(*, now=None) -> int:  # type: ignore[no-untyped-def]
    """Close every stale call as failed; return how many were closed."""
    closed = 0
    for call, reason in list(stale_calls(now=now)):
        try:
            call_session_transition(call=call, to=CallStatus.FAILED, reason=reason)
        except IllegalTransition:
            continue  # finished meanwhile by its own process
        call_event_record(call=call, type="reaped", payload={"reason": reason})
        log.warning("reaped stale call: %s", reason, extra={"call_id": call.pk})
        closed += 1
    return closed


def calls_reap_opportunistically() -> None:
    """Reap at most once a minute per process; never let it break the caller."""
    global _last_opportunistic_run
    if time.monotonic() - _last_opportunistic_run < 60:
        return
    _last_opportunistic_run = time.monotonic()
    try:
        calls_reap()
    except Exception:
        log.exception("reaper failed")
