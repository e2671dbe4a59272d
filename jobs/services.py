"""Writes to job cards (F-77): create (from a call's extraction or by hand), change.

Each write announces itself once it commits: `job_created` / `job_updated`
(callcenter.domain_events, for notifications) and a `job.created` / `job.updated`
message to the organisation's pages (the toast, the live list).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from agents.models import Customer, Operator, Organization
from agents.phones import normalize_phone
from callcenter.domain_events import job_created, job_updated
from callcenter.errors import ApplicationError, ErrorCode
from jobs.live import job_message, jobs_broadcast
from jobs.models import JOB_TRANSITIONS, Job, JobStatus

log = logging.getLogger(__name__)

TITLE_MAX = 200


def _announce_created(job: Job) -> None:
    def after_commit() -> None:
        jobs_broadcast(
            organization_id=job.organization_id,
            message=job_message(job, "job.created"),
        )
        for receiver, result in job_created.send_robust(sender=Job, job=job):
            if isinstance(result, Exception):
                log.error("job_created receiver %r failed: %r", receiver, result)

    transaction.on_commit(after_commit)


def _announce_updated(job: Job, changed: list[str]) -> None:
    def after_commit() -> None:
        jobs_broadcast(
            organization_id=job.organization_id,
            message=job_message(job, "job.updated", changed),
        )
        for receiver, result in job_updated.send_robust(
            sender=Job, job=job, changed=changed
        ):
            if isinstance(result, Exception):
                log.error("job_updated receiver %r failed: %r", receiver, result)

    transaction.on_commit(after_commit)


def _check_assignee(*, organization_id: int, assignee: Operator | None) -> None:
    if assignee is not None and assignee.organization_id != organization_id:
        raise ApplicationError(
            _("The assignee belongs to another organisation."),
            code=ErrorCode.VALIDATION,
            details={"assignee": [_("Not an operator of this organisation.")]},
            http_status=400,
        )


@transaction.atomic
def job_create(
    *,
    organization: Organization,
    title: str,
    fields: dict[str, Any] | None = None,
    customer: Customer | None = None,
    call: Any = None,
    assignee: Operator | None = None,
) -> Job:
    """Make a job card (status `new`) and announce it."""
    _check_assignee(organization_id=organization.pk, assignee=assignee)
    if customer is not None and customer.organization_id != organization.pk:
        raise ApplicationError(
            _("The customer belongs to another organisation."),
            code=ErrorCode.VALIDATION,
            details={"customer": [_("Not a customer of this organisation.")]},
            http_status=400,
        )
    job = Job.objects.create(
        organization=organization,
        title=(title.strip() or _("(untitled job)"))[:TITLE_MAX],
        fields=fields or {},
        customer=customer,
        call=call,
        assignee=assignee,
    )
    _announce_created(job)
    return job


def check_job_transition(current: str, target: str) -> bool:
    """True if the status changes, False for a repeat; raise ApplicationError if not allowed."""
    if current == target:
        return False
    if target not in JOB_TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(JOB_TRANSITIONS.get(current, ()))) or _("none")
        raise ApplicationError(
            _(
                "A job cannot go from '%(current)s' to '%(target)s'. "
                "Allowed: %(allowed)s."
            )
            % {"current": current, "target": target, "allowed": allowed},
            code=ErrorCode.ILLEGAL_TRANSITION,
        )
    return True


_UNSET: Any = object()


@transaction.atomic
def job_update(
    *,
    job: Job,
    title: str | None = None,
    fields: dict[str, Any] | None = None,
    status: str | None = None,
    assignee: Any = _UNSET,
    customer: Any = _UNSET,
) -> Job:
    """Change a job's title, fields, status (new → accepted → done | canceled) or
    assignee (an operator of its organisation, or None); announce what changed."""
    locked = Job.objects.select_for_update().get(pk=job.pk)
    changed: list[str] = []
    if title is not None and title.strip() and title.strip() != locked.title:
        locked.title = title.strip()[:TITLE_MAX]
        changed.append("title")
    if fields is not None and fields != locked.fields:
        locked.fields = fields
        changed.append("fields")
    if status is not None and check_job_transition(locked.status, status):
        locked.status = status
        changed.append("status")
    if assignee is not _UNSET:
        _check_assignee(organization_id=locked.organization_id, assignee=assignee)
        if (assignee.pk if assignee else None) != locked.assignee_id:
            locked.assignee = assignee
            changed.append("assignee")
    if customer is not _UNSET:
        if customer is not None and customer.organization_id != locked.organization_id:
            raise ApplicationError(
                _("The customer belongs to another organisation."),
                code=ErrorCode.VALIDATION,
                http_status=400,
            )
        if (customer.pk if customer else None) != locked.customer_id:
            locked.customer = customer
            changed.append("customer")
    if changed:
        locked.save(update_fields=[*changed, "updated_at"])
        _announce_updated(locked, changed)
    return locked


def job_delete(*, job: Job) -> None:
    """Remove a job card (the API's DELETE; no event)."""
    job.delete()


# -- from a call's extraction -------------------------------------------------------


def customer_for_call(*, call: Any) -> Customer | None:
    """The call's customer: the one it has, else matched or created by the caller's
    phone (the far end's number: `from` inbound, `to` outbound). Web calls without a
    customer and unusable numbers give None."""
    if call.customer_id:
        return call.customer  # type: ignore[no-any-return]
    raw = call.to_number if call.direction == "outbound" else call.from_number
    try:
        number = normalize_phone(raw)
    except ValidationError:
        return None
    try:
        with transaction.atomic():
            customer, _created = Customer.objects.get_or_create(
                organization_id=call.organization_id, phone_number=number
            )
    except IntegrityError:  # created meanwhile by another call's task
        customer = Customer.objects.get(
            organization_id=call.organization_id, phone_number=number
        )
    return customer


def job_wanted(*, extraction: dict[str, Any], appointment_booked: bool) -> bool:
    """The rule (F-77): the extraction says a job is needed, or an appointment was
    booked (by the call's tool, or in the extraction's `appointment` field)."""
    if extraction.get("job_required") is True:
        return True
    if appointment_booked:
        return True
    appointment = extraction.get("appointment")
    return isinstance(appointment, str) and bool(appointment.strip())


def job_title_for(*, extraction: dict[str, Any], summary: str) -> str:
    """The card's title: the extraction's, else the appointment, request or summary."""
    for key in ("job_title", "title"):
        value = extraction.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    appointment = extraction.get("appointment")
    if isinstance(appointment, str) and appointment.strip():
        return _("予約: %(when)s") % {"when": appointment.strip()}
    request = extraction.get("request")
    if isinstance(request, str) and request.strip():
        return request.strip()
    return summary.strip()[:80]


def job_create_from_call(*, call: Any) -> Job | None:
    """Make the call's job card when its extraction says so; at most one per call."""
    from jobs.selectors import job_for_call

    extraction = call.extraction if isinstance(call.extraction, dict) else {}
    booked = call.appointments.exists()
    if not job_wanted(extraction=extraction, appointment_booked=booked):
        return None
    existing = job_for_call(call_id=call.pk)
    if existing is not None:
        return None
    return job_create(
        organization=call.organization,
        title=job_title_for(extraction=extraction, summary=call.summary),
        fields=extraction,
        customer=customer_for_call(call=call),
        call=call,
    )


__all__ = [
    "JobStatus",
    "check_job_transition",
    "customer_for_call",
    "job_create",
    "job_create_from_call",
    "job_delete",
    "job_title_for",
    "job_update",
    "job_wanted",
]
