"""Supervisors stepping into a live call (F-75): whisper, barge, take over, hand back.

Each service checks, in this order and before anything happens, that the user holds
`calls.supervise_call` (403) and that the call is where the action makes sense (409:
held by the bridge, or with a human for `supervision_listen_phone`). It then records
a call event saying who and when, updates `CallSession.held_by` (take-over sets it,
hand-back clears it), sends the bridge its control command (`call_control_send`, data
with `by_id` and `by_name`) and tells the monitors who holds the call
(`call.supervision` on `monitor.call.<id>`). The event, `held_by` and the command
are one transaction: when the bridge cannot be reached (502) nothing is recorded.

The browser's listen (WebRTC) is signalled elsewhere (`calls:supervise-offer`); the
bridge records its own `supervise-listen-*` events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from agents.models import Operator
from agents.phones import mask_phone
from callcenter.errors import ApplicationError, ErrorCode
from calls.control import (
    call_check_live,
    call_instruct,
    operator_name,
    send_control,
)
from calls.models import CallSession
from calls.selectors import call_supervision_state
from calls.services import broadcast, call_event_record
from calls.status import CallStatus

SUPERVISE_PERMISSION = "calls.supervise_call"


class SupervisionAction(enum.StrEnum):
    """What the API's `action` names; each has a service below."""

    WHISPER = "whisper"
    BARGE = "barge"
    BARGE_END = "barge_end"
    TAKE_OVER = "take_over"
    HAND_BACK = "hand_back"
    LISTEN_PHONE = "listen_phone"


class SupervisionForbidden(ApplicationError):
    """The user lacks `calls.supervise_call`."""

    code = ErrorCode.PERMISSION_DENIED
    http_status = 403


class CallNotSupervisable(ApplicationError):
    """The call is live but not where the action applies (not on the AI, no human…)."""

    code = ErrorCode.CALL_NOT_SUPERVISABLE
    http_status = 409


@dataclass(frozen=True, slots=True)
class SupervisionResult:
    """Who holds the call after an action."""

    call_id: int
    action: str
    holder: str  # "ai" or "supervisor"
    mode: str | None  # None, "barge" or "take-over"
    held_by: int | None
    by_name: str | None


def _who(user: Operator) -> dict[str, Any]:
    return {"by_id": user.pk, "by_name": operator_name(user)}


def supervision_check_allowed(*, user: Operator) -> None:
    """Raise SupervisionForbidden unless `user` may supervise calls."""
    if not user.has_perm(SUPERVISE_PERMISSION):
        raise SupervisionForbidden(
            "Supervising calls needs the calls.supervise_call permission."
        )


def _check_on_bridge(call: CallSession) -> None:
    """Raise CallNotLive (ended) or CallNotSupervisable (live, not with the AI)."""
    call_check_live(call=call)
    if call.status != CallStatus.AI_RESPONDING:
        raise CallNotSupervisable(
            f"Call {call.pk} is not held by the AI (status '{call.status}').",
            details={"status": call.status},
        )


def _locked(call: CallSession) -> CallSession:
    """The call's row, locked for this transaction, with its status and holder."""
    locked = CallSession.objects.select_for_update().get(pk=call.pk)
    call.status, call.held_by_id = locked.status, locked.held_by_id
    return locked


def _result(call: CallSession, action: SupervisionAction) -> SupervisionResult:
    state = call_supervision_state(call=call)
    return SupervisionResult(
        call_id=call.pk,
        action=action.value,
        holder=state["holder"],
        mode=state["mode"],
        held_by=state["held_by"],
        by_name=state["by_name"],
    )


def _announce(call: CallSession) -> None:
    """Tell the call's monitors who holds it now (once the transaction commits)."""
    state = call_supervision_state(call=call)
    message = {
        "type": "call.supervision",
        "holder": state["holder"],
        "mode": state["mode"],
        "by_name": state["by_name"],
    }
    transaction.on_commit(lambda: broadcast(call=call, message=message))


def supervision_whisper(
    *, call: CallSession, user: Operator, text: str
) -> SupervisionResult:
    """Give the AI an instruction it never speaks aloud (the operator's instruct)."""
    supervision_check_allowed(user=user)
    with transaction.atomic():
        _check_on_bridge(_locked(call))
        call_instruct(
            call=call, text=text, requested_by=user, event_type="supervise-whisper"
        )
    return _result(call, SupervisionAction.WHISPER)


def supervision_barge(
    *, call: CallSession, user: Operator, listener: str = ""
) -> SupervisionResult:
    """Pause the AI so the supervisor (listener `listener`'s microphone) is heard."""
    supervision_check_allowed(user=user)
    with transaction.atomic():
        _check_on_bridge(_locked(call))
        if call.held_by_id is not None:
            raise CallNotSupervisable(
                f"Call {call.pk} has been taken over; hand it back first.",
                details={"held_by": call.held_by_id},
            )
        data = {**_who(user), **({"listener": listener} if listener else {})}
        call_event_record(call=call, type="supervise-barge", payload=data)
        send_control(call=call, command="supervise-barge", **data)
        _announce(call)
    return _result(call, SupervisionAction.BARGE)


