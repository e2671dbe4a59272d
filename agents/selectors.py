"""Reads of organisations' data, scoped to the asker (F-01)."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet

from agents.models import AgentProfile, Appointment, Customer, PhoneNumber

M = TypeVar("M", bound=Model)


def user_organization_id(user: Any) -> int | None:
    """The organisation a user works for; None for superusers and strangers."""
    return getattr(user, "organization_id", None)


def organization_scope(
    queryset: QuerySet[M], *, user: Any, path: str = "organization"
) -> QuerySet[M]:
    """Limit a queryset to the user's organisation; superusers see everything.

    A user with no organisation who is not a superuser sees nothing.
    """
    if getattr(user, "is_superuser", False):
        return queryset
    org_id = user_organization_id(user)
    if org_id is None:
        return queryset.none()
    return queryset.filter(**{f"{path}_id": org_id})


def phone_number_route(*, number: str) -> PhoneNumber | None:
    """The active phone number record for an inbound call's `To` (F-02)."""
    return (
        PhoneNumber.objects.select_related(
            "organization", "agent", "agent__organization"
        )
        .filter(number=number, is_active=True)
        .first()
    )


def customer_find(*, organization_id: int, phone_number: str) -> Customer | None:
    """The organisation's customer with this E.164 number, if any (F-06)."""
    return Customer.objects.filter(
        organization_id=organization_id, phone_number=phone_number
    ).first()


def agent_list(*, user: Any) -> QuerySet[AgentProfile]:
    """Agent profiles the user may see."""
    return organization_scope(
        AgentProfile.objects.select_related("organization"), user=user
    )


def customer_list(*, user: Any) -> QuerySet[Customer]:
    """Customers the user may see."""
    return organization_scope(Customer.objects.all(), user=user)


def appointment_list(*, user: Any) -> QuerySet[Appointment]:
    """Appointments the user may see, with their customer."""
    return organization_scope(Appointment.objects.select_related("customer"), user=user)
