from __future__ import annotations

import pytest
from django.core.management import call_command

from agents.models import AgentProfile, Operator, Organization, PhoneNumber
from agents.services import agent_render_prompts

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_has_the_fixed_values(client):
    call_command("seed_demo")
    call_command("seed_demo")
    org = Organization.objects.get(name="Demo")
    assert Organization.objects.filter(name="Demo").count() == 1
    number = PhoneNumber.objects.get(number="+815012345678")
    assert number.organization == org
    agent = number.agent
    assert AgentProfile.objects.filter(organization=org).count() == 3
    legacy = PhoneNumber.objects.get(number="+815012345679").agent
    assert legacy.rollout_percentage == 0  # every call on the legacy path (F-72)
    assert legacy.instructions_template == agent.instructions_template
    legacy.full_clean()
    assert agent.handoff_phone_number == "+818070239355"
    assert "{{company_name}}" in agent.instructions_template
    instructions, greeting = agent_render_prompts(agent=agent)
    assert "{{" not in instructions + greeting
    assert "デモ商事" in greeting
    sales = AgentProfile.objects.get(organization=org, name="営業デモ")
    instructions, greeting = agent_render_prompts(
        agent=sales, contact_variables={"customer_name": "山田 太郎"}
    )
    assert "山田 太郎様" in instructions and "山田 太郎様" in greeting
    assert sales.voicemail_message and sales.ai_speaks_first
    user = Operator.objects.get(username="demo")
    assert user.organization == org and user.is_staff and not user.is_superuser
    assert client.login(username="demo", password="demo")
    assert client.get("/admin/calls/callsession/").status_code == 200
    assert client.get("/admin/agents/agentprofile/").status_code == 200


def test_seed_demo_puts_the_demo_user_in_supervisors_once():
    """Group "Supervisors" holds calls.supervise_call; a second run adds nothing."""
    from django.contrib.auth.models import Group

    call_command("seed_demo")
    call_command("seed_demo")
    group = Group.objects.get(name="Supervisors")
    assert list(group.permissions.values_list("codename", flat=True)) == [
        "supervise_call"
    ]
    user = Operator.objects.get(username="demo")
    assert list(user.groups.values_list("name", flat=True)) == ["Supervisors"]
    # The permission comes through the group, not only the direct grants.
    user.user_permissions.clear()
    user = Operator.objects.get(pk=user.pk)  # no cached permissions
    assert user.has_perm("calls.supervise_call")
