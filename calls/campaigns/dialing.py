"""One attempt, one Twilio call (F-64): the body of the `dial_attempt` task.

The attempt row was committed by the tick before anything here runs. This module
makes sure Twilio gets at most one create per attempt, whatever dies when:

1. **Lease.** The task takes the attempt by a compare-and-set on `dialed_at` (the
   lease stamp the tick gave it, or none for a fresh claim). A task that finds
   another stamp does nothing: someone else owns the attempt.
2. **Reconcile first.** An attempt that already had a REST try (`rest_tries > 0`)
   may have a call at Twilio: its Calls list (`To`, `From`, created at or after the
   attempt less CLOCK_SKEW, no CallSid we already know) is asked, and a call found
   there is adopted instead of dialled again. If the list cannot be read, nothing
   is created; the tick hands the attempt on again after the lease.
3. **Commit, then call.** `rest_tries + 1` and a fresh lease are committed, with the
   campaign still running, before the REST request; a request times out well inside
   the lease, so no second owner can appear while one is in flight.
4. **Pace.** Then the create slot is taken from the campaign's `next_dial_at`
   (spaced a little over 1/calls_per_second apart) and the task sleeps until it and
   sends the request at once.
5. **Back-off.** 20429, a 5xx or no reply: sleep (0.5 s doubling, capped), reconcile
   (the call may exist), and try again, up to MAX_REST_TRIES; then the attempt
   fails (and is retried or not by the campaign's policy).

A campaign paused or canceled, or a window that closed, by the instant of the
create (checked after the slot wait, just before the request) dials nothing: the
attempt is closed `canceled` and the contact goes back to `pending`.

Tests only: with DIALER_TEST_HOOKS on, DIALER_CRASH_AT=`<point>:<marker file>`
SIGKILLs this process once at `before-rest` or `after-rest` (the marker records it).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from calls.campaigns.dialer import window_open
from calls.campaigns.models import Attempt, Campaign
from calls.campaigns.results import attempt_cancel, attempt_fail, attempt_placed
from calls.models import CallSession
from calls.status import CallStatus
from calls.twilio_client import (
    TwilioError,
    campaign_dial,
    twilio_calls_list,
    twilio_error_retryable,
)

log = logging.getLogger(__name__)

MAX_REST_TRIES = 6
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0
# Slots a little wider than 1/cps, and a task that wakes more than LATE_S after its
# slot takes a new one: wake-up and request jitter must never squeeze cps + 1 creates
# into one second at Twilio. The price: creates run ~2 % + 30 ms per slot under cps.
SLOT_MARGIN = 1.02
SLOT_JITTER_S = 0.03
LATE_S = 0.02
MAX_LATE_SLOTS = 20
# Twilio's clock and ours, and date_created's whole seconds.
CLOCK_SKEW = dt.timedelta(seconds=30)


def _crash_point(name: str) -> None:
    """Tests only: SIGKILL this process at `name`, once (see the module)."""
    if not settings.DIALER_TEST_HOOKS:
        return
    point, _, marker = os.environ.get("DIALER_CRASH_AT", "").partition(":")
    if point != name or not marker or Path(marker).exists():
        return
    Path(marker).write_text(f"{name} {os.getpid()}\n")
    log.warning("dialer test hook: SIGKILL at %s", name)
    os.kill(os.getpid(), signal.SIGKILL)


def _rest_timeout() -> float:
    """A REST request ends well inside the lease (no second owner while in flight)."""
    return max(1.0, min(10.0, settings.DIALER_LEASE_SECONDS / 3))


def _take(attempt_id: int, lease: str | None) -> dt.datetime | None:
    """Compare-and-set the lease; return our stamp, or None if not ours."""
    now = timezone.now()
    expected = dt.datetime.fromisoformat(lease) if lease else None
    won = Attempt.objects.filter(
        pk=attempt_id,
        state=Attempt.State.DIALING,
        call_sid__isnull=True,
        dialed_at=expected,
    ).update(dialed_at=now)
    return now if won else None


def attempt_reconcile(attempt: Attempt) -> str | None:
    """Look for this attempt's call in Twilio's Calls list; adopt it; return its SID.

    Raises TwilioError when the list cannot be read (the caller must not create).
    """
    contact = attempt.contact
    campaign = contact.campaign
    calls = twilio_calls_list(
        to=contact.phone, from_=campaign.from_number, timeout=_rest_timeout()
    )
    since = attempt.created_at - CLOCK_SKEW
    candidates = [c for c in calls if c.date_created is None or c.date_created >= since]
    if not candidates:
        return None
    known = set(
        Attempt.objects.filter(call_sid__in=[c.sid for c in candidates]).values_list(
            "call_sid", flat=True
        )
    ) | set(
        CallSession.objects.filter(
            twilio_call_sid__in=[c.sid for c in candidates]
        ).values_list("twilio_call_sid", flat=True)
    )
    fresh = [c for c in candidates if c.sid not in known]
    if not fresh:
        return None
    # Oldest first: the create that happened first is this attempt's.
    found = min(fresh, key=lambda c: c.date_created or timezone.now())
    log.warning(
        "dialer: attempt %s adopts %s found at Twilio (no second create)",
        attempt.pk,
        found.sid,
    )
    attempt_placed(attempt_id=attempt.pk, call_sid=found.sid, adopted=True)
    return found.sid


def create_slot_reserve(campaign_id: int) -> dt.datetime:
    """Reserve the campaign's next create slot (calls_per_second) and return it."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        now = timezone.now()
        slot = max(now, campaign.next_dial_at or now)
        campaign.next_dial_at = slot + dt.timedelta(
            seconds=SLOT_MARGIN * (1.0 / campaign.calls_per_second) + SLOT_JITTER_S
        )
        campaign.save(update_fields=["next_dial_at"])
    return slot


