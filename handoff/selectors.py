"""Reads for the handoff: finding the live call an API client means (F-31)."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.http import Http404

from calls.models import CallSession
from calls.selectors import call_list
from calls.status import CallStatus

HANDOFF_STATES = (
    CallStatus.AI_RESPONDING,
    CallStatus.TRANSFERRING,
    CallStatus.HUMAN_CONNECTED,
)


def live_call_find(
    *, user: Any, phone_number: str = "", call_sid: str = ""
) -> CallSession:
    """The user's live call with this CallSid or customer number; Http404 if none."""
    calls = call_list(user=user).filter(status__in=HANDOFF_STATES)
    if call_sid:
        calls = calls.filter(twilio_call_sid=call_sid)
    else:
        calls = calls.filter(
            Q(direction=CallSession.Direction.INBOUND, from_number=phone_number)
            | Q(direction=CallSession.Direction.OUTBOUND, to_number=phone_number)
        )
    call = calls.order_by("-created_at").first()
    if call is None:
        raise Http404("No live call for that number or CallSid.")
    return call
