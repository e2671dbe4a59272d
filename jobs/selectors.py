"""Reads of job cards, scoped to what the asker may see (HackSoft selectors)."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from agents.selectors import organization_scope
from jobs.models import Job


def job_list(*, user: Any) -> QuerySet[Job]:
    """Jobs the user may see, newest first."""
    return organization_scope(
        Job.objects.select_related("customer", "call", "assignee", "organization"),
        user=user,
    )


def job_get(*, user: Any, job_id: int) -> Job:
    """One job the user may see; Job.DoesNotExist otherwise (a 404, not a 403)."""
    return job_list(user=user).get(pk=job_id)


def job_search(
    *,
    user: Any,
    status: str | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    q: str | None = None,
) -> QuerySet[Job]:
    """Jobs the user may see, filtered by status, assignee and a text in the title."""
    jobs = job_list(user=user)
    if status:
        jobs = jobs.filter(status=status)
    if unassigned:
        jobs = jobs.filter(assignee__isnull=True)
    elif assignee_id:
        jobs = jobs.filter(assignee_id=assignee_id)
    if q:
        jobs = jobs.filter(
            Q(title__icontains=q)
            | Q(customer__name__icontains=q)
            | Q(customer__phone_number__icontains=q)
        )
    return jobs


def job_for_call(*, call_id: int) -> Job | None:
    """The job card a call made, if any."""
    return Job.objects.filter(call_id=call_id).first()
