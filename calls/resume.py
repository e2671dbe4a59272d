"""Resume (F-68): a call whose media stream ended while it was still with the AI.

Our side did not end it (the bridge ends a call before it closes the stream, and a
handoff moves it to `transferring`): the process holding the stream died, was
drained (`CallBridge.hand_over`), or the socket broke. Twilio then asks the
`<Connect action>` (`stream-ended`), which any process may answer: with a fresh
`<Connect><Stream>` carrying a new one-time token. The new bridge re-seeds the model
from the saved transcript (`call_setup` sets `BridgeConfig.resume`) and, when it
claims the stream, records `stream-resumed` with the gap (`realtime.store`).

A resume fails when its stream is never claimed before the next `stream-ended`; a
claim resets the count. The second failed resume in a row goes to the fallback
chain of F-25 (the profile's `on_model_failure`: a human, else the apology).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from agents.models import AgentProfile
from callcenter.errors import ApplicationError
from calls.models import CallSession, new_stream_token
from calls.services import call_event_record, call_session_transition
from calls.status import CallStatus

log = logging.getLogger(__name__)

MAX_FAILED_RESUMES = 2  # in a row; then the fallback chain
FALLBACK_TRIGGER = "stream-lost"


@dataclass(frozen=True, slots=True)
class _Decision:
    resume: bool
    failures: int


def _lost_stream_decide(*, call: CallSession) -> _Decision:
    """With the call's row locked: count the failure, rotate the token, or give up."""
    pending = call.stream_lost_at is not None and call.stream_token_used_at is None
    failures = call.stream_resume_failures + 1 if pending else 0
    previous_sid = call.stream_sid
    call.stream_resume_failures = failures
    if failures >= MAX_FAILED_RESUMES:
        call.save(update_fields=["stream_resume_failures"])
        call_event_record(
            call=call,
            type="stream-resume-failed",
            payload={"failures": failures, "stream_sid": previous_sid},
        )
        return _Decision(resume=False, failures=failures)
    if not pending:
        # The gap a caller hears runs from the first loss to the claim that ends it.
        call.stream_lost_at = timezone.now()
    call.stream_token = new_stream_token()
    call.stream_token_used_at = None
    call.save(
        update_fields=[
            "stream_lost_at",
            "stream_resume_failures",
            "stream_token",
            "stream_token_used_at",
        ]
    )
    call_event_record(
        call=call,
        type="stream-lost",
        payload={
            "stream_sid": previous_sid,
            "failed_resumes": failures,
            "lost_at": call.stream_lost_at.isoformat() if call.stream_lost_at else "",
        },
    )
    return _Decision(resume=True, failures=failures)


def stream_expected_again(call: CallSession) -> bool:
    """Whether the stream that ended should be followed by a fresh one.

    A call on the AI (its stream was lost or handed over), or one whose first stream
    never got as far as its claim (a draining process refused it, F-69: the call is
    still ringing and its token unspent).
    """
    return call.status == CallStatus.AI_RESPONDING or (
        call.status in (CallStatus.INITIATED, CallStatus.RINGING)
        and call.stream_token_used_at is None
    )


def call_stream_lost_twiml(*, call_id: int) -> str | None:
    """TwiML for a call whose stream ended while it was on the AI, or None when the
    call is not (any more) in that state.

    A fresh stream (new token) to resume it; after the second failed resume in a
    row, a human when the profile hands off on failures, else the apology.
    """
    from calls.inbound import stream_twiml

    with transaction.atomic():
        # Lock the call's row only (PostgreSQL refuses FOR UPDATE on an outer join).
        call = (
            CallSession.objects.select_for_update(of=("self",))
            .select_related("agent")
            .get(pk=call_id)
        )
        if not stream_expected_again(call):
            return None
        decision = _lost_stream_decide(call=call)
        if decision.resume:
            log.warning(
                "stream lost; resuming (failed resumes in a row: %d)",
                decision.failures,
                extra={"call_id": call.pk},
            )
            return stream_twiml(call=call)
    log.error(
        "stream lost and %d resumes failed: fallback",
        decision.failures,
        extra={"call_id": call.pk},
    )
    return _fallback_twiml(call=call)


def _fallback_twiml(*, call: CallSession) -> str:
    """The F-25 chain without a bridge: a human if the profile says so, else sorry."""
    from calls import twiml
    from handoff.services import caller_leg_twiml, handoff_request

    agent = call.agent
    if (
        agent is not None
        and agent.on_model_failure == AgentProfile.ModelFailure.HANDOFF
    ):
        try:
            handoff_request(
                call_id=call.pk,
                trigger=FALLBACK_TRIGGER,
                reason="the media stream could not be resumed",
                move_caller=False,  # this reply moves the caller
            )
        except ApplicationError as exc:
            call_event_record(
                call=call, type="handoff-refused", payload={"detail": str(exc)[:300]}
            )
        else:
            call.refresh_from_db()
            return caller_leg_twiml(call=call)
    call.refresh_from_db()
    if call.status == CallStatus.AI_RESPONDING:
        call_session_transition(
            call=call, to=CallStatus.FAILED, reason="stream lost; resume failed"
        )
    from realtime.call_setup import APOLOGY_LINE

    call_event_record(call=call, type="apology", payload={"text": APOLOGY_LINE})
    return twiml.say_and_hang_up(APOLOGY_LINE)


__all__ = ["MAX_FAILED_RESUMES", "call_stream_lost_twiml", "stream_expected_again"]
