"""Reads of the web voice channel, organisation-scoped where an operator asks."""

from __future__ import annotations

from agents.models import AgentProfile, Customer
from calls.models import CallSession
from calls.status import LIVE


def public_agent_get(*, public_id: str) -> AgentProfile | None:
    """The agent whose public page this is, if public web calls are on."""
    return (
        AgentProfile.objects.select_related("organization")
        .filter(public_id=public_id, public_web_calls=True)
        .first()
    )


def web_calls_live_count(*, agent: AgentProfile) -> int:
    """Web calls of ``agent`` in a live state (the public page's cap counts these)."""
    return CallSession.objects.filter(
        agent=agent, direction=CallSession.Direction.WEB, status__in=LIVE
    ).count()


def web_call_customers(*, agent: AgentProfile) -> list[Customer]:
    """The customers an operator may play on the try page (the agent's organisation)."""
    return list(
        Customer.objects.filter(organization_id=agent.organization_id).order_by("name")[
            :200
        ]
    )