def _sleep_until(moment: dt.datetime) -> None:
    delay = (moment - timezone.now()).total_seconds()
    if delay > 0:
        time.sleep(delay)


def _wait_for_slot(campaign_id: int) -> None:
    """Sleep until a create slot; a slot overslept by more than LATE_S is given up."""
    for _ in range(MAX_LATE_SLOTS):
        slot = create_slot_reserve(campaign_id)
        _sleep_until(slot)
        if (timezone.now() - slot).total_seconds() <= LATE_S:
            return
    log.warning("dialer: campaign %s: slots keep being overslept", campaign_id)


def _campaign_call(attempt: Attempt) -> CallSession:
    """The attempt's CallSession, created once (its id keys Twilio's webhooks)."""
    if attempt.call_id is not None:
        return CallSession.objects.get(pk=attempt.call_id)
    contact = attempt.contact
    campaign = contact.campaign
    variables = contact.prompt_values()
    call = CallSession.objects.create(
        organization_id=campaign.organization_id,
        agent_id=campaign.agent_id,
        direction=CallSession.Direction.OUTBOUND,
        status=CallStatus.INITIATED,
        from_number=campaign.from_number or settings.TWILIO_FROM_NUMBER,
        to_number=contact.phone,
        contact_variables=variables,
    )
    attempt.call = call
    attempt.save(update_fields=["call"])
    return call


def _renew(attempt_id: int, lease: dt.datetime) -> dt.datetime | None:
    """Stamp the lease afresh if it is still ours; None if someone took it."""
    now = timezone.now()
    won = Attempt.objects.filter(
        pk=attempt_id,
        state=Attempt.State.DIALING,
        call_sid__isnull=True,
        dialed_at=lease,
    ).update(dialed_at=now)
    return now if won else None


