"""Writes to agents' data and the prompt values for a call (HackSoft services)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from agents.models import AgentProfile
from agents.prompts import render_template


@transaction.atomic
def agent_profile_save(*, agent: AgentProfile) -> AgentProfile:
    """Validate every field (templates, voice, speed, phone) and save."""
    agent.full_clean()
    agent.save()
    return agent


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
