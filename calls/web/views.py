"""Pages and signalling of the web voice channel (F-74).

`/agents/<id>/try/` (operators, session auth) and `/talk/<public id>/` (public, when
the profile allows it) render the same call page. Its script POSTs the SDP offer as
JSON to the page's `offer/` URL (CSRF-protected; the public page adds its signed
token) and gets `{"type": "answer", "sdp": …, "call_id": …}` back; errors use the
API's error body. Views validate, call one service, and answer.
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from agents.models import AgentProfile, Customer
from agents.selectors import agent_list, customer_list
from callcenter.errors import ApplicationError, ErrorCode, error_body
from calls.web.selectors import public_agent_get, web_call_customers
from calls.web.services import public_rate_check, web_call_create
from calls.web.tokens import (
    PublicTokenInvalid,
    public_token_check,
    public_token_issue,
)
from realtime.web_calls import web_call_answer

MAX_OFFER_BYTES = 64 * 1024


def _error(exc: ApplicationError) -> JsonResponse:
    return JsonResponse(
        error_body(exc.code, exc.message, exc.details), status=exc.http_status
    )


def _offer_sdp(request: HttpRequest) -> tuple[str, dict[str, Any]]:
    """The offer's SDP and the rest of the JSON body; ApplicationError if unusable."""
    if len(request.body) > MAX_OFFER_BYTES:
        raise ApplicationError("The offer is too large.", code=ErrorCode.VALIDATION)
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("type", "offer") != "offer":
        raise ApplicationError(
            'Send {"type": "offer", "sdp": …} as JSON.',
            code=ErrorCode.VALIDATION,
            http_status=400,
        )
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise ApplicationError(
            "The offer has no SDP.", code=ErrorCode.VALIDATION, http_status=400
        )
    return sdp, body


def _page_context(
    agent: AgentProfile, *, offer_url: str, public: bool
) -> dict[str, Any]:
    return {
        "agent": agent,
        "offer_url": offer_url,
        "public": public,
        "ice_servers": settings.WEBRTC_ICE_SERVERS,
    }


# ------------------------------------------------------------------ operators


def _operator_agent(request: HttpRequest, pk: int) -> AgentProfile:
    try:
        return agent_list(user=request.user).get(pk=pk)
    except AgentProfile.DoesNotExist:
        raise Http404("No such agent") from None


@login_required
@require_GET
def try_page(request: HttpRequest, pk: int) -> HttpResponse:
    """Talk to an agent from the browser microphone (F-41, F-74)."""
    agent = _operator_agent(request, pk)
    context = _page_context(
        agent,
        offer_url=reverse("web:try-offer", kwargs={"pk": agent.pk}),
        public=False,
    )
    context["customers"] = web_call_customers(agent=agent)
    return render(request, "calls/web_call.html", context)


def _try_call_create(request: HttpRequest, pk: int, body: dict[str, Any]) -> Any:
    agent = _operator_agent(request, pk)
    customer = None
    if body.get("customer_id"):
        try:
            customer = customer_list(user=request.user).get(pk=int(body["customer_id"]))
        except (Customer.DoesNotExist, ValueError, TypeError):
            raise ApplicationError(
                "No such customer.", code=ErrorCode.NOT_FOUND, http_status=404
            ) from None
    return web_call_create(agent=agent, operator=request.user, customer=customer)


@login_required
@require_POST
async def try_offer(request: HttpRequest, pk: int) -> JsonResponse:
    """The try page's offer → a web call and our SDP answer."""
    try:
        sdp, body = _offer_sdp(request)
        call = await sync_to_async(_try_call_create)(request, pk, body)
        answer = await web_call_answer(call=call, offer_sdp=sdp)
    except ApplicationError as exc:
        return _error(exc)
    answer["monitor_url"] = reverse("calls:detail", kwargs={"pk": call.pk})
    return JsonResponse(answer)


# ------------------------------------------------------------------ the public


@require_GET
def talk_page(request: HttpRequest, public_id: str) -> HttpResponse:
    """The public page of an agent whose profile allows web calls (no login)."""
    agent = public_agent_get(public_id=public_id)
    if agent is None:
        raise Http404("No such page")
    context = _page_context(
        agent,
        offer_url=reverse("web:talk-offer", kwargs={"public_id": public_id}),
        public=True,
    )
    context["public_token"] = public_token_issue(public_id=public_id)
    response = render(request, "calls/web_call.html", context)
    response["Cache-Control"] = "no-store"  # the token inside is short-lived
    return response


def _talk_call_create(
    request: HttpRequest, public_id: str, body: dict[str, Any]
) -> Any:
    agent = public_agent_get(public_id=public_id)
    if agent is None:
        raise ApplicationError(
            "No such page.", code=ErrorCode.NOT_FOUND, http_status=404
        )
    try:
        public_token_check(token=str(body.get("token") or ""), public_id=public_id)
    except PublicTokenInvalid as exc:
        raise ApplicationError(
            f"Reload the page: {exc}.",
            code=ErrorCode.PERMISSION_DENIED,
            http_status=403,
            details={"expired": exc.expired},
        ) from None
    client_ip = request.META.get("REMOTE_ADDR", "")
    public_rate_check(client_ip=client_ip)
    return web_call_create(agent=agent, public=True, client_ip=client_ip)


@require_POST
async def talk_offer(request: HttpRequest, public_id: str) -> JsonResponse:
    """The public page's offer (signed token, rate-limited per IP, capped per agent)."""
    try:
        sdp, body = _offer_sdp(request)
        call = await sync_to_async(_talk_call_create)(request, public_id, body)
        answer = await web_call_answer(call=call, offer_sdp=sdp)
    except ApplicationError as exc:
        return _error(exc)
    return JsonResponse(answer)
