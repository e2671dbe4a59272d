"""Creating and admitting web calls (F-74): operators' try calls and public calls.

A web call is a CallSession with direction `web`, created `initiated` with its
one-time stream token; the WebRTC transport spends the token when the browser's
data channel opens, exactly as Twilio's `start` does for a phone call.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from rest_framework import status

from agents.models import AgentProfile, Customer
from callcenter import draining
from callcenter.errors import ApplicationError, ErrorCode
from calls.models import CallSession
from calls.selectors import live_call_count
from calls.services import call_event_record
from calls.web.selectors import web_calls_live_count

_RATE_UNITS = {
    "s": 1,
    "sec": 1,
    "min": 60,
    "m": 60,
    "hour": 3600,
    "h": 3600,
    "day": 86400,
}


def rate_parse(rate: str) -> tuple[int, int]:
    """``"5/min"`` → (5, 60): requests allowed per window of seconds."""
    count, _, unit = rate.partition("/")
    try:
        return int(count), _RATE_UNITS[unit.strip()]
    except (ValueError, KeyError):
        raise ValueError(f"rate {rate!r} is not N/s, N/min, N/hour or N/day") from None


def public_rate_check(*, client_ip: str, now: float | None = None) -> None:
    """Count one public offer from ``client_ip``; 429 past PUBLIC_WEB_CALL_RATE.

    A sliding window: the times of the address's recent offers are kept in Django's
    cache (per process with the default local-memory cache; configure a shared
    cache when several processes serve /talk/).
    """
    allowed, window = rate_parse(settings.PUBLIC_WEB_CALL_RATE)
    now = time.time() if now is None else now
    key = f"web-call-offers:{client_ip}"
    recent = [t for t in cache.get(key, []) if t > now - window]
    if len(recent) >= allowed:
        raise ApplicationError(
            "Too many calls from this address; try again later.",
            code=ErrorCode.THROTTLED,
            http_status=status.HTTP_429_TOO_MANY_REQUESTS,
            details={
                "rate": settings.PUBLIC_WEB_CALL_RATE,
                "retry_after_s": round(recent[0] + window - now),
            },
        )
    cache.set(key, [*recent, now], timeout=window + 1)


@transaction.atomic
def web_call_create(
    *,
    agent: AgentProfile,
    operator: object | None = None,
    customer: Customer | None = None,
    public: bool = False,
    client_ip: str = "",
) -> CallSession:
    """Admit and create a web call to ``agent``.

    Refused (503) while this process drains, when the service is at
    MAX_LIVE_CALLS, or, for a public call, when the agent already has
    ``public_web_max_calls`` live web calls.
    ``customer`` (operators only) plays the caller: their number reaches the tools.
    """
    if not agent.realtime_enabled or not settings.USE_OPENAI_REALTIME:
        raise ApplicationError(
            "The AI is switched off for this agent.", code=ErrorCode.NOT_CONFIGURED
        )
    if draining.is_draining():
        # Its media would live in this process, which is about to stop (F-69).
        raise ApplicationError(
            "This server is restarting; please call again in a moment.",
            code=ErrorCode.CONFLICT,
            http_status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if live_call_count() >= settings.MAX_LIVE_CALLS:
        raise ApplicationError(
            "Every line is busy; try again in a moment.",
            code=ErrorCode.CONFLICT,
            http_status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    # Lock the agent's row so two public offers cannot both take the last place.
    AgentProfile.objects.select_for_update().filter(pk=agent.pk).first()
    if public and web_calls_live_count(agent=agent) >= agent.public_web_max_calls:
        raise ApplicationError(
            "This agent is busy with other web calls; try again in a moment.",
            code=ErrorCode.CONFLICT,
            http_status=status.HTTP_503_SERVICE_UNAVAILABLE,
            details={"max_calls": agent.public_web_max_calls},
        )
    if customer is not None and customer.organization_id != agent.organization_id:
        raise ApplicationError("No such customer.", code=ErrorCode.NOT_FOUND)
    call = CallSession.objects.create(
        organization_id=agent.organization_id,
        agent=agent,
        customer=customer,
        direction=CallSession.Direction.WEB,
        from_number=str(customer.phone_number) if customer is not None else "",
        contact_variables={"customer_name": customer.name}
        if customer is not None and customer.name
        else {},
    )
    call_event_record(
        call=call,
        type="web-call",
        payload={
            "public": public,
            "operator": getattr(operator, "pk", None),
            "client_ip": client_ip if public else "",
        },
    )
    return call
