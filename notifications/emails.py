"""The email to chosen operators when a job card is created (F-77), by Django's
email backend (the console in `make run`, SMTP with EMAIL_URL)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.utils.translation import gettext as _

from notifications.selectors import job_email_recipients

log = logging.getLogger(__name__)


def job_created_email_send(*, organization_id: int, job: dict[str, Any]) -> int:
    """Mail the organisation's chosen operators about `job`; return how many got it."""
    recipients = job_email_recipients(organization_id=organization_id)
    if not recipients:
        return 0
    title = str(job.get("title") or "")
    subject = _("New job: %(title)s") % {"title": title or f"#{job.get('job_id')}"}
    lines = [
        _("A job card was created from a call."),
        "",
        f"{_('Title')}: {title}",
        f"{_('Status')}: {job.get('status', '')}",
        f"{_('Call')}: {job.get('call_id') or '-'}",
    ]
    fields = job.get("fields") or {}
    if isinstance(fields, dict):
        lines += [f"  {key}: {value}" for key, value in fields.items()]
    link = f"{settings.PUBLIC_BASE_URL.rstrip('/')}/jobs/{job.get('job_id')}/"
    lines += ["", link]
    sent = send_mail(
        subject=subject,
        message="\n".join(lines),
        from_email=None,
        recipient_list=recipients,
        fail_silently=False,
    )
    log.info("job %s email sent to %d operators", job.get("job_id"), len(recipients))
    return len(recipients) if sent else 0
