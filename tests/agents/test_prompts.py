from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from agents.models import AgentProfile
from agents.prompts import (
    KNOWN_VARIABLES,
    PromptRenderError,
    render_template,
    template_variables,
    validate_template,
)
from agents.services import agent_profile_save, agent_render_prompts
from tests.agents.factories import AgentProfileFactory


def test_render_fills_every_variable_and_leaves_japanese_untouched():
    """Placeholders are replaced; everything else, Japanese and braces, stays as written."""
    template = (
        "こんにちは、{{company_name}}の{{ representative_name }}です。{単独}も残る。"
    )
    out = render_template(
        template, {"company_name": "株式会社テスト", "representative_name": "佐藤"}
    )
    assert out == "こんにちは、株式会社テストの佐藤です。{単独}も残る。"
    assert "{{" not in out


def test_render_with_missing_value_raises_naming_it():
    """A missing or empty value raises; `{{...}}` never reaches the output."""
    with pytest.raises(PromptRenderError) as excinfo:
        render_template(
            "{{company_name}} {{customer_name}}",
            {"company_name": "A", "customer_name": ""},
        )
    assert excinfo.value.missing == ["customer_name"]
    assert "customer_name" in str(excinfo.value)


def test_unknown_variable_fails_validation_naming_it():
    with pytest.raises(ValidationError) as excinfo:
        validate_template("{{company_name}}と{{favourite_colour}}")
    assert "{{favourite_colour}}" in excinfo.value.messages[0]


def test_extra_variables_allowed_when_declared():
    validate_template("{{plan}}", extra_variables=["plan"])


def test_template_variables_in_order_without_duplicates():
    assert template_variables("{{a}}{{b}}{{a}}") == ["a", "b"]


@pytest.mark.django_db
def test_saving_a_profile_with_unknown_variable_fails_on_the_field():
    """Saving through the service reports the field and the variable."""
    agent = AgentProfileFactory.build(
        organization=AgentProfileFactory().organization,
        instructions_template="{{company_name}} {{nope}}",
    )
    with pytest.raises(ValidationError) as excinfo:
        agent_profile_save(agent=agent)
    assert "instructions_template" in excinfo.value.message_dict
    assert "{{nope}}" in excinfo.value.message_dict["instructions_template"][0]


@pytest.mark.django_db
def test_profile_render_uses_organisation_name_and_contact_values():
    agent = AgentProfileFactory(
        instructions_template="{{company_name}}: {{customer_name}}様",
        greeting_template="{{service_name}}",
    )
    instructions, greeting = agent_render_prompts(
        agent=agent, contact_variables={"customer_name": "山田"}
    )
    assert instructions == f"{agent.organization.name}: 山田様"
    assert greeting == "テストサービス"


@pytest.mark.django_db
def test_profile_render_without_contact_value_raises():
    agent = AgentProfileFactory(instructions_template="{{customer_name}}様")
    with pytest.raises(PromptRenderError):
        agent_render_prompts(agent=agent)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("voice", "nova"),
        ("speed", 1.6),
        ("speed", 0.2),
        ("model", "gpt-4"),
        ("enabled_tools", ["rm_rf"]),
    ],
)
def test_profile_validation_rejects_out_of_range_settings(field, value):
    """GA voices and the 0.25–1.5 speed range (PROTOCOL A2) are enforced."""
    agent = AgentProfileFactory()
    setattr(agent, field, value)
    with pytest.raises(ValidationError) as excinfo:
        agent.full_clean()
    assert field in excinfo.value.message_dict


def test_known_variables_cover_spec():
    assert set(KNOWN_VARIABLES) >= {
        "company_name",
        "service_name",
        "representative_name",
        "self_introduction",
        "service_description",
        "customer_name",
    }
    assert AgentProfile._meta.get_field("speed")
