"""After the call (F-76, F-77) in the admin and the campaign results: the re-run
action, job cards made in the admin, the summary in the contacts table and CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from callcenter.domain_events import job_created
from calls.models import ExtractionStatus
from jobs.models import Job
from tests.agents.factories import OperatorFactory
from tests.calls.campaign_factories import (
    AttemptFactory,
    CampaignFactory,
    ContactFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(org: Any) -> Any:
    user = OperatorFactory(organization=org, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["calls", "jobs"])
    )
    return user


def test_summarize_again_action_queues_ended_calls_only(
    client: Any,
    staff: Any,
    live_call: Any,
    ended_call: Any,
    summary_tasks: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    ended_call.extraction_status = ExtractionStatus.FAILED
    ended_call.save()
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:calls_callsession_changelist"),
            {
                "action": "summarize_again",
                "_selected_action": [live_call.pk, ended_call.pk],
            },
            follow=True,
        )
    text = response.content.decode()
    assert "1件の通話の要約をやり直します。" in text
    assert "1件は通話中のため、終了後に要約します。" in text
    assert summary_tasks == [{"call_id": ended_call.pk, "announce": False}]
    ended_call.refresh_from_db()
    assert ended_call.extraction_status == ExtractionStatus.PENDING


def test_a_job_made_in_the_admin_is_announced(
    client: Any, staff: Any, org: Any, django_capture_on_commit_callbacks: Any
) -> None:
    seen: list[Job] = []
    job_created.connect(
        lambda sender, job, **_: seen.append(job), dispatch_uid="admin", weak=False
    )
    client.force_login(staff)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                reverse("admin:jobs_job_add"),
                {
                    "organization": org.pk,
                    "title": "手作業の案件",
                    "status": "new",
                    "fields": "{}",
                },
            )
    finally:
        job_created.disconnect(dispatch_uid="admin")
    assert response.status_code == 302, response.content.decode()[:2000]
    assert [j.title for j in seen] == ["手作業の案件"]
    job = Job.objects.get()
    response = client.post(
        reverse("admin:jobs_job_change", args=[job.pk]),
        {
            "organization": org.pk,
            "title": "手作業の案件",
            "status": "done",
            "fields": "{}",
        },
    )
    assert response.status_code == 200  # new → done is refused, naming the rule
    assert "にはできません" in response.content.decode()


def test_campaign_results_carry_the_summary(
    client: Any, org: Any, ended_call: Any, logged_in: Any
) -> None:
    ended_call.summary = "お客様は来週の訪問を希望。"
    ended_call.extraction = {"appointment": "来週月曜", "job_required": True}
    ended_call.extraction_status = ExtractionStatus.DONE
    ended_call.save()
    campaign = CampaignFactory(organization=org)
    contact = ContactFactory(campaign=campaign, name="山田")
    AttemptFactory(contact=contact, number=1, call=ended_call)
    page = logged_in.get(reverse("campaigns:detail", args=[campaign.pk])).content
    text = page.decode()
    assert "お客様は来週の訪問を希望。" in text
    assert reverse("calls:detail", args=[ended_call.pk]) in text
    response = logged_in.get(f"/api/campaigns/{campaign.pk}/results.csv")
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    row = next(csv.DictReader(io.StringIO(body)))
    assert row["summary"] == "お客様は来週の訪問を希望。"
    assert row["extraction_status"] == "done"
    assert json.loads(row["extraction"]) == ended_call.extraction
