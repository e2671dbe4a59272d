"""What happens to an attempt and its contact as Twilio reports (F-64, F-49).

`attempt_status_apply` takes every status callback of a campaign call. Callbacks
carry a `SequenceNumber`: a non-final one at or below `Attempt.last_sequence` changes
nothing, and states only move forward (dialing → placed → answered → finished), so
duplicates and out-of-order deliveries end in the same state; a final status is
applied once, whenever it comes, and later ones change nothing.

A finished attempt's result is `completed` (a person; the outcome comes from the
call's `save_call_outcome`, or `appointment` when one was booked), `machine`
(AnsweredBy machine_*/fax), or Twilio's `busy`, `no-answer`, `failed`, `canceled`.
The contact then waits to retry (`retry-wait`, `next_attempt_at` = now + delay) when
the result is in the campaign's `retry_on` and attempts remain; else it is `done`
(completed/machine), `exhausted` (retryable, no attempts left) or `failed`. A number
put on the do-not-call list during the call ends `opted-out`.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from calls.campaigns.models import Attempt, Campaign, Contact, DoNotCall
from calls.campaigns.services import campaign_broadcast
from calls.telephony import MACHINE_ANSWERS

log = logging.getLogger(__name__)

OPTED_OUT_OUTCOME = "opted-out"
FINAL_TWILIO = ("completed", "busy", "no-answer", "failed", "canceled")
# How far each Twilio status moves an attempt.
_RANK = {
    Attempt.State.DIALING: 0,
    Attempt.State.PLACED: 1,
    Attempt.State.ANSWERED: 2,
    Attempt.State.FINISHED: 3,
}
_STATE_OF = {
    "queued": Attempt.State.PLACED,
    "initiated": Attempt.State.PLACED,
    "ringing": Attempt.State.PLACED,
    "answered": Attempt.State.ANSWERED,
    "in-progress": Attempt.State.ANSWERED,
}


def _broadcast(campaign_id: int) -> None:
    transaction.on_commit(lambda: campaign_broadcast(campaign_id=campaign_id))


def _locked(attempt_id: int) -> Attempt:
    return (
        Attempt.objects.select_for_update(of=("self",))
        .select_related("contact__campaign", "call")
        .get(pk=attempt_id)
    )


def _set_sid(attempt: Attempt, call_sid: str) -> None:
    if call_sid and not attempt.call_sid:
        attempt.call_sid = call_sid
        if attempt.call_id and not attempt.call.twilio_call_sid:
            attempt.call.twilio_call_sid = call_sid
            attempt.call.save(update_fields=["twilio_call_sid"])


@transaction.atomic
def attempt_placed(*, attempt_id: int, call_sid: str, adopted: bool = False) -> Attempt:
    """Twilio has the attempt's call: record its SID (the create or the Calls list)."""
    attempt = _locked(attempt_id)
    if attempt.call_sid and attempt.call_sid != call_sid:
        log.error(
            "dialer: attempt %s already has %s, Twilio also made %s",
            attempt.pk,
            attempt.call_sid,
            call_sid,
        )
        return attempt
    _set_sid(attempt, call_sid)
    fields = ["call_sid"]
    if attempt.state == Attempt.State.DIALING:
        attempt.state = Attempt.State.PLACED
        fields.append("state")
    if adopted:
        attempt.error = (attempt.error + "\nadopted from Twilio's Calls list").strip()
        fields.append("error")
    attempt.save(update_fields=fields)
    return attempt


def _contact_after(attempt: Attempt, now: dt.datetime) -> None:
    """Move the contact on from a finished attempt (retry policy, DNC)."""
    contact = attempt.contact
    campaign = contact.campaign
    result = attempt.result
    contact.outcome = attempt.outcome or result
    # Attempts closed before any call existed (campaign stopped) do not count.
    made = (
        Attempt.objects.filter(contact=contact)
        .exclude(result="canceled", call_sid__isnull=True)
        .count()
    )
    dnc = DoNotCall.objects.filter(
        organization_id=campaign.organization_id, phone=contact.phone
    ).first()
    if dnc is not None:
        contact.status = (
            Contact.Status.OPTED_OUT
            if dnc.source == DoNotCall.Source.CALL
            else Contact.Status.SKIPPED_DNC
        )
        contact.next_attempt_at = None
    elif result in (campaign.retry_on or []) and made < campaign.max_attempts:
        contact.status = Contact.Status.RETRY_WAIT
        contact.next_attempt_at = now + dt.timedelta(
            seconds=campaign.retry_delay_seconds
        )
    elif result in ("completed", "machine"):
        contact.status = Contact.Status.DONE
        contact.next_attempt_at = None
    elif result in (campaign.retry_on or []):
        contact.status = Contact.Status.EXHAUSTED
        contact.next_attempt_at = None
    else:
        contact.status = Contact.Status.FAILED
        contact.next_attempt_at = None
    contact.save(update_fields=["status", "outcome", "next_attempt_at", "updated_at"])


