"""The call API's after-call fields and `POST /api/calls/<id>/extract` (F-76), and
the agent resource's extraction schema."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from agents.models import Organization
from calls.models import ExtractionStatus
from calls.status import CallStatus
from tests.agents.factories import AgentProfileFactory
from tests.api.conftest import assert_error
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db


def test_call_detail_has_summary_extraction_and_status(
    api: APIClient, org: Organization
) -> None:
    call = CallSessionFactory(
        organization=org,
        status=CallStatus.COMPLETED,
        summary="お客様は修理を希望。",
        extraction={"job_required": True, "name": "田中"},
        extraction_status=ExtractionStatus.DONE,
    )
    body = api.get(f"/api/calls/{call.pk}/").json()
    assert body["summary"] == "お客様は修理を希望。"
    assert body["extraction"] == {"job_required": True, "name": "田中"}
    assert body["extraction_status"] == "done"
    assert body["extraction_error"] == ""


def test_extract_queues_a_rerun(
    api: APIClient,
    org: Organization,
    summary_tasks: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    call = CallSessionFactory(
        organization=org,
        status=CallStatus.COMPLETED,
        extraction_status=ExtractionStatus.FAILED,
        extraction_error="Try 3 of 3: HTTP 500",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/calls/{call.pk}/extract", format="json")
    assert response.status_code == 202
    assert response.json() == {"call_id": call.pk, "extraction_status": "pending"}
    assert summary_tasks == [{"call_id": call.pk, "announce": False}]
    call.refresh_from_db()
    assert call.extraction_error == ""


def test_extract_of_a_live_call_is_409_and_of_anothers_404(
    api: APIClient, org: Organization, other_org: Organization
) -> None:
    live = CallSessionFactory(organization=org, status=CallStatus.AI_RESPONDING)
    assert_error(api.post(f"/api/calls/{live.pk}/extract"), 409, "conflict")
    foreign = CallSessionFactory(organization=other_org, status=CallStatus.COMPLETED)
    assert_error(api.post(f"/api/calls/{foreign.pk}/extract"), 404, "not_found")


def test_agent_extraction_schema_is_validated(
    api: APIClient, org: Organization
) -> None:
    agent = AgentProfileFactory(organization=org)
    response = api.patch(
        f"/api/agents/{agent.pk}/",
        {"extraction_schema": {"type": "object", "properties": {"a": {"type": "x"}}}},
        format="json",
    )
    error = assert_error(response, 400, "validation_error", "extraction_schema")
    assert "properties/a/type" in error["details"]["extraction_schema"][0]
    good = {"type": "object", "properties": {"request": {"type": "string"}}}
    response = api.patch(
        f"/api/agents/{agent.pk}/", {"extraction_schema": good}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["extraction_schema"] == good
