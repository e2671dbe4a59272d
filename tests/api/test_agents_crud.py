"""Agent profiles, customers, appointments: CRUD with the settings page's validation."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from agents.models import AgentProfile, Appointment, Customer, Organization
from tests.agents.factories import AgentProfileFactory, CustomerFactory, OperatorFactory
from tests.api.conftest import assert_error, token_client
from tests.calls.factories import CallSessionFactory

AGENT = {
    "name": "受付",
    "instructions_template": "{{company_name}}の受付です。",
    "greeting_template": "お電話ありがとうございます。",
}


def test_agent_create_read_update_delete(api: APIClient, org: Organization) -> None:
    created = api.post(
        "/api/agents/",
        {
            **AGENT,
            "voice": "cedar",
            "speed": 1.25,
            "handoff_phone_number": "080-7023-9355",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["organization"] == org.pk
    assert body["handoff_phone_number"] == "+818070239355"
    agent_id = body["id"]

    assert api.get(f"/api/agents/{agent_id}/").json()["voice"] == "cedar"
    patched = api.patch(f"/api/agents/{agent_id}/", {"speed": 0.5}, format="json")
    assert patched.status_code == 200 and patched.json()["speed"] == 0.5
    replaced = api.put(
        f"/api/agents/{agent_id}/", {**AGENT, "name": "新受付"}, format="json"
    )
    assert replaced.status_code == 200 and replaced.json()["name"] == "新受付"
    assert api.get("/api/agents/").json()["count"] == 1

    assert api.delete(f"/api/agents/{agent_id}/").status_code == 204
    assert not AgentProfile.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"instructions_template": "{{company_name}} と {{favourite_colour}}"},
            "instructions_template",
        ),
        ({"greeting_template": "{{ nope }}"}, "greeting_template"),
        ({"voice": "robot"}, "voice"),
        ({"model": "gpt-4"}, "model"),
        ({"speed": 1.6}, "speed"),
        ({"speed": 0.2}, "speed"),
        ({"handoff_phone_number": "123"}, "handoff_phone_number"),
        ({"enabled_tools": ["launch_rockets"]}, "enabled_tools"),
        ({"handoff_dtmf_digit": "A"}, "handoff_dtmf_digit"),
        ({"name": ""}, "name"),
        ({"rollout_percentage": 101}, "rollout_percentage"),
    ],
)
def test_agent_validation_names_the_field(
    api: APIClient, org: Organization, change: dict[str, Any], field: str
) -> None:
    """The same rules as the settings page; nothing is saved on failure."""
    assert_error(
        api.post("/api/agents/", {**AGENT, **change}, format="json"),
        400,
        "validation_error",
        field,
    )
    agent = AgentProfileFactory(organization=org)
    assert_error(
        api.patch(f"/api/agents/{agent.pk}/", change, format="json"),
        400,
        "validation_error",
        field,
    )
    assert_error(
        api.put(f"/api/agents/{agent.pk}/", {**AGENT, **change}, format="json"),
        400,
        "validation_error",
        field,
    )
    assert AgentProfile.objects.count() == 1


def test_agent_name_unique_in_organisation(api: APIClient, org: Organization) -> None:
    AgentProfileFactory(organization=org, name="受付")
    assert_error(
        api.post("/api/agents/", AGENT, format="json"), 400, "validation_error", "name"
    )


def test_agent_cannot_move_or_be_created_in_another_organisation(
    api: APIClient, org: Organization, other_org: Organization
) -> None:
    response = api.post(
        "/api/agents/", {**AGENT, "organization": other_org.pk}, format="json"
    )
    assert_error(response, 400, "validation_error", "organization")
    agent = AgentProfileFactory(organization=org)
    response = api.patch(
        f"/api/agents/{agent.pk}/", {"organization": other_org.pk}, format="json"
    )
    assert_error(response, 400, "validation_error", "organization")


def test_superuser_chooses_the_organisation(other_org: Organization) -> None:
    root = token_client(OperatorFactory(organization=None, is_superuser=True))
    response = root.post("/api/agents/", AGENT, format="json")
    assert_error(response, 400, "validation_error", "organization")
    response = root.post(
        "/api/agents/", {**AGENT, "organization": other_org.pk}, format="json"
    )
    assert (
        response.status_code == 201 and response.json()["organization"] == other_org.pk
    )


def test_customer_crud_normalises_phone(api: APIClient, org: Organization) -> None:
    created = api.post(
        "/api/customers/",
        {
            "phone_number": "０９０-１２３４-５６７８",
            "name": "山田",
            "context": {"plan": "gold"},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    customer_id = created.json()["id"]
    assert created.json()["phone_number"] == "+819012345678"
    patched = api.patch(
        f"/api/customers/{customer_id}/", {"name": "山田太郎"}, format="json"
    )
    assert patched.json()["name"] == "山田太郎"
    assert api.delete(f"/api/customers/{customer_id}/").status_code == 204
    assert not Customer.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phone_number": "not a phone"}, "phone_number"),
        ({}, "phone_number"),
        ({"phone_number": "0311112222", "context": "notes"}, "context"),
        ({"phone_number": "0311112222", "context": {"a": "b\x00"}}, "context"),
        ({"phone_number": "0311112222", "name": "x" * 201}, "name"),
    ],
)
def test_customer_validation_names_the_field(
    api: APIClient, org: Organization, body: dict[str, Any], field: str
) -> None:
    assert_error(
        api.post("/api/customers/", body, format="json"), 400, "validation_error", field
    )
    customer = CustomerFactory(organization=org)
    assert_error(
        api.put(f"/api/customers/{customer.pk}/", body, format="json"),
        400,
        "validation_error",
        field,
    )


def test_customer_phone_unique_in_organisation(
    api: APIClient, org: Organization, other_org: Organization
) -> None:
    CustomerFactory(organization=org, phone_number="+81311112222")
    CustomerFactory(organization=other_org, phone_number="+81311119999")
    dup = api.post("/api/customers/", {"phone_number": "03-1111-2222"}, format="json")
    assert_error(dup, 400, "validation_error", "phone_number")
    # The same number in another organisation is no clash.
    ok = api.post("/api/customers/", {"phone_number": "03-1111-9999"}, format="json")
    assert ok.status_code == 201


def test_appointment_crud(api: APIClient, org: Organization) -> None:
    customer = CustomerFactory(organization=org)
    call = CallSessionFactory(organization=org)
    created = api.post(
        "/api/appointments/",
        {
            "customer": customer.pk,
            "call": call.pk,
            "date": "2026-02-03",
            "time": "14:30",
            "name": "内見",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    appointment_id = created.json()["id"]
    assert created.json()["time"] == "14:30:00"
    patched = api.patch(
        f"/api/appointments/{appointment_id}/", {"notes": "駐車場あり"}, format="json"
    )
    assert patched.json()["notes"] == "駐車場あり"
    assert api.delete(f"/api/appointments/{appointment_id}/").status_code == 204
    assert not Appointment.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer": "{foreign_customer}"}, "customer"),
        ({"call": "{foreign_call}"}, "call"),
        ({"date": "2026-13-40"}, "date"),
        ({"time": "25:00"}, "time"),
        ({"name": ""}, "name"),
    ],
)
def test_appointment_validation_names_the_field(
    api: APIClient,
    org: Organization,
    other_org: Organization,
    body: dict[str, Any],
    field: str,
) -> None:
    """Customer and call must be of your organisation; dates and times must parse."""
    foreign = {
        "{foreign_customer}": CustomerFactory(organization=other_org).pk,
        "{foreign_call}": CallSessionFactory(organization=other_org).pk,
    }
    body = {k: foreign.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    full = {"date": "2026-02-03", "time": "14:30", "name": "内見", **body}
    assert_error(
        api.post("/api/appointments/", full, format="json"),
        400,
        "validation_error",
        field,
    )
    appointment = Appointment.objects.create(
        organization=org, date="2026-01-01", time="09:00", name="x"
    )
    assert_error(
        api.patch(f"/api/appointments/{appointment.pk}/", body, format="json"),
        400,
        "validation_error",
        field,
    )


def test_superuser_cannot_cross_link_organisations(
    org: Organization, other_org: Organization
) -> None:
    """Even a superuser, who sees everything, cannot book org A's customer in org B."""
    root = token_client(OperatorFactory(organization=None, is_superuser=True))
    customer = CustomerFactory(organization=other_org)
    response = root.post(
        "/api/appointments/",
        {
            "organization": org.pk,
            "customer": customer.pk,
            "date": "2026-02-03",
            "time": "10:00",
            "name": "x",
        },
        format="json",
    )
    assert_error(response, 400, "validation_error", "customer")
