"""`/api/jobs/` (F-77): CRUD scoped by organisation, status rules, events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from agents.models import Operator, Organization
from callcenter.domain_events import job_created, job_updated
from jobs.models import Job
from tests.agents.factories import CustomerFactory, OperatorFactory
from tests.api.conftest import assert_error
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def events() -> Iterator[list[tuple[str, int, Any]]]:
    seen: list[tuple[str, int, Any]] = []

    def created(sender: Any, job: Job, **_: Any) -> None:
        seen.append(("created", job.pk, None))

    def updated(sender: Any, job: Job, changed: list[str], **_: Any) -> None:
        seen.append(("updated", job.pk, changed))

    job_created.connect(created, dispatch_uid="t-created")
    job_updated.connect(updated, dispatch_uid="t-updated")
    yield seen
    job_created.disconnect(dispatch_uid="t-created")
    job_updated.disconnect(dispatch_uid="t-updated")


def test_create_list_change_delete(
    api: APIClient,
    org: Organization,
    operator: Operator,
    events: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    customer = CustomerFactory(organization=org)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/jobs/",
            {"title": "エアコン修理", "customer": customer.pk, "fields": {"a": 1}},
            format="json",
        )
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["status"] == "new" and job["organization"] == org.pk
    assert events == [("created", job["id"], None)]

    listed = api.get("/api/jobs/").json()
    assert [j["id"] for j in listed["results"]] == [job["id"]]

    with django_capture_on_commit_callbacks(execute=True):
        response = api.patch(
            f"/api/jobs/{job['id']}/",
            {"status": "accepted", "assignee": operator.pk},
            format="json",
        )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted"
    assert events[-1] == ("updated", job["id"], ["status", "assignee"])

    assert api.get("/api/jobs/?status=accepted").json()["count"] == 1
    assert api.get("/api/jobs/?status=new").json()["count"] == 0
    assert api.get(f"/api/jobs/?assignee={operator.pk}").json()["count"] == 1
    assert api.get("/api/jobs/?unassigned=true").json()["count"] == 0
    assert api.get("/api/jobs/?q=エアコン").json()["count"] == 1

    assert api.delete(f"/api/jobs/{job['id']}/").status_code == 204
    assert not Job.objects.exists()


def test_status_rules(api: APIClient, org: Organization) -> None:
    job = Job.objects.create(organization=org, title="x")
    assert_error(
        api.patch(f"/api/jobs/{job.pk}/", {"status": "done"}, format="json"),
        409,
        "illegal_status_transition",
    )
    assert (
        api.patch(
            f"/api/jobs/{job.pk}/", {"status": "canceled"}, format="json"
        ).status_code
        == 200
    )
    assert_error(
        api.patch(f"/api/jobs/{job.pk}/", {"status": "accepted"}, format="json"),
        409,
        "illegal_status_transition",
    )
    assert_error(
        api.post("/api/jobs/", {"title": "y", "status": "done"}, format="json"),
        400,
        "validation_error",
        "status",
    )


def test_scoped_by_organisation(
    api: APIClient, org: Organization, other_org: Organization
) -> None:
    foreign = Job.objects.create(organization=other_org, title="よその案件")
    assert api.get("/api/jobs/").json()["count"] == 0
    assert_error(api.get(f"/api/jobs/{foreign.pk}/"), 404, "not_found")
    assert_error(
        api.patch(f"/api/jobs/{foreign.pk}/", {"title": "x"}, format="json"),
        404,
        "not_found",
    )
    assert_error(api.delete(f"/api/jobs/{foreign.pk}/"), 404, "not_found")
    stranger = OperatorFactory(organization=other_org)
    foreign_customer = CustomerFactory(organization=other_org)
    foreign_call = CallSessionFactory(organization=other_org)
    for field, value in (
        ("assignee", stranger.pk),
        ("customer", foreign_customer.pk),
        ("call", foreign_call.pk),
        ("organization", other_org.pk),
    ):
        assert_error(
            api.post("/api/jobs/", {"title": "x", field: value}, format="json"),
            400,
            "validation_error",
            field,
        )
    assert Job.objects.filter(organization=org).count() == 0