def _may_dial_now(campaign_id: int) -> bool:
    """Still running and inside the window, at the instant of the create?"""
    campaign = Campaign.objects.get(pk=campaign_id)
    return campaign.status == Campaign.Status.RUNNING and window_open(
        campaign, timezone.now()
    )


def _commit_try(
    attempt_id: int, lease: dt.datetime
) -> tuple[dt.datetime, CallSession] | None:
    """Commit rest_tries + 1 and a fresh lease; None if paused/canceled or lost."""
    with transaction.atomic():
        attempt = (
            Attempt.objects.select_for_update(of=("self",))
            .select_related("contact__campaign")
            .get(pk=attempt_id)
        )
        if (
            attempt.state != Attempt.State.DIALING
            or attempt.call_sid
            or attempt.dialed_at != lease
        ):
            return None
        if attempt.contact.campaign.status != Campaign.Status.RUNNING:
            return None
        now = timezone.now()
        Attempt.objects.filter(pk=attempt_id).update(
            rest_tries=F("rest_tries") + 1, dialed_at=now
        )
        call = _campaign_call(attempt)
    return now, call


def attempt_dial(*, attempt_id: int, lease: str | None = None) -> str | None:
    """Place the attempt's call, exactly once (see the module); return the SID."""
    mine = _take(attempt_id, lease)
    if mine is None:
        log.info("dialer: attempt %s is not this task's (lease)", attempt_id)
        return None
    attempt = Attempt.objects.select_related("contact__campaign").get(pk=attempt_id)
    campaign_id = attempt.contact.campaign_id
    for try_number in range(MAX_REST_TRIES + 1):
        attempt.refresh_from_db()
        if attempt.rest_tries > 0:
            try:
                found = attempt_reconcile(attempt)
            except TwilioError:
                log.warning("dialer: attempt %s: Calls list unreadable", attempt_id)
                return None  # the tick hands it on after the lease
            if found:
                return found
        if attempt.contact.campaign.status != Campaign.Status.RUNNING:
            attempt_cancel(attempt_id=attempt_id)
            return None
        if try_number == MAX_REST_TRIES:
            attempt_fail(attempt_id=attempt_id, error="Twilio kept refusing the create")
            return None
        committed = _commit_try(attempt_id, mine)
        if committed is None:
            attempt.refresh_from_db()
            if attempt.contact.campaign.status != Campaign.Status.RUNNING:
                if attempt.rest_tries == 0:
                    attempt_cancel(attempt_id=attempt_id)
                    return None
                continue  # a try was made: reconcile before closing it
            return None  # lost the lease: the new owner carries on
        mine, call = committed
        # The slot last, so nothing but the request lies between it and the create.
        _wait_for_slot(campaign_id)
        # Still ours after the wait? (A wait past the lease would have let the tick
        # hand the attempt on; then the new owner dials, not us.)
        mine = _renew(attempt_id, mine)
        if mine is None:
            return None
        if not _may_dial_now(campaign_id):
            attempt_cancel(attempt_id=attempt_id, unsent_try=True)
            return None
        _crash_point("before-rest")
        try:
            sid = campaign_dial(
                call,
                machine_action=attempt.contact.campaign.machine_action,
                timeout=_rest_timeout(),
            )
        except TwilioError as exc:
            if not twilio_error_retryable(exc):
                attempt_fail(attempt_id=attempt_id, error=exc.message)
                return None
            delay = min(BACKOFF_FIRST_S * 2**try_number, BACKOFF_MAX_S)
            delay = min(delay, settings.DIALER_LEASE_SECONDS / 4)
            log.warning(
                "dialer: attempt %s: %s; again in %.1f s",
                attempt_id,
                exc.message,
                delay,
            )
            time.sleep(delay)
            mine = _renew(attempt_id, mine)
            if mine is None:
                return None  # lost the lease: the new owner reconciles
            continue
        _crash_point("after-rest")
        attempt_placed(attempt_id=attempt_id, call_sid=sid)
        return sid
    return None
