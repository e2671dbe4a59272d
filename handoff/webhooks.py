"""Twilio callbacks of the handoff: the human's leg and the conference (F-14, F-33)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from calls.models import CallSession
from calls.twilio_security import twilio_signed
from handoff.services import handoff_agent_status, handoff_conference_event


@csrf_exempt
@require_POST
@twilio_signed
def agent_status(request: HttpRequest, call_id: int) -> HttpResponse:
    """Status of the human's leg; busy / no-answer / failed sends the caller back."""
    status = request.POST.get("CallStatus", "")
    if not status:
        return HttpResponseBadRequest("Missing parameter(s): CallStatus")
    try:
        handoff_agent_status(
            call_id=call_id,
            status=status,
            agent_call_sid=request.POST.get("CallSid", ""),
        )
    except CallSession.DoesNotExist:
        return HttpResponse("Unknown call", status=404)
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
@twilio_signed
def conference_status(request: HttpRequest, call_id: int) -> HttpResponse:
    """Conference events: the human joining or leaving drives the states (F-14)."""
    event = request.POST.get("StatusCallbackEvent", "")
    if not event:
        return HttpResponseBadRequest("Missing parameter(s): StatusCallbackEvent")
    try:
        handoff_conference_event(
            call_id=call_id,
            event=event,
            participant_sid=request.POST.get("CallSid", ""),
        )
    except CallSession.DoesNotExist:
        return HttpResponse("Unknown call", status=404)
    return HttpResponse(status=204)
