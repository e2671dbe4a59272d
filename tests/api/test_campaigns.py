"""The campaigns and do-not-call API (F-67): contract fields, statuses, scoping."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from agents.models import Operator, Organization
from calls.campaigns.models import Campaign, Contact, DoNotCall
from tests.agents.factories import AgentProfileFactory, OperatorFactory
from tests.api.conftest import assert_error, token_client
from tests.calls.campaign_factories import (
    AttemptFactory,
    CampaignFactory,
    ContactFactory,
)
from tests.calls.factories import CallSessionFactory

CONTRACT_FIELDS = {
    "name",
    "agent",
    "from_number",
    "time_zone",
    "days",
    "window_start",
    "window_end",
    "max_concurrent",
    "calls_per_second",
    "max_attempts",
    "retry_delay_seconds",
    "retry_on",
    "machine_action",
    "business_name",
    "caller_name",
    "product",
    "opening",
}


def new_campaign(agent_id: int, **changes: Any) -> dict[str, Any]:
    body = {
        "name": "春のご案内",
        "agent": agent_id,
        "from_number": "050-1234-5678",
        "time_zone": "Asia/Tokyo",
        "days": [1, 2, 3, 4, 5],
        "window_start": "10:00",
        "window_end": "19:30",
        "max_concurrent": 3,
        "calls_per_second": 1,
        "max_attempts": 3,
        "retry_delay_seconds": 600,
        "retry_on": ["busy", "no-answer"],
        "machine_action": "voicemail",
        "business_name": "テスト商事",
        "caller_name": "山田",
        "product": "光回線",
    }
    return {**body, **changes}


@pytest.fixture
def agent(org: Organization) -> Any:
    return AgentProfileFactory(organization=org)


@pytest.fixture
def campaign(org: Organization) -> Campaign:
    return CampaignFactory(organization=org)


# Create, read, edit, delete -------------------------------------------------------


def test_create_is_201_draft_with_contract_fields(api: APIClient, agent: Any) -> None:
    """POST /api/campaigns/ gives 201, `id`, status draft, and echoes the contract."""
    response = api.post("/api/campaigns/", new_campaign(agent.pk), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert isinstance(body["id"], int) and body["status"] == "draft"
    assert set(body) >= CONTRACT_FIELDS
    assert body["from_number"] == "+815012345678"
    assert body["window_start"] == "10:00" and body["window_end"] == "19:30"
    assert body["days"] == [1, 2, 3, 4, 5]
    assert body["opening"].startswith("{{business_name}}の{{caller_name}}")
    campaign = Campaign.objects.get(pk=body["id"])
    assert campaign.organization_id == agent.organization_id
    assert campaign.status == Campaign.Status.DRAFT


def test_detail_has_status_progress_counts_outcomes(
    api: APIClient, campaign: Campaign
) -> None:
    ContactFactory(campaign=campaign, status=Contact.Status.DONE, outcome="booked")
    ContactFactory(campaign=campaign, status=Contact.Status.DONE, outcome="booked")
    ContactFactory(campaign=campaign, status=Contact.Status.FAILED)
    ContactFactory(campaign=campaign)
    body = api.get(f"/api/campaigns/{campaign.pk}/").json()
    assert set(body) >= CONTRACT_FIELDS
    assert body["status"] == "draft"
    assert body["progress"] == 75
    assert body["counts"] == {"done": 2, "failed": 1, "pending": 1}
    assert body["outcomes"] == {"booked": 2}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"from_number": "12"}, "from_number"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"days": [0, 8]}, "days"),
        ({"days": []}, "days"),
        ({"window_start": "18:00", "window_end": "09:00"}, "window_end"),
        ({"window_start": "9am"}, "window_start"),
        ({"retry_on": ["busy", "angry"]}, "retry_on"),
        ({"machine_action": "sing"}, "machine_action"),
        ({"max_concurrent": 0}, "max_concurrent"),
    ],
)
def test_create_validates(
    api: APIClient, agent: Any, changes: dict[str, Any], field: str
) -> None:
    response = api.post(
        "/api/campaigns/", new_campaign(agent.pk, **changes), format="json"
    )
    assert_error(response, 400, "validation_error", field)


def test_create_refuses_another_organisations_agent(
    api: APIClient, other_org: Organization
) -> None:
    foreign = AgentProfileFactory(organization=other_org)
    response = api.post("/api/campaigns/", new_campaign(foreign.pk), format="json")
    assert_error(response, 400, "validation_error", "agent")


def test_list_is_paginated_and_filtered_by_status(
    api: APIClient, org: Organization
) -> None:
    CampaignFactory(organization=org)
    CampaignFactory(organization=org, status=Campaign.Status.PAUSED)
    body = api.get("/api/campaigns/").json()
    assert body["count"] == 2 and len(body["results"]) == 2
    assert {"progress", "counts", "outcomes", "status"} <= set(body["results"][0])
    paused = api.get("/api/campaigns/?status=paused").json()
    assert [c["status"] for c in paused["results"]] == ["paused"]
    assert_error(api.get("/api/campaigns/?status=nope"), 400, "validation_error")


@pytest.mark.parametrize("status", ["draft", "paused"])
def test_patch_while_draft_or_paused(
    api: APIClient, org: Organization, status: str
) -> None:
    campaign = CampaignFactory(organization=org, status=status)
    response = api.patch(
        f"/api/campaigns/{campaign.pk}/", {"max_concurrent": 9}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["max_concurrent"] == 9
    assert response.json()["status"] == status


@pytest.mark.parametrize("status", ["running", "completed", "canceled"])
def test_patch_otherwise_is_409(api: APIClient, org: Organization, status: str) -> None:
    campaign = CampaignFactory(organization=org, status=status)
    response = api.patch(
        f"/api/campaigns/{campaign.pk}/", {"max_concurrent": 9}, format="json"
    )
    assert_error(response, 409, "conflict")
    campaign.refresh_from_db()
    assert campaign.max_concurrent != 9


def test_patch_window_checked_against_stored_value(
    api: APIClient, campaign: Campaign
) -> None:
    response = api.patch(
        f"/api/campaigns/{campaign.pk}/", {"window_end": "08:00"}, format="json"
    )
    assert_error(response, 400, "validation_error", "window_end")


def test_delete_draft_is_204_other_is_409(api: APIClient, org: Organization) -> None:
    draft = CampaignFactory(organization=org)
    ContactFactory(campaign=draft)
    assert api.delete(f"/api/campaigns/{draft.pk}/").status_code == 204
    assert not Campaign.objects.filter(pk=draft.pk).exists()
    running = CampaignFactory(organization=org, status=Campaign.Status.RUNNING)
    assert_error(api.delete(f"/api/campaigns/{running.pk}/"), 409, "conflict")


def test_put_is_not_offered(api: APIClient, campaign: Campaign) -> None:
    response = api.put(f"/api/campaigns/{campaign.pk}/", {}, format="json")
    assert_error(response, 405, "method_not_allowed")


# Status machine ----------------------------------------------------------------


def test_start_pause_resume_cancel(api: APIClient, campaign: Campaign) -> None:
    """Each action answers 200 with the new status."""
    base = f"/api/campaigns/{campaign.pk}"
    for action, status in [
        ("start", "running"),
        ("pause", "paused"),
        ("resume", "running"),
        ("cancel", "canceled"),
    ]:
        response = api.post(f"{base}/{action}")
        assert response.status_code == 200, response.content
        assert response.json() == {"status": status}
    campaign.refresh_from_db()
    assert campaign.status == "canceled"


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("draft", "pause"),
        ("draft", "resume"),
        ("running", "start"),
        ("running", "resume"),
        ("paused", "pause"),
        ("paused", "start"),
        ("completed", "start"),
        ("canceled", "cancel"),
        ("completed", "resume"),
    ],
)
def test_illegal_transition_is_409(
    api: APIClient, org: Organization, status: str, action: str
) -> None:
    campaign = CampaignFactory(organization=org, status=status)
    response = api.post(f"/api/campaigns/{campaign.pk}/{action}")
    error = assert_error(response, 409, "illegal_status_transition")
    assert error["details"]["status"] == status
    campaign.refresh_from_db()
    assert campaign.status == status


def test_start_without_disclosure_is_409_naming_what_is_missing(
    api: APIClient, org: Organization
) -> None:
    campaign = CampaignFactory(organization=org, caller_name="", product="")
    response = api.post(f"/api/campaigns/{campaign.pk}/start")
    error = assert_error(response, 409, "disclosure_incomplete")
    assert set(error["details"]["missing"]) == {"caller_name", "product"}
    assert "caller_name" in error["message"]
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_start_with_opening_lacking_purpose_is_409(
    api: APIClient, org: Organization
) -> None:
    campaign = CampaignFactory(
        organization=org,
        opening="{{business_name}}の{{caller_name}}です。{{product}}について。",
    )
    error = assert_error(
        api.post(f"/api/campaigns/{campaign.pk}/start"), 409, "disclosure_incomplete"
    )
    assert error["details"]["missing"] == ["purpose"]


# Contacts, import, results ------------------------------------------------------


def test_contacts_list_paginated_and_filtered(
    api: APIClient, campaign: Campaign
) -> None:
    ContactFactory(campaign=campaign, status=Contact.Status.DONE, outcome="booked")
    ContactFactory(campaign=campaign)
    body = api.get(f"/api/campaigns/{campaign.pk}/contacts/").json()
    assert body["count"] == 2
    assert {"phone", "name", "status", "attempts", "outcome"} <= set(body["results"][0])
    done = api.get(f"/api/campaigns/{campaign.pk}/contacts/?status=done").json()
    assert [c["outcome"] for c in done["results"]] == ["booked"]


def test_import_reports_accepted_and_rejected_rows(
    api: APIClient, campaign: Campaign
) -> None:
    DoNotCall.objects.create(
        organization=campaign.organization, phone="+819011112222", source="operator"
    )
    data = "phone,name,plan\n090-1234-5678,佐藤,A\nnot-a-phone,鈴木,B\n09011112222,高橋,C\n"
    upload = SimpleUploadedFile("contacts.csv", data.encode(), "text/csv")
    response = api.post(
        f"/api/campaigns/{campaign.pk}/contacts/import",
        {"file": upload},
        format="multipart",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["line"], r["reason"]) for r in body["rejected"]] == [
        (3, "invalid"),
        (4, "dnc"),
    ]
    assert set(body["rejected"][0]) == {"line", "phone", "reason", "detail"}
    contact = Contact.objects.get(campaign=campaign)
    assert contact.phone == "+819012345678" and contact.variables == {"plan": "A"}


def test_import_without_file_is_400(api: APIClient, campaign: Campaign) -> None:
    response = api.post(
        f"/api/campaigns/{campaign.pk}/contacts/import", {}, format="multipart"
    )
    assert_error(response, 400, "validation_error", "file")


def test_results_csv_one_row_per_attempt_with_bom(
    api: APIClient, campaign: Campaign
) -> None:
    contact = ContactFactory(
        campaign=campaign, name="山田 太郎", status=Contact.Status.OPTED_OUT
    )
    call = CallSessionFactory(organization=campaign.organization)
    AttemptFactory(contact=contact, number=1, result="busy", twilio_status="busy")
    AttemptFactory(
        contact=contact,
        number=2,
        call=call,
        call_sid="CA" + "1" * 32,
        twilio_status="completed",
        answered_by="human",
        duration=42,
        outcome="declined",
    )
    response = api.get(
        f"/api/campaigns/{campaign.pk}/results.csv", HTTP_ACCEPT="text/csv"
    )
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    raw = b"".join(response.streaming_content)
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert {
        "phone",
        "name",
        "attempt",
        "call_id",
        "call_sid",
        "status",
        "answered_by",
        "duration",
        "outcome",
        "opted_out",
    } <= set(rows[0])
    assert [r["attempt"] for r in rows] == ["1", "2"]
    second = rows[1]
    assert second["name"] == "山田 太郎" and second["call_id"] == str(call.pk)
    assert second["call_sid"] == "CA" + "1" * 32 and second["duration"] == "42"
    assert second["status"] == "completed" and second["answered_by"] == "human"
    assert second["outcome"] == "declined" and second["opted_out"] == "yes"


# Do-not-call --------------------------------------------------------------------


def test_dnc_add_list_remove(api: APIClient, operator: Operator) -> None:
    response = api.post(
        "/api/dnc/", {"phone": "090-1111-2222", "reason": "本人の申し出"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["phone"] == "+819011112222" and body["source"] == "operator"
    assert body["reason"] == "本人の申し出"
    listed = api.get("/api/dnc/").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    assert DoNotCall.objects.get().created_by == operator
    assert api.delete(f"/api/dnc/{body['id']}/").status_code == 204
    assert not DoNotCall.objects.exists()


def test_dnc_add_stops_pending_contacts(api: APIClient, campaign: Campaign) -> None:
    contact = ContactFactory(campaign=campaign, phone="+819011112222")
    api.post("/api/dnc/", {"phone": "09011112222"}, format="json")
    contact.refresh_from_db()
    assert contact.status == Contact.Status.SKIPPED_DNC


def test_dnc_invalid_phone_is_400(api: APIClient) -> None:
    response = api.post("/api/dnc/", {"phone": "abc"}, format="json")
    assert_error(response, 400, "validation_error", "phone")


# Access: authentication and organisation scoping -------------------------------

ENDPOINTS = [
    ("get", "/api/campaigns/"),
    ("post", "/api/campaigns/"),
    ("get", "/api/campaigns/{c}/"),
    ("patch", "/api/campaigns/{c}/"),
    ("delete", "/api/campaigns/{c}/"),
    ("get", "/api/campaigns/{c}/contacts/"),
    ("post", "/api/campaigns/{c}/contacts/import"),
    ("post", "/api/campaigns/{c}/start"),
    ("post", "/api/campaigns/{c}/pause"),
    ("post", "/api/campaigns/{c}/resume"),
    ("post", "/api/campaigns/{c}/cancel"),
    ("get", "/api/campaigns/{c}/results.csv"),
    ("get", "/api/dnc/"),
    ("post", "/api/dnc/"),
    ("delete", "/api/dnc/{d}/"),
]
OBJECT_ENDPOINTS = [(m, p) for m, p in ENDPOINTS if "{" in p]


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_unauthenticated_is_401(anon: APIClient, method: str, path: str) -> None:
    response = getattr(anon, method)(path.format(c=1, d=1), {}, format="json")
    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize(("method", "path"), OBJECT_ENDPOINTS)
def test_other_organisations_object_is_404(
    api: APIClient, other_org: Organization, method: str, path: str
) -> None:
    """Another organisation's campaign or DNC entry does not exist for you."""
    campaign = CampaignFactory(organization=other_org)
    entry = DoNotCall.objects.create(
        organization=other_org, phone="+819011112222", source="operator"
    )
    fmt = "multipart" if path.endswith("import") else "json"
    response = getattr(api, method)(
        path.format(c=campaign.pk, d=entry.pk), {}, format=fmt
    )
    assert_error(response, 404, "not_found")
    campaign.refresh_from_db()
    assert campaign.status == "draft"
    assert DoNotCall.objects.filter(pk=entry.pk).exists()