def _finish(attempt: Attempt, *, result: str, now: dt.datetime) -> None:
    attempt.state = Attempt.State.FINISHED
    attempt.result = result
    attempt.ended_at = now
    if result == "completed" and attempt.call_id:
        call = attempt.call
        call.refresh_from_db(fields=["outcome"])
        attempt.outcome = call.outcome or (
            "appointment" if call.appointments.exists() else ""
        )
    elif result not in ("completed",):
        attempt.outcome = attempt.outcome or ""
    if (
        not attempt.outcome
        and attempt.call_id
        and DoNotCall.objects.filter(call_id=attempt.call_id).exists()
    ):
        # The callee refused further calls in this call (F-65): that is its outcome.
        attempt.outcome = OPTED_OUT_OUTCOME
    attempt.save()
    _contact_after(attempt, now)
    _broadcast(attempt.contact.campaign_id)


@transaction.atomic
def attempt_cancel(*, attempt_id: int, unsent_try: bool = False) -> Attempt:
    """Close an attempt never dialled (campaign paused/canceled); contact → pending.

    `unsent_try`: the last committed REST try was never sent; it is not counted.
    """
    attempt = _locked(attempt_id)
    if attempt.state != Attempt.State.DIALING or attempt.call_sid:
        return attempt
    now = timezone.now()
    attempt.state = Attempt.State.FINISHED
    attempt.result = "canceled"
    attempt.ended_at = now
    if unsent_try and attempt.rest_tries > 0:
        attempt.rest_tries -= 1
    attempt.save(update_fields=["state", "result", "ended_at", "rest_tries"])
    Contact.objects.filter(pk=attempt.contact_id).update(
        status=Contact.Status.PENDING,
        attempts=F("attempts") - 1,
        updated_at=now,
    )
    if attempt.call_id:
        from calls.services import call_session_transition
        from calls.status import TERMINAL, CallStatus

        if attempt.call.status not in TERMINAL:
            call_session_transition(
                call=attempt.call, to=CallStatus.CANCELED, reason="campaign stopped"
            )
    _broadcast(attempt.contact.campaign_id)
    return attempt


@transaction.atomic
def attempt_fail(*, attempt_id: int, error: str) -> Attempt:
    """Twilio refused the create for good: the attempt failed (policy decides)."""
    attempt = _locked(attempt_id)
    if attempt.state != Attempt.State.DIALING or attempt.call_sid:
        return attempt
    attempt.error = error[:2000]
    if attempt.call_id:
        from calls.services import call_session_transition
        from calls.status import TERMINAL, CallStatus

        if attempt.call.status not in TERMINAL:
            call_session_transition(
                call=attempt.call, to=CallStatus.FAILED, reason=f"dial failed: {error}"
            )
    _finish(attempt, result="failed", now=timezone.now())
    return attempt


def _parse_int(value: str | int | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


@transaction.atomic
def attempt_status_apply(
    *,
    call_id: int,
    status: str,
    call_sid: str = "",
    sequence: str | int | None = None,
    answered_by: str = "",
    duration: str | int | None = None,
) -> Attempt | None:
    """Apply one status callback to the campaign attempt of call `call_id`, if any."""
    attempt_id = (
        Attempt.objects.filter(call_id=call_id).values_list("pk", flat=True).first()
    )
    if attempt_id is None:
        return None
    attempt = _locked(attempt_id)
    if attempt.state == Attempt.State.FINISHED:
        return attempt  # final applied once; anything later changes nothing
    seq = _parse_int(sequence)
    final = status in FINAL_TWILIO
    if not final and seq is not None and seq <= attempt.last_sequence:
        return attempt
    now = timezone.now()
    if seq is not None:
        attempt.last_sequence = max(attempt.last_sequence, seq)
    _set_sid(attempt, call_sid)
    if answered_by and not attempt.answered_by:
        attempt.answered_by = answered_by
    if final:
        attempt.twilio_status = status
        seconds = _parse_int(duration)
        if seconds is not None:
            attempt.duration = seconds
        machine = attempt.answered_by in MACHINE_ANSWERS or (
            attempt.call_id and attempt.call.answered_by in MACHINE_ANSWERS
        )
        if status == "completed" and machine:
            attempt.answered_by = attempt.answered_by or attempt.call.answered_by
            result = "machine"
        else:
            result = status
        _finish(attempt, result=result, now=now)
        return attempt
    target = _STATE_OF.get(status)
    if target is not None and _RANK[target] > _RANK[Attempt.State(attempt.state)]:
        attempt.state = target
        attempt.twilio_status = status
        if target == Attempt.State.ANSWERED:
            attempt.answered_at = attempt.answered_at or now
            Contact.objects.filter(
                pk=attempt.contact_id, status=Contact.Status.DIALING
            ).update(status=Contact.Status.IN_CALL, updated_at=now)
    attempt.save()
    return attempt


@transaction.atomic
def attempt_answered_by(*, call_id: int, answered_by: str) -> Campaign | None:
    """Note AMD's verdict on a campaign call; return its campaign (or None)."""
    attempt_id = (
        Attempt.objects.filter(call_id=call_id).values_list("pk", flat=True).first()
    )
    if attempt_id is None:
        return None
    attempt = _locked(attempt_id)
    if answered_by and not attempt.answered_by:
        attempt.answered_by = answered_by
        attempt.save(update_fields=["answered_by"])
    return attempt.contact.campaign
