"""What every Twilio webhook view shares: POST only, no CSRF, signed, clear errors.

A view decorated with `twilio_webhook` reads its parameters with `required()`; a missing
one is a 400 naming it, an unknown call a 404, a bad signature a 403 (nothing changed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from calls.models import CallSession
from calls.twilio_security import twilio_signed

TWIML = "application/xml"


class MissingParameters(Exception):
    def __init__(self, names: list[str]) -> None:
        super().__init__("Missing parameter(s): " + ", ".join(names))


def required(request: HttpRequest, *names: str) -> dict[str, str]:
    """The named POST parameters; MissingParameters (→ 400) if any is absent."""
    missing = [n for n in names if not request.POST.get(n)]
    if missing:
        raise MissingParameters(missing)
    return {n: request.POST[n] for n in names}


def twiml_response(twiml: str) -> HttpResponse:
    return HttpResponse(twiml, content_type=TWIML)


def twilio_webhook(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """POST-only, CSRF-exempt, signature-checked, with 400/404 for bad requests."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except MissingParameters as exc:
            return HttpResponseBadRequest(str(exc))
        except CallSession.DoesNotExist:
            return HttpResponse("Unknown call", status=404)

    return csrf_exempt(require_POST(twilio_signed(wrapper)))
