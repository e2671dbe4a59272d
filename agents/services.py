"""Writes to agents' data and the prompt values for a call (HackSoft services)."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError
from django.utils.translation import gettext_lazy as _

from agents.models import AgentProfile, Appointment, Customer
from agents.prompts import render_template


@transaction.atomic
def agent_profile_save(*, agent: AgentProfile) -> AgentProfile:
    """Validate every field (templates, voice, speed, phone) and save.

    Public web calls (F-74) get the profile a public id the first time they are on.
    """
    agent.full_clean()
    if agent.public_web_calls and not agent.public_id:
        agent.public_id = secrets.token_urlsafe(12)
    agent.save()
    return agent


def agent_profile_delete(*, agent: AgentProfile) -> None:
    """Delete a profile; its calls and numbers keep their history without it.

    A profile that campaigns use is kept: 409 `conflict` naming them.
    """
    from callcenter.errors import ApplicationError, ErrorCode

    try:
        agent.delete()
    except ProtectedError as exc:
        names = sorted({str(obj) for obj in exc.protected_objects})
        raise ApplicationError(
            "The agent profile is used by campaigns: " + ", ".join(names) + ".",
            code=ErrorCode.CONFLICT,
            http_status=409,
            details={"campaigns": names},
        ) from exc


@transaction.atomic
def customer_save(*, customer: Customer) -> Customer:
    """Validate (E.164 phone, one customer per number) and save."""
    customer.full_clean()
    customer.save()
    return customer


def customer_delete(*, customer: Customer) -> None:
    """Delete a customer; their calls and appointments stay, unlinked."""
    customer.delete()


@transaction.atomic
def appointment_save(*, appointment: Appointment) -> Appointment:
    """Validate (customer and call of the same organisation) and save."""
    errors: dict[str, Any] = {}
    org_id = appointment.organization_id
    if appointment.customer_id and appointment.customer.organization_id != org_id:
        errors["customer"] = _("The customer belongs to another organisation.")
    if appointment.call_id and appointment.call.organization_id != org_id:
        errors["call"] = _("The call belongs to another organisation.")
    if errors:
        raise ValidationError(errors)
    appointment.full_clean()
    appointment.save()
    return appointment


def appointment_delete(*, appointment: Appointment) -> None:
    """Delete an appointment."""
    appointment.delete()


def agent_prompt_values(
    *, agent: AgentProfile, contact_variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The values a call's templates are rendered with: profile, then contact fields."""
    values: dict[str, Any] = dict(agent.profile_variables())
    values.update(
        {k: v for k, v in (contact_variables or {}).items() if v not in (None, "")}
    )
    return values


def agent_render_prompts(
    *, agent: AgentProfile, contact_variables: dict[str, Any] | None = None
) -> tuple[str, str]:
    """Render (instructions, greeting) for a call; raises PromptRenderError if unfilled."""
    values = agent_prompt_values(agent=agent, contact_variables=contact_variables)
    return (
        render_template(agent.instructions_template, values),
        render_template(agent.greeting_template, values),
    )
