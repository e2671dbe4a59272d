"""What every Twilio webhook view shares: POST only, no CSRF, signed, clear errors.

A view decorated with `twilio_webhook` reads its parameters with `required()`; a missing
one is a 400 naming it, an unknown call a 404, a bad signature a 403 (nothing changed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from callcenter.db import db_sync_to_async
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


def twilio_webhook(
    view: Callable[..., HttpResponse],
) -> Callable[..., Coroutine[Any, Any, HttpResponse]]:
    """POST-only, CSRF-exempt, signature-checked, with 400/404 for bad requests.

    The view is async: its sync body (signature check included) runs whole on a DB
    thread (callcenter/db.py), not on the one thread Django gives sync views, which
    every other sync view and middleware step shares.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except MissingParameters as exc:
            return HttpResponseBadRequest(str(exc))
        except CallSession.DoesNotExist:
            return HttpResponse("Unknown call", status=404)

    on_db_thread = db_sync_to_async(twilio_signed(wrapper), lane="setup")

    @functools.wraps(view)
    async def async_view(
        request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        return await on_db_thread(request, *args, **kwargs)

    return csrf_exempt(require_POST(async_view))
