"""Enqueue the after-call step (F-76) once the end of a call commits.

`summary_enqueue` is the seam between the call domain and Celery: tests replace
it with a recorder (tests/conftest.py) or let a real worker take the message.
A broker that is down loses nothing that matters to the call: the end is saved,
the failure is logged, and the summary can be re-run from the admin or the API.
"""

from __future__ import annotations

import logging

from django.db import transaction

log = logging.getLogger(__name__)


def summary_enqueue(*, call_id: int, announce: bool = True) -> None:
    """Send the task message (attempt 1)."""
    from calls.summary.tasks import summarize_call

    summarize_call.apply_async(args=[call_id], kwargs={"announce": announce})


def summary_enqueue_on_commit(*, call_id: int, announce: bool = True) -> None:
    """Enqueue after the current transaction commits (at once outside one)."""

    def send() -> None:
        try:
            summary_enqueue(call_id=call_id, announce=announce)
        except Exception:
            log.exception("cannot enqueue the summary", extra={"call_id": call_id})

    transaction.on_commit(send)
