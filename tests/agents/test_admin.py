from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse

from agents.models import Operator
from calls.campaigns.models import DoNotCall
from calls.models import CallEvent, Recording
from tests.agents.factories import (
    AgentProfileFactory,
    CustomerFactory,
    OperatorFactory,
    OrganizationFactory,
    PhoneNumberFactory,
)
from tests.calls.campaign_factories import (
    AttemptFactory,
    CampaignFactory,
    ContactFactory,
)
from tests.calls.factories import CallSessionFactory, TranscriptEntryFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    """Two organisations with one of everything each."""
    objects = {}
    for key in ("a", "b"):
        org = OrganizationFactory()
        agent = AgentProfileFactory(organization=org)
        call = CallSessionFactory(organization=org, agent=agent)
        objects[key] = {
            "organization": org,
            "agentprofile": agent,
            "phonenumber": PhoneNumberFactory(organization=org, agent=agent),
            "customer": CustomerFactory(organization=org),
            "callsession": call,
            "transcriptentry": TranscriptEntryFactory(call=call),
            "callevent": CallEvent.objects.create(call=call, type="webhook"),
            "recording": Recording.objects.create(call=call, source="bridge"),
        }
        from agents.models import Appointment

        objects[key]["appointment"] = Appointment.objects.create(
            organization=org, call=call, date="2026-12-01", time="10:00", name="x"
        )
        campaign = CampaignFactory(organization=org, agent=agent)
        contact = ContactFactory(campaign=campaign)
        objects[key].update(
            campaign=campaign,
            contact=contact,
            attempt=AttemptFactory(contact=contact, call=call),
            donotcall=DoNotCall.objects.create(
                organization=org, phone="+819011112222", source="operator"
            ),
        )
    return objects


def _admin_models():
    return [m for m in admin.site._registry if m._meta.app_label in ("agents", "calls")]


def test_every_model_is_registered():
    names = {m._meta.model_name for m in _admin_models()}
    assert names >= {
        "organization",
        "operator",
        "agentprofile",
        "phonenumber",
        "customer",
        "appointment",
        "callsession",
        "transcriptentry",
        "callevent",
        "recording",
        "campaign",
        "contact",
        "attempt",
        "donotcall",
    }


def test_superuser_changelists_and_change_pages_return_200(client, world):
    """Every changelist, add page and change page renders for a superuser."""
    su = Operator.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(su)
    for model in _admin_models():
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert client.get(url).status_code == 200, url
        assert client.get(url, {"q": "x"}).status_code == 200, url
        obj = world["a"].get(meta.model_name) or (
            su if meta.model_name == "operator" else None
        )
        assert obj is not None, meta.model_name
        change = reverse(
            f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk]
        )
        assert client.get(change).status_code == 200, change


def _operator_with_all_perms(org):
    operator = OperatorFactory(organization=org)
    operator.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["agents", "calls"])
    )
    return Operator.objects.get(pk=operator.pk)


def test_operator_sees_only_own_organisation(client, world):
    """An operator of A sees A's rows in every changelist and none of B's."""
    operator = _operator_with_all_perms(world["a"]["organization"])
    client.force_login(operator)
    for name in (
        "agentprofile",
        "phonenumber",
        "customer",
        "callsession",
        "transcriptentry",
        "callevent",
        "recording",
        "appointment",
        "organization",
        "campaign",
        "contact",
        "attempt",
        "donotcall",
    ):
        app = (
            "agents"
            if name
            in (
                "agentprofile",
                "phonenumber",
                "customer",
                "appointment",
                "organization",
            )
            else "calls"
        )
        response = client.get(reverse(f"admin:{app}_{name}_changelist"))
        assert response.status_code == 200, name
        shown = {obj.pk for obj in response.context["cl"].result_list}
        assert world["a"][name].pk in shown, name
        assert world["b"][name].pk not in shown, name


def test_operator_cannot_open_other_organisation_rows_by_url(client, world):
    """Opening B's change page by URL does not show it (Django redirects with 'does not exist')."""
    operator = _operator_with_all_perms(world["a"]["organization"])
    client.force_login(operator)
    for name, obj in world["b"].items():
        app = obj._meta.app_label
        url = reverse(f"admin:{app}_{name}_change", args=[obj.pk])
        response = client.get(url, follow=True)
        assert obj.pk not in {getattr(response.context.get("original"), "pk", None)}, (
            name
        )
        assert response.redirect_chain or response.status_code in (403, 404), name


def test_operator_cannot_pick_other_organisation_in_forms(client, world):
    """Foreign-key choices offered to an operator are limited to their organisation."""
    operator = _operator_with_all_perms(world["a"]["organization"])
    client.force_login(operator)
    response = client.get(reverse("admin:agents_phonenumber_add"))
    agents = list(response.context["adminform"].form.fields["agent"].queryset)
    assert world["a"]["agentprofile"] in agents
    assert world["b"]["agentprofile"] not in agents
    assert "organization" not in response.context["adminform"].form.fields


def test_operator_add_assigns_own_organisation(client, world):
    operator = _operator_with_all_perms(world["a"]["organization"])
    client.force_login(operator)
    response = client.post(
        reverse("admin:agents_customer_add"),
        {"phone_number": "090-9999-0000", "name": "新規", "context": "{}"},
    )
    assert response.status_code == 302
    from agents.models import Customer

    created = Customer.objects.get(name="新規")
    assert created.organization == world["a"]["organization"]
    assert created.phone_number == "+819099990000"


def test_operator_cannot_manage_accounts(client, world):
    operator = _operator_with_all_perms(world["a"]["organization"])
    client.force_login(operator)
    url = reverse("admin:agents_operator_change", args=[operator.pk])
    assert client.post(url, {"is_superuser": "on"}).status_code == 403
    operator.refresh_from_db()
    assert not operator.is_superuser


def test_admin_handoff_action_hands_off_live_calls_and_reports_others(
    client, world, monkeypatch
):
    """The admin action runs the handoff service; a finished call is reported, not changed."""
    from calls.status import CallStatus

    monkeypatch.setattr(
        "handoff.services.twilio_call_create", lambda **_: "CA" + "e" * 32
    )
    monkeypatch.setattr("handoff.services.twilio_call_update", lambda **_: None)
    operator = _operator_with_all_perms(world["a"]["organization"])
    client.force_login(operator)
    live = world["a"]["callsession"]
    live.status = CallStatus.AI_RESPONDING
    live.save()
    from tests.calls.factories import CallSessionFactory

    done = CallSessionFactory(
        organization=live.organization, agent=live.agent, status=CallStatus.COMPLETED
    )
    response = client.post(
        reverse("admin:calls_callsession_changelist"),
        {"action": "hand_off", "_selected_action": [live.pk, done.pk]},
        follow=True,
    )
    texts = [str(m) for m in response.context["messages"]]
    live.refresh_from_db()
    assert live.status == CallStatus.TRANSFERRING
    assert live.handoff_agent_call_sid == "CA" + "e" * 32
    assert any("080****9355" in t for t in texts), texts
    assert any(f"#{done.pk}" in t for t in texts), texts
