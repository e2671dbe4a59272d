"""The legacy path's Twilio webhook: the `<Gather>` action (F-72).

Async, unlike the other webhooks: the text model is awaited on the event loop, and
only the database work goes to a DB thread, so twenty calls waiting on the model
hold no thread. Signed like every webhook (403, nothing changed, when not). Any
failure past the signature still answers TwiML the caller can hear.
"""

from __future__ import annotations

import logging
import time

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from calls.legacy import twiml as legacy_twiml
from calls.legacy.entry import legacy_turn_url
from calls.legacy.turns import legacy_turn_twiml
from calls.models import CallSession
from calls.twilio_security import request_signature_valid
from calls.webhook_views import twiml_response

log = logging.getLogger(__name__)

EVENTS = ("gather", "silence", "resume")


@csrf_exempt
@require_POST
async def legacy_turn(request: HttpRequest, call_id: int) -> HttpResponse:
    """What the caller said (`SpeechResult`, `Confidence`) → the AI's reply TwiML.

    `?event=silence`: the `<Redirect>` after a `<Gather>` that heard nothing;
    `?event=resume`: back from a human with a note for the AI. An empty or missing
    `SpeechResult` is no error: the caller is asked again.
    """
    received = time.perf_counter()
    if not request_signature_valid(request):
        log.warning(
            "rejected unsigned or forged Twilio webhook",
            extra={"path": request.path, "call_id": call_id},
        )
        return HttpResponseForbidden("Invalid Twilio signature")
    event = request.GET.get("event", "gather")
    if event not in EVENTS:
        return HttpResponse(f"Unknown event {event!r}", status=400)
    try:
        reply = await legacy_turn_twiml(
            call_id=call_id,
            event=event,
            speech=request.POST.get("SpeechResult", ""),
            confidence=request.POST.get("Confidence", ""),
            received=received,
        )
    except CallSession.DoesNotExist:
        return HttpResponse("Unknown call", status=404)
    except Exception:
        # The database, a bug: the caller still hears a sentence and is listened to.
        log.exception("legacy turn failed", extra={"call_id": call_id})
        reply = legacy_twiml.say_and_gather(
            agent=None,
            text=legacy_twiml.MODEL_ERROR_LINE,
            action_url=legacy_turn_url(call_id),
            silence_url=legacy_turn_url(call_id, "silence"),
        )
    return twiml_response(reply)
