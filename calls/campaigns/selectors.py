"""Reads of campaigns: progress, counts, the do-not-call check (organisation-scoped)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from calls.campaigns.models import Attempt, Campaign, Contact, DoNotCall

FINAL_CONTACT_STATUSES = frozenset(
    {
        Contact.Status.DONE,
        Contact.Status.FAILED,
        Contact.Status.SKIPPED_DNC,
        Contact.Status.OPTED_OUT,
        Contact.Status.EXHAUSTED,
    }
)


def campaign_list(*, organization_id: int | None) -> QuerySet[Campaign]:
    """The organisation's campaigns (every one for `None`: staff)."""
    qs = Campaign.objects.select_related("agent")
    return qs if organization_id is None else qs.filter(organization_id=organization_id)


def campaign_progress(*, campaign: Campaign) -> dict[str, Any]:
    """`status`, `progress` (0–100, final contacts over all), `counts`, `outcomes`."""
    counts = {
        row["status"]: row["n"]
        for row in Contact.objects.filter(campaign=campaign)
        .values("status")
        .annotate(n=Count("pk"))
    }
    total = sum(counts.values())
    final = sum(n for status, n in counts.items() if status in FINAL_CONTACT_STATUSES)
    outcomes = {
        row["outcome"]: row["n"]
        for row in Contact.objects.filter(campaign=campaign)
        .exclude(outcome="")
        .values("outcome")
        .annotate(n=Count("pk"))
    }
    return {
        "status": campaign.status,
        "progress": round(100 * final / total) if total else 0,
        "total": total,
        "counts": counts,
        "outcomes": outcomes,
    }


def dnc_contains(*, organization_id: int, phone: str) -> bool:
    """Is this E.164 number on the organisation's do-not-call list?"""
    return DoNotCall.objects.filter(
        organization_id=organization_id, phone=phone
    ).exists()


def dnc_list(*, organization_id: int | None) -> QuerySet[DoNotCall]:
    qs = DoNotCall.objects.all()
    return qs if organization_id is None else qs.filter(organization_id=organization_id)


def campaign_attempts(*, campaign: Campaign) -> QuerySet[Attempt]:
    """Every attempt of the campaign, in dial order, with its contact and call."""
    return (
        Attempt.objects.filter(contact__campaign=campaign)
        .select_related("contact", "call")
        .order_by("pk")
    )


def campaigns_visible(*, user: Any) -> QuerySet[Campaign]:
    """The campaigns `user` may see: their organisation's (every one for superusers)."""
    from agents.selectors import organization_scope

    return organization_scope(campaign_list(organization_id=None), user=user)


def dnc_visible(*, user: Any) -> QuerySet[DoNotCall]:
    """The do-not-call entries `user` may see."""
    from agents.selectors import organization_scope

    return organization_scope(dnc_list(organization_id=None), user=user)
