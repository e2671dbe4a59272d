"""The supervisor's listen signalling (F-75): a WebRTC offer in, the answer out.

``POST /calls/<id>/supervise/offer/`` with ``{"sdp": …}`` (session, CSRF header)
→ ``{"sdp": <answer>, "listener": <id>}``; errors in the API's error body.
"""

from __future__ import annotations

import json

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from callcenter.errors import ApplicationError, ErrorCode, error_body
from calls.models import CallSession
from calls.selectors import call_get
from calls.supervise_listen import asupervise_listen_offer

MAX_OFFER_BYTES = 64 * 1024


def _error(exc: ApplicationError) -> JsonResponse:
    return JsonResponse(
        error_body(exc.code, exc.message, exc.details), status=exc.http_status
    )


def _offer_sdp(request: HttpRequest) -> str:
    if len(request.body) > MAX_OFFER_BYTES:
        raise ApplicationError(
            "The offer is too large.", code=ErrorCode.VALIDATION, http_status=400
        )
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = None
    sdp = body.get("sdp") if isinstance(body, dict) else None
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise ApplicationError(
            'Send {"sdp": "<offer>"} as JSON.',
            code=ErrorCode.VALIDATION,
            http_status=400,
        )
    return sdp


@login_required
@require_POST
async def supervise_offer(request: HttpRequest, pk: int) -> JsonResponse:
    """A supervisor's offer to listen to call ``pk`` → the bridge's answer."""
    user = await request.auser()
    try:
        call = await sync_to_async(call_get)(user=user, call_id=pk)
    except CallSession.DoesNotExist:
        return _error(
            ApplicationError("No such call.", code=ErrorCode.NOT_FOUND, http_status=404)
        )
    try:
        sdp = _offer_sdp(request)
        answer = await asupervise_listen_offer(call=call, user=user, sdp=sdp)
    except ApplicationError as exc:
        return _error(exc)
    return JsonResponse(answer)
