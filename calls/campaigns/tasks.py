"""Celery tasks of the dialer (F-62, F-64): thin wrappers over `dialer` and `dialing`.

- `calls.campaigns.tasks.dialer_tick`: beat runs it every second (`dialer-tick`).
- `calls.campaigns.tasks.dial_attempt(attempt_id, lease=None)`: one attempt's call.
- `calls.campaigns.tasks.reconcile_attempts`: hand stale attempts on (the tick does
  it too; this is for an operator or a second schedule).

The schedule lives in the database (`Contact.next_attempt_at`, `Campaign.next_dial_at`),
never in ETA messages; dial messages are sent after the claim commits.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.utils import timezone

from calls.campaigns import dialer, dialing


def dispatch_dial(attempt_id: int, lease: str | None) -> None:
    """Enqueue `dial_attempt` (called after the claim's transaction commits)."""
    dial_attempt.apply_async(args=[attempt_id], kwargs={"lease": lease})


@shared_task(name="calls.campaigns.tasks.dialer_tick", ignore_result=True)
def dialer_tick() -> dict[str, Any]:
    """Claim due contacts of every running campaign and dial them."""
    result = dialer.dialer_tick(now=timezone.now(), dispatch=dispatch_dial)
    return {
        "claimed": len(result.claimed),
        "stale": len(result.stale),
        "completed": result.completed,
    }


@shared_task(name="calls.campaigns.tasks.dial_attempt", ignore_result=True)
def dial_attempt(attempt_id: int, lease: str | None = None) -> str | None:
    """Place one attempt's call, at most once at Twilio (see `dialing`)."""
    return dialing.attempt_dial(attempt_id=attempt_id, lease=lease)


@shared_task(name="calls.campaigns.tasks.reconcile_attempts", ignore_result=True)
def reconcile_attempts() -> int:
    """Hand attempts left dialing past the lease to new dial tasks."""
    return len(
        dialer.stale_attempts_hand_on(now=timezone.now(), dispatch=dispatch_dial)
    )
