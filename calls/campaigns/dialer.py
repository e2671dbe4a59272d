"""The dialer's tick (F-64): which contacts are dialled now, within which limits.

No Celery here: `dialer_tick(now=…, dispatch=…)` claims due contacts and hands each
new attempt to `dispatch(attempt_id, lease)` after its transaction commits (the
Celery task in `tasks.py` passes a function that enqueues `dial_attempt`).

Per running campaign, one transaction:
- the calling window, in the campaign's IANA time zone: ISO weekday in `days`, and
  `window_start <= local time < window_end` (start inclusive, end exclusive);
- `max_concurrent`: contacts `dialing` or `in-call` count against it;
- the global cap: campaign calls never hold more than MAX_LIVE_CALLS less its
  CAMPAIGN_INBOUND_RESERVE %, nor what inbound calls leave of MAX_LIVE_CALLS;
- `calls_per_second`: at most ⌊cps⌋ (at least one) claims a tick, none while the
  campaign's pacing (`next_dial_at`) is more than a second ahead; the dial task
  reserves its own create slot (`dialing.create_slot_reserve`), so creates are
  spaced 1/cps apart whatever the tick does;
- one live call per contact: only `pending`/`retry-wait` contacts without an open
  attempt are claimed, their rows locked (`select_for_update(skip_locked=True)`, the
  campaign's row with a plain `select_for_update` so ticks on several workers take
  turns; on SQLite, IMMEDIATE transactions serialise the writers instead);
- do-not-call checked at dial time: such a contact becomes `skipped-dnc`.

A claim commits the Attempt (number = previous + 1) and the contact's `dialing`
together. The tick also hands attempts left `dialing` without a CallSid for longer
than DIALER_LEASE_SECONDS to a new task (which reconciles through Twilio's Calls list
before any create), settles attempts whose call ended without a final callback,
completes running campaigns with no open contact, and sends each busy campaign's
progress to its page once.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from calls.campaigns.models import Attempt, Campaign, Contact, DoNotCall
from calls.campaigns.services import campaign_broadcast, campaign_complete
from calls.models import CallSession
from calls.status import LIVE

log = logging.getLogger(__name__)

# dispatch(attempt_id, lease): enqueue the dial task; lease is the ISO time the tick
# stamped on a stale attempt (the task must find it unchanged), or None.
Dispatch = Callable[[int, str | None], None]

OPEN_CONTACT = (
    Contact.Status.PENDING,
    Contact.Status.DIALING,
    Contact.Status.IN_CALL,
    Contact.Status.RETRY_WAIT,
)
LIVE_CONTACT = (Contact.Status.DIALING, Contact.Status.IN_CALL)
DUE_CONTACT = (Contact.Status.PENDING, Contact.Status.RETRY_WAIT)
OPEN_ATTEMPT = (Attempt.State.DIALING, Attempt.State.PLACED, Attempt.State.ANSWERED)
# How far ahead of now the campaign's pacing may run before the tick claims no more.
PACING_HORIZON = dt.timedelta(seconds=1)
# An attempt whose call ended this long ago with no final callback is settled.
SETTLE_AFTER = dt.timedelta(seconds=30)


@dataclass
class TickResult:
    """What one tick did (for logs, tests and the bench)."""

    claimed: list[int] = field(default_factory=list)  # attempt ids
    skipped_dnc: list[int] = field(default_factory=list)  # contact ids
    stale: list[int] = field(default_factory=list)  # attempt ids handed on
    settled: list[int] = field(default_factory=list)  # attempts closed from calls
    completed: list[int] = field(default_factory=list)  # campaign ids


def window_open(campaign: Campaign, now: dt.datetime) -> bool:
    """Is `now` inside the campaign's calling window, in its own time zone?

    Days are ISO weekdays (1 = Monday … 7 = Sunday) of the local date; the start
    time is inclusive and the end time exclusive: a 09:00–20:00 window dials at
    09:00:00 and not at 20:00:00.
    """
    local = now.astimezone(ZoneInfo(campaign.time_zone))
    if local.isoweekday() not in (campaign.days or []):
        return False
    return campaign.window_start <= local.time() < campaign.window_end


def campaign_calls_cap() -> int:
    """The live calls campaigns may hold together: MAX_LIVE_CALLS less the reserve."""
    total = settings.MAX_LIVE_CALLS
    reserve = math.ceil(total * settings.CAMPAIGN_INBOUND_RESERVE / 100)
    return max(total - reserve, 0)


def global_room() -> int:
    """How many more campaign calls may start now, across every campaign."""
    campaign_open = Attempt.objects.filter(state__in=OPEN_ATTEMPT).count()
    other_live = CallSession.objects.filter(
        status__in=LIVE, campaign_attempt__isnull=True
    ).count()
    return max(
        min(
            campaign_calls_cap() - campaign_open,
            settings.MAX_LIVE_CALLS - campaign_open - other_live,
        ),
        0,
    )


def _claim_limit(campaign: Campaign, now: dt.datetime) -> int:
    """Claims this tick may make for the campaign's calls-per-second cap."""
    if campaign.next_dial_at is not None and campaign.next_dial_at > (
        now + PACING_HORIZON
    ):
        return 0
    return max(1, math.floor(campaign.calls_per_second))


