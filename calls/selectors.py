"""Reads of calls, always scoped to what the asker may see (HackSoft selectors)."""

from __future__ import annotations

from django.db.models import QuerySet

from agents.selectors import organization_scope
from calls.models import CallSession
from calls.status import LIVE


def call_list(*, user: object) -> QuerySet[CallSession]:
    """Calls the user may see, newest first."""
    return organization_scope(
        CallSession.objects.select_related("agent", "organization"), user=user
    )


def call_get(*, user: object, call_id: int) -> CallSession:
    """One call the user may see; CallSession.DoesNotExist otherwise (a 404, not a 403)."""
    return call_list(user=user).get(pk=call_id)


def live_call_count() -> int:
    """Calls in a live state across every process (the admission cap counts these)."""
    return CallSession.objects.filter(status__in=LIVE).count()
