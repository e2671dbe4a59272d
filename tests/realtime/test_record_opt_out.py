"""The agent's record_opt_out tool (F-65): a refusal puts the number on the list."""

from __future__ import annotations

import pytest

from agents.models import TOOL_NAMES
from calls.campaigns.models import Attempt, Contact, DoNotCall
from calls.models import CallEvent, CallSession
from realtime.tools import REGISTRY, ToolContext, _opt_out
from tests.calls.campaigns.factories import CampaignFactory, ContactFactory
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db

CUSTOMER = "+819012345678"


@pytest.fixture
def campaign_call() -> CallSession:
    campaign = CampaignFactory(status="running")
    contact = ContactFactory(
        campaign=campaign, phone=CUSTOMER, status=Contact.Status.IN_CALL
    )
    call = CallSessionFactory(
        organization=campaign.organization,
        agent=campaign.agent,
        direction=CallSession.Direction.OUTBOUND,
        from_number="+815012345678",
        to_number=CUSTOMER,
    )
    Attempt.objects.create(contact=contact, number=1, call=call, state="answered")
    return call


def ctx(call: CallSession, caller_number: str = CUSTOMER) -> ToolContext:
    return ToolContext(
        call_id=call.pk,
        organization_id=call.organization_id,
        caller_number=caller_number,
    )


def test_tool_is_listed_and_takes_the_customers_words() -> None:
    """Registered, in TOOL_NAMES, and a checkbox of the agent settings page."""
    from agents.forms import AgentProfileForm

    assert "record_opt_out" in TOOL_NAMES
    choices = dict(AgentProfileForm.base_fields["enabled_tools"].choices)  # type: ignore[attr-defined]
    assert "record_opt_out" in choices
    schema = REGISTRY["record_opt_out"].schema()
    assert schema["parameters"]["required"] == ["customer_words"]


def test_refusal_lists_the_number_marks_the_contact_and_records_an_event(
    campaign_call: CallSession,
) -> None:
    """「もう電話しないで」: on the list (source call, this call), contact opted out."""
    other_campaign_contact = ContactFactory(
        campaign=CampaignFactory(organization=campaign_call.organization),
        phone=CUSTOMER,
    )
    result = _opt_out(ctx(campaign_call), "もう電話しないでください", "")
    assert result.output["ok"] is True
    entry = DoNotCall.objects.get(organization=campaign_call.organization)
    assert (entry.phone, entry.source, entry.call_id) == (
        CUSTOMER,
        DoNotCall.Source.CALL,
        campaign_call.pk,
    )
    assert entry.reason == "もう電話しないでください"
    contact = Contact.objects.get(attempt_rows__call=campaign_call)
    assert contact.status == Contact.Status.OPTED_OUT
    other_campaign_contact.refresh_from_db()
    assert other_campaign_contact.status == Contact.Status.OPTED_OUT
    event = CallEvent.objects.get(call=campaign_call, type="opt-out")
    assert event.payload["dnc_id"] == entry.pk
    assert event.payload["contact_id"] == contact.pk


@pytest.mark.parametrize(
    "words", ["今は忙しい", "家族に相談します", "また今度", "後で"]
)
def test_postponement_is_not_listed(campaign_call: CallSession, words: str) -> None:
    """A postponement adds nothing and tells the model to offer a later call."""
    result = _opt_out(ctx(campaign_call), words, "")
    assert result.output["ok"] is False
    assert "改めてお電話" in result.output["error"]
    assert not DoNotCall.objects.exists()
    contact = Contact.objects.get(attempt_rows__call=campaign_call)
    assert contact.status == Contact.Status.IN_CALL
    assert CallEvent.objects.filter(
        call=campaign_call, type="opt-out-declined"
    ).exists()


def test_number_comes_from_the_call_when_the_context_has_none() -> None:
    """Inbound: the caller is the from number."""
    call = CallSessionFactory(from_number="+819087654321")
    result = _opt_out(ctx(call, caller_number=""), "迷惑です", "")
    assert result.output["ok"] is True
    assert DoNotCall.objects.get().phone == "+819087654321"


def test_another_organisations_call_is_not_found(campaign_call: CallSession) -> None:
    wrong = ToolContext(call_id=campaign_call.pk, organization_id=0)
    assert _opt_out(wrong, "迷惑です", "").output["ok"] is False
    assert not DoNotCall.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_tool_runs_through_the_registry() -> None:
    """The async tool, as the bridge calls it; empty words are refused."""
    from asgiref.sync import sync_to_async

    call = await sync_to_async(CallSessionFactory)(from_number="+819011112222")
    tool = REGISTRY["record_opt_out"].func
    empty = await tool(ctx(call, "+819011112222"), {"customer_words": " "})
    assert empty.output["ok"] is False
    done = await tool(ctx(call, "+819011112222"), {"customer_words": "結構です"})
    assert done.output["ok"] is True
    assert await DoNotCall.objects.filter(phone="+819011112222").aexists()
