"""Twilio callbacks of the handoff: the human's leg and the conference (F-14, F-33)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from calls.webhook_views import required, twilio_webhook
from handoff.services import handoff_agent_status, handoff_conference_event


@twilio_webhook
def agent_status(request: HttpRequest, call_id: int) -> HttpResponse:
    """Status of the human's leg; busy / no-answer / failed sends the caller back."""
    handoff_agent_status(
        call_id=call_id,
        status=required(request, "CallStatus")["CallStatus"],
        agent_call_sid=request.POST.get("CallSid", ""),
    )
    return HttpResponse(status=204)


@twilio_webhook
def conference_status(request: HttpRequest, call_id: int) -> HttpResponse:
    """Conference events: the human joining or leaving drives the states (F-14)."""
    handoff_conference_event(
        call_id=call_id,
        event=required(request, "StatusCallbackEvent")["StatusCallbackEvent"],
        participant_sid=request.POST.get("CallSid", ""),
    )
    return HttpResponse(status=204)
