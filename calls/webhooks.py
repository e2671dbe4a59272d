"""Twilio webhooks (F-10 … F-13). Each is signed; forged or unsigned → 403."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from calls.inbound import call_inbound_route
from calls.models import CallSession
from calls.reaper import calls_reap_opportunistically
from calls.telephony import (
    call_amd_result,
    call_outbound_answered_twiml,
    call_recording_status,
    call_status_callback,
    call_stream_ended_twiml,
)
from calls.webhook_views import required, twilio_webhook, twiml_response


@twilio_webhook
def voice_incoming(request: HttpRequest) -> HttpResponse:
    """Route an inbound call and answer with stream TwiML (F-10)."""
    fields = required(request, "CallSid", "From", "To")
    calls_reap_opportunistically()
    reply = call_inbound_route(
        call_sid=fields["CallSid"], from_number=fields["From"], to_number=fields["To"]
    )
    return twiml_response(reply.twiml)


@twilio_webhook
def voice_outbound(request: HttpRequest, call_id: int) -> HttpResponse:
    """The callee answered our outbound call: AI stream or voicemail (F-11)."""
    return twiml_response(
        call_outbound_answered_twiml(
            call_id=call_id,
            answered_by=request.POST.get("AnsweredBy", ""),
            call_sid=request.POST.get("CallSid", ""),
        )
    )


@twilio_webhook
def call_status(request: HttpRequest, call_id: int | None = None) -> HttpResponse:
    """Apply a call status callback; `completed` ends the bridge and the call (F-12).

    Outbound calls carry our call id in the URL; inbound calls report to the number's
    status URL, without one, and are found by CallSid.
    """
    status = required(request, "CallStatus")["CallStatus"]
    if call_id is None:
        call_id = CallSession.objects.values_list("pk", flat=True).get(
            twilio_call_sid=request.POST.get("CallSid") or "-"
        )
    call_status_callback(
        call_id=call_id,
        status=status,
        call_sid=request.POST.get("CallSid", ""),
        duration=request.POST.get("CallDuration", ""),
        answered_by=request.POST.get("AnsweredBy", ""),
        dial_status=request.POST.get("DialCallStatus", ""),
        sequence=request.POST.get("SequenceNumber", ""),
    )
    return HttpResponse(status=204)


@twilio_webhook
def amd_status(request: HttpRequest, call_id: int) -> HttpResponse:
    """Asynchronous answering-machine detection's verdict (AsyncAmd, F-64)."""
    fields = required(request, "AnsweredBy")
    call_amd_result(
        call_id=call_id,
        answered_by=fields["AnsweredBy"],
        call_sid=request.POST.get("CallSid", ""),
    )
    return HttpResponse(status=204)


@twilio_webhook
def recording_status(request: HttpRequest, call_id: int) -> HttpResponse:
    """Store a recording's status (F-13)."""
    fields = required(request, "RecordingSid", "RecordingStatus")
    call_recording_status(
        call_id=call_id,
        recording_sid=fields["RecordingSid"],
        status=fields["RecordingStatus"],
        url=request.POST.get("RecordingUrl", ""),
        duration=request.POST.get("RecordingDuration", ""),
        conference_sid=request.POST.get("ConferenceSid", ""),
    )
    return HttpResponse(status=204)


@twilio_webhook
def stream_ended(request: HttpRequest, call_id: int) -> HttpResponse:
    """Twilio asks what next: our side closed the stream (`<Connect action>`), or the
    caller's `<Dial>` into the handoff room ended (its action, with DialCallStatus)."""
    return twiml_response(
        call_stream_ended_twiml(
            call_id=call_id, dial_status=request.POST.get("DialCallStatus", "")
        )
    )
