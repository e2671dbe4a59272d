"""Campaign calls' bridge config (F-65, F-66): the disclosure comes first."""

from __future__ import annotations

import pytest

from calls.campaigns.models import Attempt
from calls.models import CallSession
from realtime.call_setup import OPT_OUT_RULE, bridge_config_build
from tests.calls.campaigns.factories import CampaignFactory, ContactFactory
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db


def campaign_call(**campaign_fields: object) -> CallSession:
    campaign = CampaignFactory(**campaign_fields)
    agent = campaign.agent
    agent.greeting_template = "{{customer_name}}様、少しだけお時間よろしいでしょうか。"
    agent.ai_speaks_first = False
    agent.enabled_tools = ["end_call"]
    agent.save()
    contact = ContactFactory(
        campaign=campaign,
        phone="+819012345678",
        name="山田",
        variables={"plan": "ゴールド"},
    )
    call = CallSessionFactory(
        organization=campaign.organization,
        agent=agent,
        direction=CallSession.Direction.OUTBOUND,
        from_number="+815012345678",
        to_number=contact.phone,
        contact_variables={"customer_name": "山田"},
    )
    Attempt.objects.create(contact=contact, number=1, call=call)
    return call


def test_campaign_call_opens_with_the_rendered_disclosure() -> None:
    """First words: the opening (business, caller, product), then the greeting."""
    config = bridge_config_build(call=campaign_call())
    opening = "株式会社サンプルの佐藤と申します。光回線のご案内でお電話いたしました。"
    assert config.greeting is not None
    said = config.greeting.split("「", 1)[1]
    assert said.startswith(opening)
    assert said == opening + "山田様、少しだけお時間よろしいでしょうか。」"
    assert "{{" not in config.greeting


def test_opening_uses_the_contacts_variables() -> None:
    """A contact field in the opening is filled from the contact."""
    call = campaign_call(
        opening="{{business_name}}の{{caller_name}}です。{{customer_name}}様に"
        "{{product}}({{plan}}プラン)のご案内です。"
    )
    config = bridge_config_build(call=call)
    assert config.greeting is not None
    assert "山田様に光回線(ゴールドプラン)のご案内です。" in config.greeting


def test_campaign_call_speaks_first_with_opt_out_rule_and_tool() -> None:
    """The AI speaks first; the opt-out rule and tool are there even if not enabled."""
    config = bridge_config_build(call=campaign_call())
    assert config.session.instructions.endswith(OPT_OUT_RULE)
    assert "record_opt_out" in config.enabled_tools
    assert "record_opt_out" in [t.name for t in config.session.tools]
    assert "end_call" in config.enabled_tools
    assert config.caller_number == "+819012345678"


def test_opening_alone_when_the_agent_has_no_greeting() -> None:
    call = campaign_call()
    call.agent.greeting_template = ""
    call.agent.save()
    config = bridge_config_build(call=call)
    assert config.greeting is not None
    assert config.greeting.endswith("ご案内でお電話いたしました。」")


def test_call_outside_a_campaign_is_unchanged() -> None:
    """No campaign: the agent's own greeting, no opt-out rule or tool added."""
    call = CallSessionFactory(direction=CallSession.Direction.OUTBOUND)
    call.agent.enabled_tools = ["end_call"]
    call.agent.save()
    config = bridge_config_build(call=call)
    assert config.greeting is not None
    assert "お電話ありがとうございます" in config.greeting
    assert "ご案内でお電話" not in config.greeting
    assert OPT_OUT_RULE not in config.session.instructions
    assert config.enabled_tools == ("end_call",)


def test_a_campaign_call_on_the_legacy_path_gets_the_same_prompt_and_tools() -> None:
    """The legacy path (F-72) renders through the same `call_prompts`: the
    disclosure opens the call, the opt-out rule and `record_opt_out` are there."""
    from calls.legacy.entry import call_path_set_legacy, legacy_entry_twiml
    from calls.legacy.turns import TurnPrep, legacy_turn_prepare

    call = campaign_call()
    call_path_set_legacy(call=call, reason="outside-rollout")
    first = legacy_entry_twiml(call=call)
    bridge = bridge_config_build(call=call)
    opening = bridge.greeting.split("「", 1)[1].rsplit("」", 1)[0]
    assert opening in first  # the same disclosure + greeting, said by <Say>
    prep = legacy_turn_prepare(
        call_id=call.pk, event="gather", speech="もう電話しないで", confidence="0.9"
    )
    assert isinstance(prep, TurnPrep)
    assert prep.instructions == bridge.session.instructions
    assert prep.instructions.endswith(OPT_OUT_RULE)
    assert {t["name"] for t in prep.tools} == {"end_call", "record_opt_out"}
    assert prep.ctx.caller_number == "+819012345678"
    assert prep.input_items[-1] == {"role": "user", "content": "もう電話しないで"}
