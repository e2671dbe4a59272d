"""Turn the domain signals into webhook events and emails (F-77).

The senders call us after their transaction commits; each receiver only writes the
event rows and enqueues tasks, and never raises into the sender.
"""

from __future__ import annotations

import logging
from typing import Any

from callcenter import domain_events
from notifications import payloads
from notifications.models import EventType
from notifications.selectors import job_email_recipients
from notifications.services import event_publish

log = logging.getLogger(__name__)


def on_call_summarized(
    sender: Any, *, call: Any, extraction_status: str, **_: Any
) -> None:
    try:
        event_publish(
            organization_id=call.organization_id,
            type=EventType.CALL_COMPLETED,
            data=payloads.call_data(call, extraction_status=extraction_status),
        )
    except Exception:
        log.exception("call.completed of call %s not published", call.pk)


def on_job_created(sender: Any, *, job: Any, **_: Any) -> None:
    data = payloads.job_data(job)
    try:
        event_publish(
            organization_id=job.organization_id, type=EventType.JOB_CREATED, data=data
        )
    except Exception:
        log.exception("job.created of job %s not published", job.id)
    try:
        if job_email_recipients(organization_id=job.organization_id):
            from notifications.tasks import job_email

            job_email.delay(job.organization_id, data)
    except Exception:
        log.exception("email about job %s not enqueued", job.id)


def on_job_updated(sender: Any, *, job: Any, changed: list[str], **_: Any) -> None:
    try:
        event_publish(
            organization_id=job.organization_id,
            type=EventType.JOB_UPDATED,
            data=payloads.job_data(job, changed=list(changed)),
        )
    except Exception:
        log.exception("job.updated of job %s not published", job.id)


def connect() -> None:
    domain_events.call_summarized.connect(
        on_call_summarized, dispatch_uid="notifications.call_summarized"
    )
    domain_events.job_created.connect(
        on_job_created, dispatch_uid="notifications.job_created"
    )
    domain_events.job_updated.connect(
        on_job_updated, dispatch_uid="notifications.job_updated"
    )
