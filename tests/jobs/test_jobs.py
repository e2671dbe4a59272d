"""Job cards (F-77): the creation rules, the customer by phone, pages, live socket."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse

from agents.models import Appointment, Customer
from callcenter.domain_events import job_created
from calls.models import CallSession, ExtractionStatus
from calls.status import CallStatus
from jobs.models import Job, JobStatus
from jobs.services import job_create, job_create_from_call, job_update
from tests.agents.factories import CustomerFactory, OperatorFactory, OrganizationFactory
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db


def summarized(**extraction: Any) -> CallSession:
    return CallSessionFactory(
        status=CallStatus.COMPLETED,
        summary="お客様はエアコンの修理を希望。",
        extraction=extraction,
        extraction_status=ExtractionStatus.DONE,
        from_number="+819011112222",
    )


@pytest.fixture
def created() -> Iterator[list[Job]]:
    seen: list[Job] = []
    job_created.connect(
        lambda sender, job, **_: seen.append(job), dispatch_uid="t", weak=False
    )
    yield seen
    job_created.disconnect(dispatch_uid="t")


# -- rules --------------------------------------------------------------------------


def test_job_required_makes_a_card_with_the_extractions_title_and_fields(
    created: list[Job], django_capture_on_commit_callbacks: Any
) -> None:
    call = summarized(job_required=True, job_title="エアコン修理", name="田中")
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create_from_call(call=call)
    assert job is not None
    assert job.title == "エアコン修理" and job.status == JobStatus.NEW
    assert job.fields == call.extraction and job.call == call
    assert job.organization_id == call.organization_id
    assert created == [job]


def test_a_booked_appointment_makes_a_card_even_without_job_required() -> None:
    call = summarized(job_required=False, appointment=None, request="予約")
    Appointment.objects.create(
        organization=call.organization,
        call=call,
        date=dt.date(2026, 12, 8),
        time=dt.time(10),
        name="田中",
    )
    job = job_create_from_call(call=call)
    assert job is not None and job.title == "予約"


def test_an_appointment_in_the_extraction_makes_a_card_titled_by_it() -> None:
    job = job_create_from_call(
        call=summarized(job_required=False, appointment="明日10時")
    )
    assert job is not None and job.title == "予約: 明日10時"


@pytest.mark.parametrize(
    "extraction",
    [
        {"job_required": False, "appointment": None},
        {"job_required": "yes"},  # only a real true counts
        {"appointment": "  "},
        {},
    ],
)
def test_no_card_when_the_extraction_does_not_ask_for_one(
    extraction: dict[str, Any],
) -> None:
    assert job_create_from_call(call=summarized(**extraction)) is None
    assert not Job.objects.exists()


def test_one_card_per_call() -> None:
    call = summarized(job_required=True)
    assert job_create_from_call(call=call) is not None
    assert job_create_from_call(call=call) is None
    assert Job.objects.count() == 1


def test_the_customer_is_matched_by_phone() -> None:
    call = summarized(job_required=True)
    known = CustomerFactory(
        organization=call.organization, phone_number="+819011112222"
    )
    job = job_create_from_call(call=call)
    assert job is not None and job.customer == known


def test_the_customer_is_created_by_phone_from_the_far_end() -> None:
    call = CallSessionFactory(
        direction=CallSession.Direction.OUTBOUND,
        from_number="+815012345678",
        to_number="09033334444",
        extraction={"job_required": True},
    )
    job = job_create_from_call(call=call)
    assert job is not None and job.customer is not None
    assert job.customer.phone_number == "+819033334444"
    assert Customer.objects.filter(organization=call.organization).count() == 1


def test_a_web_call_without_a_number_has_no_customer() -> None:
    call = CallSessionFactory(
        direction=CallSession.Direction.WEB,
        from_number="",
        to_number="",
        extraction={"job_required": True},
    )
    job = job_create_from_call(call=call)
    assert job is not None and job.customer is None


def test_the_summary_step_creates_the_card(settings: Any) -> None:
    from calls.summary.services import call_summary_attempt
    from tests.calls.factories import TranscriptEntryFactory
    from tests.calls.summary_fakes import fake_responses_thread

    call = CallSessionFactory(status=CallStatus.COMPLETED)
    TranscriptEntryFactory(call=call, text="給湯器の修理をお願いします。")
    with fake_responses_thread() as fake:
        settings.SUMMARY_OPENAI_BASE_URL = fake.base_url
        assert call_summary_attempt(call_id=call.pk).status == "done"
        assert call_summary_attempt(call_id=call.pk, announce=False).status == "done"
    job = Job.objects.get()
    assert job.call == call and job.title == "給湯器の修理をお願いします。"


# -- pages --------------------------------------------------------------------------


@pytest.fixture
def operator() -> Any:
    return OperatorFactory(organization=OrganizationFactory())


@pytest.fixture
def logged_in(client: Any, operator: Any) -> Any:
    client.force_login(operator)
    return client


def test_list_page_filters_and_scopes(logged_in: Any, operator: Any) -> None:
    org = operator.organization
    job_create(organization=org, title="エアコン修理")
    accepted = job_create(organization=org, title="給湯器点検")
    job_update(job=accepted, status=JobStatus.ACCEPTED, assignee=operator)
    job_create(organization=OrganizationFactory(), title="よその案件")
    page = logged_in.get(reverse("jobs:list")).content.decode()
    assert "エアコン修理" in page and "給湯器点検" in page
    assert "よその案件" not in page
    assert "data-job-toasts" in page and 'data-ws-path="/ws/jobs/"' in page
    assert "{#" not in page and "jobs_live.js fills" not in page  # no stray comment
    page = logged_in.get(reverse("jobs:list"), {"status": "accepted"}).content.decode()
    assert "給湯器点検" in page and "エアコン修理" not in page
    page = logged_in.get(reverse("jobs:list"), {"assignee": "none"}).content.decode()
    assert "エアコン修理" in page and "給湯器点検" not in page
    partial = logged_in.get(reverse("jobs:list"), {"partial": "1"}).content.decode()
    assert "<html" not in partial and "エアコン修理" in partial


def test_detail_page_shows_fields_summary_and_transcript_link(
    logged_in: Any, operator: Any
) -> None:
    call = summarized(job_required=True, job_title="エアコン修理", name="田中")
    call.organization = operator.organization
    call.save()
    job = job_create_from_call(call=call)
    assert job is not None
    page = logged_in.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "田中" in page
    assert "お客様はエアコンの修理を希望。" in page
    assert reverse("calls:detail", args=[call.pk]) + "#transcript-title" in page
    assert 'data-status-action="accepted"' in page
    assert 'data-status-action="canceled"' in page


def test_status_actions_and_assignment(logged_in: Any, operator: Any) -> None:
    job = job_create(organization=operator.organization, title="x")
    url = reverse("jobs:status", args=[job.pk])
    assert logged_in.post(url, {"status": "accepted"}).status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.ACCEPTED
    # A step the flow does not allow is a message, not a 500.
    response = logged_in.post(url, {"status": "new"}, follow=True)
    assert response.status_code == 200
    assert "「accepted」から「new」にはできません" in response.content.decode()
    logged_in.post(url, {"status": "done"})
    job.refresh_from_db()
    assert job.status == JobStatus.DONE
    response = logged_in.post(
        reverse("jobs:assign", args=[job.pk]), {"assignee": operator.pk}
    )
    job.refresh_from_db()
    assert job.assignee == operator
    stranger = OperatorFactory(organization=OrganizationFactory())
    response = logged_in.post(
        reverse("jobs:assign", args=[job.pk]), {"assignee": stranger.pk}, follow=True
    )
    job.refresh_from_db()
    assert job.assignee == operator


def test_another_organisations_job_is_404(logged_in: Any) -> None:
    job = job_create(organization=OrganizationFactory(), title="x")
    assert logged_in.get(reverse("jobs:detail", args=[job.pk])).status_code == 404
    url = reverse("jobs:status", args=[job.pk])
    assert logged_in.post(url, {"status": "accepted"}).status_code == 404


def test_the_dashboard_has_the_toast_container(logged_in: Any) -> None:
    page = logged_in.get(reverse("calls:dashboard")).content.decode()
    assert "data-job-toasts" in page and "jobs_live.js" in page


def test_jobs_since_gives_new_jobs_of_the_organisation_only(
    logged_in: Any, operator: Any
) -> None:
    org = operator.organization
    first = job_create(organization=org, title="前からある案件")
    start = logged_in.get(reverse("jobs:since")).json()
    assert start == {"last_id": first.pk, "jobs": []}
    job_create(organization=OrganizationFactory(), title="よその案件")
    new = job_create(organization=org, title="新しい案件です")
    data = logged_in.get(reverse("jobs:since"), {"after": first.pk}).json()
    assert [j["job_id"] for j in data["jobs"]] == [new.pk]
    assert data["jobs"][0]["title"] == "新しい案件です"
    assert data["jobs"][0]["url"] == f"/jobs/{new.pk}/"
    assert data["last_id"] == new.pk
    again = logged_in.get(reverse("jobs:since"), {"after": new.pk}).json()
    assert again == {"last_id": new.pk, "jobs": []}