def _claim(
    *, campaign_id: int, now: dt.datetime, room: int, dispatch: Dispatch
) -> tuple[list[int], list[int]]:
    """Claim the campaign's due contacts; return (attempt ids, dnc contact ids)."""
    with transaction.atomic():
        # The campaign row serialises ticks (two never both fill max_concurrent);
        # dial tasks hold it only for a slot reservation, so waiting is short.
        campaign = (
            Campaign.objects.select_for_update()
            .filter(pk=campaign_id, status=Campaign.Status.RUNNING)
            .first()
        )
        if campaign is None or not window_open(campaign, now):
            return [], []
        live = Contact.objects.filter(
            campaign=campaign, status__in=LIVE_CONTACT
        ).count()
        wanted = min(campaign.max_concurrent - live, room, _claim_limit(campaign, now))
        if wanted <= 0:
            return [], []
        due = list(
            Contact.objects.select_for_update(skip_locked=True)
            .filter(campaign=campaign, status__in=DUE_CONTACT)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .exclude(attempt_rows__state__in=OPEN_ATTEMPT)
            .order_by(F("next_attempt_at").asc(nulls_first=True), "pk")[:wanted]
        )
        if not due:
            return [], []
        blocked = set(
            DoNotCall.objects.filter(
                organization_id=campaign.organization_id,
                phone__in=[c.phone for c in due],
            ).values_list("phone", flat=True)
        )
        numbers = dict(
            Attempt.objects.filter(contact__in=due)
            .values("contact_id")
            .annotate(n=Max("number"))
            .values_list("contact_id", "n")
        )
        claimed: list[int] = []
        skipped: list[int] = []
        for contact in due:
            if contact.phone in blocked:
                contact.status = Contact.Status.SKIPPED_DNC
                contact.next_attempt_at = None
                contact.save(update_fields=["status", "next_attempt_at", "updated_at"])
                skipped.append(contact.pk)
                continue
            attempt = Attempt.objects.create(
                contact=contact,
                number=numbers.get(contact.pk, 0) + 1,
                state=Attempt.State.DIALING,
            )
            contact.status = Contact.Status.DIALING
            contact.attempts = F("attempts") + 1
            contact.next_attempt_at = None
            contact.save(
                update_fields=["status", "attempts", "next_attempt_at", "updated_at"]
            )
            claimed.append(attempt.pk)
        for attempt_id in claimed:
            transaction.on_commit(
                lambda attempt_id=attempt_id: dispatch(attempt_id, None)
            )
    return claimed, skipped