def supervision_barge_end(*, call: CallSession, user: Operator) -> SupervisionResult:
    """End a barge: the AI resumes with a note of what was said meanwhile."""
    supervision_check_allowed(user=user)
    with transaction.atomic():
        _check_on_bridge(_locked(call))
        if call_supervision_state(call=call)["mode"] != "barge":
            raise CallNotSupervisable(
                f"No one is barging in on call {call.pk}.",
                details={"status": call.status},
            )
        data = _who(user)
        call_event_record(call=call, type="supervise-barge-end", payload=data)
        send_control(call=call, command="supervise-barge-end", **data)
        _announce(call)
    return _result(call, SupervisionAction.BARGE_END)


def supervision_take_over(
    *, call: CallSession, user: Operator, listener: str = ""
) -> SupervisionResult:
    """Hold the call as the supervisor: the AI stays silent until hand-back."""
    supervision_check_allowed(user=user)
    with transaction.atomic():
        locked = _locked(call)
        _check_on_bridge(locked)
        if locked.held_by_id not in (None, user.pk):
            raise CallNotSupervisable(
                f"Call {call.pk} is already held by another supervisor.",
                details={"held_by": locked.held_by_id},
            )
        data = {**_who(user), **({"listener": listener} if listener else {})}
        locked.held_by = user
        locked.save(update_fields=["held_by"])
        call.held_by = user
        call_event_record(call=call, type="supervise-take-over", payload=data)
        send_control(call=call, command="supervise-take-over", **data)
        _announce(call)
    return _result(call, SupervisionAction.TAKE_OVER)


def supervision_hand_back(*, call: CallSession, user: Operator) -> SupervisionResult:
    """Give a taken-over (or barged) call back to the AI, which resumes with a note."""
    supervision_check_allowed(user=user)
    with transaction.atomic():
        locked = _locked(call)
        _check_on_bridge(locked)
        if locked.held_by_id is None and (
            call_supervision_state(call=call)["mode"] is None
        ):
            raise CallNotSupervisable(
                f"The AI already holds call {call.pk}.",
                details={"status": call.status},
            )
        data = _who(user)
        locked.held_by = None
        locked.save(update_fields=["held_by"])
        call.held_by = None
        call_event_record(call=call, type="supervise-hand-back", payload=data)
        send_control(call=call, command="supervise-hand-back", **data)
        _announce(call)
    return _result(call, SupervisionAction.HAND_BACK)


def supervision_listen_phone(
    *, call: CallSession, user: Operator, phone: str, coaching: bool = False
) -> SupervisionResult:
    """Add the supervisor's phone to the call's conference with the human.

    Muted (hears both, is heard by no one), or coaching the human's leg (heard by
    the human only). `phone` is E.164 (the API normalises it).
    """
    from calls.twilio_client import twilio_participant_create

    supervision_check_allowed(user=user)
    with transaction.atomic():
        locked = _locked(call)
        call_check_live(call=call)
        room = locked.handoff_conference_name
        human_leg = locked.handoff_agent_call_sid
        if locked.status != CallStatus.HUMAN_CONNECTED or not room or not human_leg:
            raise CallNotSupervisable(
                f"Call {call.pk} is not with a human in a conference.",
                details={"status": locked.status},
            )
        participant_sid = twilio_participant_create(
            conference=room,
            to=phone,
            muted=not coaching,
            coach_call_sid=human_leg if coaching else None,
        )
        call_event_record(
            call=call,
            type="supervise-phone-listen",
            payload={
                **_who(user),
                "to": mask_phone(phone),
                "coaching": coaching,
                "call_sid": participant_sid,
            },
        )
    return _result(call, SupervisionAction.LISTEN_PHONE)


def supervision_act(
    *,
    call: CallSession,
    user: Operator,
    action: SupervisionAction,
    text: str = "",
    listener: str = "",
    phone: str = "",
    coaching: bool = False,
) -> SupervisionResult:
    """Run one supervision action by name (the API's single entry point)."""
    if action == SupervisionAction.WHISPER:
        return supervision_whisper(call=call, user=user, text=text)
    if action == SupervisionAction.BARGE:
        return supervision_barge(call=call, user=user, listener=listener)
    if action == SupervisionAction.BARGE_END:
        return supervision_barge_end(call=call, user=user)
    if action == SupervisionAction.TAKE_OVER:
        return supervision_take_over(call=call, user=user, listener=listener)
    if action == SupervisionAction.HAND_BACK:
        return supervision_hand_back(call=call, user=user)
    return supervision_listen_phone(
        call=call, user=user, phone=phone, coaching=coaching
    )
