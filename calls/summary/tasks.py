"""Celery task of the after-call step (F-76): a thin wrapper over `services`.

- `calls.summary.tasks.summarize_call(call_id, attempt=1, announce=True)`: one try;
  a failed try that may be retried comes back as a new message after the back-off
  (`SUMMARY_RETRY_DELAY_S`, doubled each time), bounded by `SUMMARY_MAX_ATTEMPTS`.
"""

from __future__ import annotations

import logging

from celery import shared_task

from calls.summary.services import call_summary_attempt, call_summary_unexpected

log = logging.getLogger(__name__)


@shared_task(name="calls.summary.tasks.summarize_call", ignore_result=True)
def summarize_call(call_id: int, attempt: int = 1, announce: bool = True) -> str:
    """Summarise the ended call; re-enqueue itself while tries remain."""
    try:
        outcome = call_summary_attempt(
            call_id=call_id, attempt=attempt, announce=announce
        )
    except Exception as exc:
        log.exception("summary try %d broke", attempt, extra={"call_id": call_id})
        outcome = call_summary_unexpected(
            call_id=call_id, attempt=attempt, announce=announce, error=exc
        )
    if outcome.retry_in_s is not None:
        summarize_call.apply_async(
            args=[call_id],
            kwargs={"attempt": attempt + 1, "announce": announce},
            countdown=outcome.retry_in_s,
        )
    return outcome.status
