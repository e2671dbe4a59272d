"""Things that happened, for the apps that react to them (Django signals).

Senders call ``send_robust`` inside ``transaction.on_commit`` so receivers see committed rows;
receivers must be quick (they enqueue tasks) and never raise into the sender.
"""

from django.dispatch import Signal

__all__ = ["call_summarized", "job_created", "job_updated"]

call_summarized = Signal()
"""A call ended and its after-call step finished: kwargs ``call`` (CallSession) and
``extraction_status`` ("done", "failed" or "skipped": no caller line to summarise)."""

job_created = Signal()
"""A job card was created: kwargs ``job`` (jobs.models.Job)."""

job_updated = Signal()
"""A job card changed: kwargs ``job`` and ``changed`` (list of field names)."""
