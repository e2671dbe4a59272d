"""The after-call step (F-76): summary, extracted fields, the job card, the event.

`call_summary_attempt` is one try, run by the Celery task (calls.summary.tasks):
it reads the saved transcript, asks the text model (calls.summary.client) with the
profile's extraction schema, and saves what came back on the call — or, when the
model errors or its JSON fails the schema, the reason, and asks for a retry until
`SUMMARY_MAX_ATTEMPTS` tries are spent (then the call keeps `failed` and the reason).
Usage and cost of every try are added to the call's.

Every end of a call is announced exactly once, when the step is over:
`call_summarized` (callcenter.domain_events) with `done`, `failed` or `skipped` (no
caller line: nothing to summarise). A re-run (admin, API) saves anew but announces
nothing: the call did not end again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.extraction_schema import default_extraction_schema
from callcenter.domain_events import call_summarized
from callcenter.errors import ApplicationError, ErrorCode
from calls.models import CallSession, ExtractionStatus, TranscriptEntry
from calls.summary.client import SummaryError, SummaryResult, request_summary

log = logging.getLogger(__name__)

SPEAKER_TAGS = {
    TranscriptEntry.Speaker.CUSTOMER: "customer",
    TranscriptEntry.Speaker.AI: "ai",
    TranscriptEntry.Speaker.AGENT: "agent",
}


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one try came to; `retry_in_s` is set when the task should try again."""

    status: str  # done | failed | skipped | retry | gone
    retry_in_s: float | None = None
    reason: str = ""


def transcript_for_model(*, call: CallSession) -> tuple[str, int]:
    """The saved transcript as tagged lines, and how many are the caller's."""
    lines, caller = [], 0
    for entry in call.transcript.order_by("offset_ms", "id"):
        tag = SPEAKER_TAGS.get(entry.speaker)
        if tag is None or not entry.text.strip():
            continue
        caller += tag == "customer"
        lines.append(f"[{tag}] {entry.text.strip()}")
    return "\n".join(lines), caller


def summary_cost_usd(*, input_tokens: int, output_tokens: int) -> Decimal:
    """Cost of one request at SUMMARY_PRICES (USD per 1M tokens)."""
    prices = settings.SUMMARY_PRICES
    total = (input_tokens * prices["input"] + output_tokens * prices["output"]) / 1e6
    return Decimal(str(round(total, 6)))


def retry_delay_s(*, attempt: int) -> float:
    """Back-off before try `attempt + 1`: the base delay, doubled each time."""
    return float(settings.SUMMARY_RETRY_DELAY_S) * (2 ** (attempt - 1))


def _add_usage(*, call_id: int, input_tokens: int, output_tokens: int) -> None:
    cost = summary_cost_usd(input_tokens=input_tokens, output_tokens=output_tokens)
    CallSession.objects.filter(pk=call_id).update(
        summary_input_tokens=F("summary_input_tokens") + input_tokens,
        summary_output_tokens=F("summary_output_tokens") + output_tokens,
        summary_cost_usd=F("summary_cost_usd") + cost,
        cost_usd=F("cost_usd") + cost,
    )


def _announce(*, call: CallSession, status: str) -> None:
    """Mark the end announced and send `call_summarized` once this commits."""
    call.summarized_at = timezone.now()
    call.save(update_fields=["summarized_at"])

    def after_commit() -> None:
        for receiver, result in call_summarized.send_robust(
            sender=CallSession, call=call, extraction_status=status
        ):
            if isinstance(result, Exception):
                log.error("call_summarized receiver %r failed: %r", receiver, result)

    transaction.on_commit(after_commit)


def _broadcast(call: CallSession) -> None:
    from calls.services import broadcast

    message = {
        "type": "call.summary",
        "extraction_status": call.extraction_status,
        "summary": call.summary,
        "extraction": call.extraction,
        "error": call.extraction_error,
    }
    transaction.on_commit(lambda: broadcast(call=call, message=message))


def _ask(call: CallSession, transcript: str) -> SummaryResult:
    schema = call.agent.extraction_schema if call.agent_id else None
    return request_summary(
        transcript=transcript,
        fields_schema=schema or default_extraction_schema(),
        model=settings.SUMMARY_MODEL,
        base_url=settings.SUMMARY_OPENAI_BASE_URL,
        api_key=settings.OPENAI_API_KEY or "demo-mode",
        timeout_s=settings.SUMMARY_TIMEOUT_S,
    )