def test_lists_show_only_own_organisation(
    api: APIClient, org: Organization, other_org: Organization
) -> None:
    CampaignFactory(organization=org)
    CampaignFactory(organization=other_org)
    DoNotCall.objects.create(organization=other_org, phone="+819011112222")
    assert api.get("/api/campaigns/").json()["count"] == 1
    assert api.get("/api/dnc/").json()["count"] == 0


def test_user_without_organisation_sees_nothing(org: Organization) -> None:
    CampaignFactory(organization=org)
    client = token_client(OperatorFactory(organization=None))
    assert client.get("/api/campaigns/").json()["count"] == 0
    assert_error(
        client.post("/api/dnc/", {"phone": "09011112222"}, format="json"),
        400,
        "validation_error",
    )


def test_session_auth_needs_csrf_on_actions(
    operator: Operator, campaign: Campaign
) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.get(f"/api/campaigns/{campaign.pk}/").status_code == 200
    response = client.post(f"/api/campaigns/{campaign.pk}/start")
    assert_error(response, 403, "permission_denied")


def test_actions_are_throttled(
    api: APIClient, campaign: Campaign, settings: Any
) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"mutations": "2/min", "outbound": "2/min"},
    }
    api.post(f"/api/campaigns/{campaign.pk}/start")
    api.post(f"/api/campaigns/{campaign.pk}/pause")
    response = api.post(f"/api/campaigns/{campaign.pk}/resume")
    error = assert_error(response, 429, "throttled")
    assert error["details"]["retry_after"] > 0


def test_deleting_an_agent_a_campaign_uses_is_409(
    api: APIClient, campaign: Campaign
) -> None:
    """The campaign keeps its agent: 409 naming the campaign, nothing deleted."""
    error = assert_error(
        api.delete(f"/api/agents/{campaign.agent_id}/"), 409, "conflict"
    )
    assert error["details"]["campaigns"] == [campaign.name]
    assert Campaign.objects.filter(pk=campaign.pk).exists()
