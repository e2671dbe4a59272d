"""Twilio webhooks (F-10, F-12, F-13). Each is signed; forged or unsigned → 403."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from calls.inbound import call_inbound_route
from calls.models import CallSession
from calls.reaper import calls_reap_opportunistically
from calls.telephony import (
    call_outbound_answered_twiml,
    call_recording_status,
    call_status_callback,
    call_stream_ended_twiml,
)
from calls.twilio_security import twilio_signed

log = logging.getLogger(__name__)

TWIML = "application/xml"


def _required(request: HttpRequest, *names: str) -> dict[str, str] | HttpResponse:
    missing = [n for n in names if not request.POST.get(n)]
    if missing:
        return HttpResponseBadRequest("Missing parameter(s): " + ", ".join(missing))
    return {n: request.POST[n] for n in names}


@csrf_exempt
@require_POST
@twilio_signed
def voice_incoming(request: HttpRequest) -> HttpResponse:
    """Route an inbound call and answer with stream TwiML (F-10)."""
    fields = _required(request, "CallSid", "From", "To")
    if isinstance(fields, HttpResponse):
        return fields
    calls_reap_opportunistically()
    reply = call_inbound_route(
        call_sid=fields["CallSid"], from_number=fields["From"], to_number=fields["To"]
    )
    return HttpResponse(reply.twiml, content_type=TWIML)


@csrf_exempt
@require_POST
@twilio_signed
def call_status(request: HttpRequest, call_id: int | None = None) -> HttpResponse:
    """Apply a call status callback; `completed` ends the bridge and the call (F-12).

    Outbound calls carry our call id in the URL; inbound calls report to the number's
    status URL, without one, and are found by CallSid.
    """
    fields = _required(request, "CallStatus")
    if isinstance(fields, HttpResponse):
        return fields
    if call_id is None:
        found = CallSession.objects.filter(
            twilio_call_sid=request.POST.get("CallSid") or "-"
        ).values_list("pk", flat=True)
        if not found:
            return HttpResponse("Unknown call", status=404)
        call_id = found[0]
    try:
        call_status_callback(
            call_id=call_id,
            status=fields["CallStatus"],
            call_sid=request.POST.get("CallSid", ""),
            duration=request.POST.get("CallDuration", ""),
            answered_by=request.POST.get("AnsweredBy", ""),
            dial_status=request.POST.get("DialCallStatus", ""),
        )
    except CallSession.DoesNotExist:
        return HttpResponse("Unknown call", status=404)
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
@twilio_signed
def recording_status(request: HttpRequest, call_id: int) -> HttpResponse:
    """Store a recording's status (F-13)."""
    fields = _required(request, "RecordingSid", "RecordingStatus")
    if isinstance(fields, HttpResponse):
        return fields
    try:
        call_recording_status(
            call_id=call_id,
            recording_sid=fields["RecordingSid"],
            status=fields["RecordingStatus"],
            url=request.POST.get("RecordingUrl", ""),
            duration=request.POST.get("RecordingDuration", ""),
            conference_sid=request.POST.get("ConferenceSid", ""),
        )
    except CallSession.DoesNotExist:
        return HttpResponse("Unknown call", status=404)
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
@twilio_signed
def stream_ended(request: HttpRequest, call_id: int) -> HttpResponse:
    """`<Connect action>`: Twilio asks what next after our side closed the stream."""
    try:
        reply = call_stream_ended_twiml(call_id=call_id)
    except CallSession.DoesNotExist:
        return HttpResponse("Unknown call", status=404)
    return HttpResponse(reply, content_type=TWIML)


@csrf_exempt
@require_POST
@twilio_signed
def voice_outbound(request: HttpRequest, call_id: int) -> HttpResponse:
    """The callee answered our outbound call: AI stream or voicemail (F-11)."""
    try:
        reply = call_outbound_answered_twiml(
            call_id=call_id, answered_by=request.POST.get("AnsweredBy", "")
        )
    except CallSession.DoesNotExist:
        return HttpResponse("Unknown call", status=404)
    return HttpResponse(reply, content_type=TWIML)
