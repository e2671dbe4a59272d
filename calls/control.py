"""Operators' control of a live call (F-23, F-37): hang up, instruct the AI.

Each request is checked against the call's current status, recorded on its timeline
and sent to the call's bridge over the channel layer (`call_control_send`), so it
reaches the bridge in whichever process holds the call.
"""

from __future__ import annotations

import logging
from typing import Any

from agents.models import Operator
from callcenter.errors import ApplicationError, ErrorCode
from calls.models import CallSession
from calls.services import call_control_send, call_event_record
from calls.status import CallStatus
from calls.twilio_client import twilio_call_update

log = logging.getLogger(__name__)


class CallNotLive(ApplicationError):
    """The call has ended (or never started), so there is nothing to control."""

    code = ErrorCode.CALL_NOT_LIVE
    http_status = 409


def call_check_live(*, call: CallSession) -> None:
    """Raise CallNotLive unless the call, as stored now, is live."""
    call.refresh_from_db(fields=["status"])
    if not call.is_live:
        raise CallNotLive(
            f"Call {call.pk} is not live (status '{call.status}').",
            details={"status": call.status},
        )


def operator_name(user: Operator) -> str:
    """The name other operators see: the full name, else the login."""
    return user.get_full_name() or user.get_username()


def send_control(*, call: CallSession, command: str, **data: Any) -> None:
    """Send the bridge a command; a layer failure is a 502 ApplicationError."""
    try:
        call_control_send(call_id=call.pk, command=command, **data)
    except Exception as exc:  # the layer (Redis) is down: tell the client, not a 500
        log.warning(
            "control %s not sent", command, exc_info=True, extra={"call_id": call.pk}
        )
        raise ApplicationError(
            "The call's bridge could not be reached; try again.",
            code=ErrorCode.UPSTREAM,
            http_status=502,
        ) from exc


def call_hangup_request(
    *, call: CallSession, requested_by: Operator | None = None
) -> CallSession:
    """Ask the bridge to end a live call (it says nothing more and hangs up)."""
    call_check_live(call=call)
    call_event_record(
        call=call,
        type="hangup-requested",
        payload={"requested_by": requested_by.pk if requested_by else None},
    )
    if call.status == CallStatus.AI_RESPONDING:
        send_control(call=call, command="hangup")
    else:
        # No bridge holds the call (still ringing, or with a human): Twilio ends it.
        _hang_up_with_twilio(call=call)
    return call


def _hang_up_with_twilio(*, call: CallSession) -> None:
    not_answered = call.status in (CallStatus.INITIATED, CallStatus.RINGING)
    status = "canceled" if not_answered else "completed"
    for sid in (call.twilio_call_sid, call.handoff_agent_call_sid):
        if sid:
            twilio_call_update(call_sid=sid, status=status)


def call_instruct(
    *,
    call: CallSession,
    text: str,
    requested_by: Operator | None = None,
    event_type: str = "instruct-requested",
) -> CallSession:
    """Inject an operator's instruction into a live call's AI conversation.

    The supervisor's whisper (F-75) is this with `event_type="supervise-whisper"`.
    The event and the command say who sent it (`by_id`, `by_name`).
    """
    call_check_live(call=call)
    by_id = requested_by.pk if requested_by else None
    by_name = operator_name(requested_by) if requested_by else None
    call_event_record(
        call=call,
        type=event_type,
        payload={
            "text": text,
            "requested_by": by_id,
            "by_id": by_id,
            "by_name": by_name,
        },
    )
    send_control(call=call, command="instruct", text=text, by_id=by_id, by_name=by_name)
    return call
