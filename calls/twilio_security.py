"""Twilio signature checks for webhooks and the media-stream upgrade (F-15, SPEC §2).

The URL Twilio signed is rebuilt from PUBLIC_BASE_URL plus the request path, never from
what Django sees behind a proxy (PROTOCOL B4). Streams are signed over the `wss://` URL
with no parameters.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)


def public_url(path: str) -> str:
    """The absolute URL Twilio uses for `path` (which may carry a query string)."""
    return settings.PUBLIC_BASE_URL + path


def stream_url(path: str) -> str:
    """The WebSocket URL for `path`: https → wss, http → ws (local use)."""
    base = settings.PUBLIC_BASE_URL
    scheme = "wss" if base.startswith("https://") else "ws"
    return f"{scheme}://{urlsplit(base).netloc}{path}"


def signature_valid(*, url: str, params: Mapping[str, Any], signature: str) -> bool:
    """Check an X-Twilio-Signature with the account's auth token."""
    if not signature or not settings.TWILIO_AUTH_TOKEN:
        return False
    return bool(
        RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(url, params, signature)
    )


def request_signature_valid(request: HttpRequest) -> bool:
    """True if the request is signed by Twilio (or checks are switched off)."""
    if not settings.TWILIO_VALIDATE_SIGNATURES:
        return True
    return signature_valid(
        url=public_url(request.get_full_path()),
        params=request.POST,
        signature=request.headers.get("X-Twilio-Signature", ""),
    )


def websocket_signature_valid(*, path: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """True if a media-stream upgrade carries a valid signature over its wss URL."""
    if not settings.TWILIO_VALIDATE_SIGNATURES:
        return True
    signature = ""
    for name, value in headers:
        if name.lower() == b"x-twilio-signature":
            signature = value.decode("latin-1")
    # Twilio signs the upgrade over the wss:// URL, whatever scheme we advertise.
    netloc = urlsplit(settings.PUBLIC_BASE_URL).netloc
    return signature_valid(url=f"wss://{netloc}{path}", params={}, signature=signature)


def twilio_signed(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuse (403, nothing changed) a webhook that Twilio did not sign."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request_signature_valid(request):
            log.warning(
                "rejected unsigned or forged Twilio webhook",
                extra={"path": request.path, "call_id": kwargs.get("call_id")},
            )
            return HttpResponseForbidden("Invalid Twilio signature")
        return view(request, *args, **kwargs)

    return wrapper