def stale_attempts_hand_on(*, now: dt.datetime, dispatch: Dispatch) -> list[int]:
    """Give attempts left dialing without a CallSid past the lease to a new task.

    The attempt's `dialed_at` (the lease) is stamped with `now` in a compare-and-set,
    so exactly one tick hands it on and the old task, if it still runs, has lost it.
    The new task reconciles through Twilio's Calls list before any create.
    """
    cutoff = now - dt.timedelta(seconds=settings.DIALER_LEASE_SECONDS)
    candidates = list(
        Attempt.objects.filter(state=Attempt.State.DIALING, call_sid__isnull=True)
        .filter(
            Q(dialed_at__isnull=True, created_at__lt=cutoff) | Q(dialed_at__lt=cutoff)
        )
        .values_list("pk", "dialed_at")[:200]
    )
    handed: list[int] = []
    for attempt_id, lease in candidates:
        with transaction.atomic():
            won = Attempt.objects.filter(
                pk=attempt_id,
                state=Attempt.State.DIALING,
                call_sid__isnull=True,
                dialed_at=lease,
            ).update(dialed_at=now)
            if won:
                stamp = now.isoformat()
                transaction.on_commit(
                    lambda attempt_id=attempt_id, stamp=stamp: dispatch(
                        attempt_id, stamp
                    )
                )
                handed.append(attempt_id)
    if handed:
        log.warning(
            "dialer: %d stale attempt(s) handed on for reconciliation", len(handed)
        )
    return handed


def attempts_settle_from_calls(*, now: dt.datetime) -> list[int]:
    """Finish open attempts whose call ended without a final status callback.

    Twilio does not resend a callback we failed to take; the call itself is closed
    (by the bridge, the answer webhook or the reaper, F-52), so its final status is
    applied to the attempt as the callback would have been, SETTLE_AFTER later.
    """
    from calls.campaigns.results import attempt_status_apply
    from calls.status import TERMINAL

    stuck = list(
        Attempt.objects.filter(
            state__in=(Attempt.State.PLACED, Attempt.State.ANSWERED),
            call__status__in=TERMINAL,
            call__ended_at__lt=now - SETTLE_AFTER,
        ).values_list("pk", "call_id", "call__status")[:200]
    )
    for _, call_id, status in stuck:
        attempt_status_apply(call_id=call_id, status=status)
    return [pk for pk, _, _ in stuck]


def campaigns_complete_finished() -> list[int]:
    """Complete running campaigns with no open contact and no open attempt."""
    done: list[int] = []
    running = Campaign.objects.filter(status=Campaign.Status.RUNNING)
    for campaign in running.exclude(contacts__status__in=OPEN_CONTACT).exclude(
        contacts__attempt_rows__state__in=OPEN_ATTEMPT
    ):
        try:
            campaign_complete(campaign=campaign)
        except Exception:  # a concurrent pause/cancel won: fine
            log.info("campaign %s not completed", campaign.pk, exc_info=True)
            continue
        done.append(campaign.pk)
    return done


def dialer_tick(*, now: dt.datetime | None = None, dispatch: Dispatch) -> TickResult:
    """One pass of the dialer over every running campaign (see the module)."""
    now = now or timezone.now()
    result = TickResult()
    touched: set[int] = set()
    room = global_room()
    campaign_ids = list(
        Campaign.objects.filter(status=Campaign.Status.RUNNING)
        .order_by("next_dial_at", "pk")
        .values_list("pk", flat=True)
    )
    for campaign_id in campaign_ids:
        if room <= 0:
            break
        claimed, skipped = _claim(
            campaign_id=campaign_id, now=now, room=room, dispatch=dispatch
        )
        room -= len(claimed)
        if claimed or skipped:
            touched.add(campaign_id)
        result.claimed += claimed
        result.skipped_dnc += skipped
    result.stale = stale_attempts_hand_on(now=now, dispatch=dispatch)
    result.settled = attempts_settle_from_calls(now=now)
    result.completed = campaigns_complete_finished()
    # Progress pages: once a tick for each campaign that claimed or has calls on
    # (final changes are sent as they happen, by `results`).
    busy = set(
        Contact.objects.filter(
            campaign_id__in=campaign_ids, status__in=LIVE_CONTACT
        ).values_list("campaign_id", flat=True)
    )
    for campaign_id in sorted(busy | touched | set(result.completed)):
        campaign_broadcast(campaign_id=campaign_id)
    return result