def call_summary_attempt(
    *, call_id: int, attempt: int = 1, announce: bool = True
) -> AttemptOutcome:
    """One try of the after-call step for the call (see the module docstring)."""
    call = (
        CallSession.objects.select_related("agent", "organization")
        .filter(pk=call_id)
        .first()
    )
    if call is None:
        return AttemptOutcome("gone")
    if announce and call.summarized_at is not None:
        return AttemptOutcome("gone", reason="already announced")  # a redelivery
    transcript, caller_lines = transcript_for_model(call=call)
    if caller_lines == 0:
        with transaction.atomic():
            call.extraction_status = ExtractionStatus.SKIPPED
            call.extraction_error = ""
            call.save(update_fields=["extraction_status", "extraction_error"])
            _broadcast(call)
            if announce:
                _announce(call=call, status=ExtractionStatus.SKIPPED)
        return AttemptOutcome("skipped")
    try:
        result = _ask(call, transcript)
    except SummaryError as exc:
        return _attempt_failed(call, attempt=attempt, error=exc, announce=announce)
    with transaction.atomic():
        _add_usage(
            call_id=call.pk,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
        )
        call.refresh_from_db(
            fields=["cost_usd", "summary_cost_usd", "summary_input_tokens"]
        )
        call.summary = result.summary
        call.extraction = result.fields
        call.extraction_status = ExtractionStatus.DONE
        call.extraction_error = ""
        call.extraction_attempts = attempt
        call.save(
            update_fields=[
                "summary",
                "extraction",
                "extraction_status",
                "extraction_error",
                "extraction_attempts",
            ]
        )
        _job_from_call(call)
        _broadcast(call)
        if announce:
            _announce(call=call, status=ExtractionStatus.DONE)
    return AttemptOutcome("done")


def _job_from_call(call: CallSession) -> None:
    """The job card rule (F-77); a failure there never loses the summary."""
    from jobs.services import job_create_from_call

    try:
        with transaction.atomic():
            job_create_from_call(call=call)
    except Exception:
        log.exception("job card not made", extra={"call_id": call.pk})


def call_summary_unexpected(
    *, call_id: int, attempt: int, announce: bool, error: BaseException
) -> AttemptOutcome:
    """A try that broke in an unforeseen way (a database error, a bug): counted and
    retried like a model error, so the call never stays `pending` for good."""
    call = CallSession.objects.filter(pk=call_id).first()
    if call is None:
        return AttemptOutcome("gone")
    reason = f"unexpected error: {type(error).__name__}: {error}"
    return _attempt_failed(
        call, attempt=attempt, error=SummaryError(reason), announce=announce
    )


def _attempt_failed(
    call: CallSession, *, attempt: int, error: SummaryError, announce: bool
) -> AttemptOutcome:
    log.warning(
        "call summary try %d failed: %s",
        attempt,
        error.reason,
        extra={"call_id": call.pk},
    )
    final = attempt >= settings.SUMMARY_MAX_ATTEMPTS
    with transaction.atomic():
        if error.input_tokens or error.output_tokens:
            _add_usage(
                call_id=call.pk,
                input_tokens=error.input_tokens,
                output_tokens=error.output_tokens,
            )
        call.extraction_error = _("Try %(n)d of %(max)d: %(reason)s") % {
            "n": attempt,
            "max": settings.SUMMARY_MAX_ATTEMPTS,
            "reason": error.reason,
        }
        call.extraction_attempts = attempt
        fields = ["extraction_error", "extraction_attempts"]
        if final:
            call.extraction_status = ExtractionStatus.FAILED
            fields.append("extraction_status")
        call.save(update_fields=fields)
        if final:
            _broadcast(call)
            if announce:
                _announce(call=call, status=ExtractionStatus.FAILED)
    if final:
        return AttemptOutcome("failed", reason=error.reason)
    return AttemptOutcome(
        "retry", retry_in_s=retry_delay_s(attempt=attempt), reason=error.reason
    )


def call_extraction_rerun(*, call: CallSession) -> CallSession:
    """Summarise an ended call again (admin action, `POST /api/calls/<id>/extract`).

    Refused (409) while the call is live: its transcript is not final.
    """
    from calls.summary.dispatch import summary_enqueue_on_commit

    if call.is_live:
        raise ApplicationError(
            _("The call is still live; it is summarised when it ends."),
            code=ErrorCode.CONFLICT,
        )
    with transaction.atomic():
        CallSession.objects.filter(pk=call.pk).update(
            extraction_status=ExtractionStatus.PENDING,
            extraction_error="",
            extraction_attempts=0,
        )
        summary_enqueue_on_commit(call_id=call.pk, announce=False)
    call.refresh_from_db()
    return call


def summary_state(call: CallSession) -> dict[str, Any]:
    """The call's after-call fields as the pages and the API show them."""
    return {
        "summary": call.summary,
        "extraction": call.extraction,
        "extraction_status": call.extraction_status,
        "extraction_error": call.extraction_error,
    }
