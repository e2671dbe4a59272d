"""The one module that talks to Twilio's REST API (PROTOCOL B5).

Built on the `twilio` library and pointed at `TWILIO_API_BASE_URL`, so tests, the demo
and benchmarks swap in the emulator by changing a URL, never the code path. Every
failure (an error reply, a refused connection, a timeout) becomes `TwilioError`, an
`ApplicationError` the API renders as 502 `upstream_error`.

Outbound calls go through `dial_outbound(call)`, the default `settings.TWILIO_DIALER`;
the handoff service uses `twilio_call_create` and `twilio_call_update` directly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from callcenter.errors import ApplicationError, ErrorCode

if TYPE_CHECKING:
    from calls.models import CallSession

log = logging.getLogger(__name__)

# Twilio's status callback events for a call we place (F-12).
CALL_STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


class TwilioError(ApplicationError):
    """Twilio refused a request or could not be reached."""

    code = ErrorCode.UPSTREAM
    http_status = 502


def twilio_rest_client() -> Client:
    """Return a REST client with our credentials, aimed at `TWILIO_API_BASE_URL`."""
    client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
    client.api.base_url = settings.TWILIO_API_BASE_URL
    return client


def _upstream_error(action: str, exc: Exception) -> TwilioError:
    if isinstance(exc, TwilioRestException):
        details: dict[str, Any] = {"status": exc.status, "twilio_code": exc.code}
        message = f"Twilio refused to {action}: {exc.msg or exc.status}"
    else:
        details = {}
        message = f"Twilio could not be reached to {action}: {exc}"
    log.warning("%s", message)
    return TwilioError(message, details=details)


def twilio_call_create(**params: Any) -> str:
    """Create a call (`calls.create`) and return its SID; raise TwilioError."""
    try:
        created = twilio_rest_client().calls.create(**params)
    except (TwilioException, requests.RequestException, OSError) as exc:
        raise _upstream_error("place the call", exc) from exc
    return str(created.sid)


def twilio_call_update(*, call_sid: str, **params: Any) -> None:
    """Update a live call (`calls(sid).update`: new TwiML, status); raise TwilioError."""
    try:
        twilio_rest_client().calls(call_sid).update(**params)
    except (TwilioException, requests.RequestException, OSError) as exc:
        raise _upstream_error("update the call", exc) from exc


def dial_outbound(call: CallSession) -> str:
    """Dial an outbound call's callee with answering-machine detection (F-11).

    Twilio fetches the answer TwiML from our outbound webhook and posts every status
    to the status webhook, both keyed by our call id. Returns the Twilio call SID.
    """
    base = settings.PUBLIC_BASE_URL
    return twilio_call_create(
        to=call.to_number,
        from_=call.from_number or settings.TWILIO_FROM_NUMBER,
        url=f"{base}/api/twilio/voice/outbound/{call.pk}",
        status_callback=f"{base}/api/twilio/status/{call.pk}",
        status_callback_event=CALL_STATUS_EVENTS,
        machine_detection="Enable",
    )
