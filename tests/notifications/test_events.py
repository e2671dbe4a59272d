"""Where events come from (F-77): the domain signals of the after-call branch
(sent here with plain objects, as the contract says), the handoff service, the
campaign's completion; and the email to the chosen operators on a new job."""

from __future__ import annotations

import types
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from callcenter import domain_events
from callcenter.errors import ApplicationError
from calls.campaigns.services import campaign_complete
from calls.status import CallStatus
from handoff.services import handoff_request
from notifications.models import Event, NotificationSettings
from tests.agents.factories import AgentProfileFactory, OperatorFactory
from tests.calls.campaigns.factories import RunningCampaignFactory
from tests.calls.factories import CallSessionFactory
from tests.notifications.receiver import Receiver

pytestmark = pytest.mark.django_db


def job(org: Any, **fields: Any) -> types.SimpleNamespace:
    now = timezone.now()
    values = {
        "id": 31,
        "organization_id": org.pk,
        "customer_id": None,
        "call_id": 5,
        "title": "エアコン修理",
        "fields": {"address": "東京都港区1-1", "date": "2026-12-10"},
        "status": "new",
        "assignee_id": None,
        "created_at": now,
        "updated_at": now,
        **fields,
    }
    return types.SimpleNamespace(**values)


def test_call_summarized_becomes_call_completed(
    org, endpoint, receiver: Receiver, eager_celery, django_capture_on_commit_callbacks
):
    call = CallSessionFactory(organization=org, status=CallStatus.COMPLETED)
    call.summary = "お客様は来週の予約を希望。"  # the after-call branch's fields
    call.extraction = {"job_required": True, "title": "予約"}
    with django_capture_on_commit_callbacks(execute=True):
        domain_events.call_summarized.send_robust(
            sender=None, call=call, extraction_status="done"
        )
    [got] = receiver.requests
    assert got.verified and got.headers["X-Callcenter-Event"] == "call.completed"
    data = got.event["data"]
    assert data["call_id"] == call.pk and data["status"] == "completed"
    assert data["summary"] == "お客様は来週の予約を希望。"
    assert data["extraction"] == {"job_required": True, "title": "予約"}
    assert data["extraction_status"] == "done"


def test_a_call_without_summary_fields_still_publishes(
    org, endpoint, receiver: Receiver, eager_celery, django_capture_on_commit_callbacks
):
    call = CallSessionFactory(organization=org, status=CallStatus.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        domain_events.call_summarized.send_robust(
            sender=None, call=call, extraction_status="skipped"
        )
    data = receiver.requests[0].event["data"]
    assert data["summary"] == "" and data["extraction"] == {}
    assert data["status"] == "failed"


def test_job_created_and_updated(
    org, endpoint, receiver: Receiver, eager_celery, django_capture_on_commit_callbacks
):
    card = job(org)
    with django_capture_on_commit_callbacks(execute=True):
        domain_events.job_created.send_robust(sender=None, job=card)
        card.status = "accepted"
        domain_events.job_updated.send_robust(sender=None, job=card, changed=["status"])
    created, updated = (r.event for r in receiver.requests)
    assert created["type"] == "job.created" and updated["type"] == "job.updated"
    assert (
        created["data"]["job_id"] == 31 and created["data"]["title"] == "エアコン修理"
    )
    assert created["data"]["fields"]["address"] == "東京都港区1-1"
    assert updated["data"]["status"] == "accepted"
    assert updated["data"]["changed"] == ["status"]
    assert created["id"] != updated["id"]


def test_a_receiver_never_raises_into_the_sender(
    org, endpoint, eager_celery, monkeypatch, django_capture_on_commit_callbacks
):
    def boom(**_: Any) -> None:
        raise RuntimeError("database away")

    monkeypatch.setattr("notifications.receivers.event_publish", boom)
    with django_capture_on_commit_callbacks(execute=True):
        replies = domain_events.job_created.send_robust(sender=None, job=job(org))
    assert all(not isinstance(reply, Exception) for _, reply in replies)


def test_new_job_emails_the_chosen_operators(
    org, eager_celery, django_capture_on_commit_callbacks
):
    chosen = OperatorFactory(organization=org, email="sato@example.jp")
    OperatorFactory(organization=org, email="not-chosen@example.jp")
    no_email = OperatorFactory(organization=org, email="")
    prefs = NotificationSettings.objects.create(organization=org)
    prefs.job_email_operators.set([chosen, no_email])
    with django_capture_on_commit_callbacks(execute=True):
        domain_events.job_created.send_robust(sender=None, job=job(org))
    [message] = mail.outbox
    assert message.to == ["sato@example.jp"]
    assert "エアコン修理" in message.subject
    assert "東京都港区1-1" in message.body
    assert "/jobs/31/" in message.body
    # An update sends no email.
    with django_capture_on_commit_callbacks(execute=True):
        domain_events.job_updated.send_robust(
            sender=None, job=job(org), changed=["status"]
        )
    assert len(mail.outbox) == 1


def test_no_email_without_chosen_operators(
    org, eager_celery, django_capture_on_commit_callbacks
):
    OperatorFactory(organization=org, email="sato@example.jp")
    with django_capture_on_commit_callbacks(execute=True):
        domain_events.job_created.send_robust(sender=None, job=job(org))
    assert mail.outbox == []


def test_web_handoff_publishes_call_handoff(
    org, endpoint, receiver: Receiver, eager_celery, django_capture_on_commit_callbacks
):
    call = CallSessionFactory(
        organization=org,
        agent=AgentProfileFactory(organization=org),
        direction="web",
        status=CallStatus.AI_RESPONDING,
    )
    with django_capture_on_commit_callbacks(execute=True):
        handoff_request(call_id=call.pk, trigger="caller", reason="担当者希望")
    [got] = receiver.requests
    assert got.headers["X-Callcenter-Event"] == "call.handoff"
    data = got.event["data"]
    assert data["call_id"] == call.pk and data["mode"] == "message"
    assert data["trigger"] == "caller" and data["reason"] == "担当者希望"


def test_phone_handoff_publishes_once_the_agent_is_dialled(
    org,
    endpoint,
    receiver: Receiver,
    eager_celery,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    monkeypatch.setattr(
        "handoff.services.twilio_call_create", lambda **_: "CA" + "f" * 32
    )
    monkeypatch.setattr("handoff.services.twilio_call_update", lambda **_: None)
    agent = AgentProfileFactory(organization=org, handoff_phone_number="+818070239355")
    call = CallSessionFactory(
        organization=org, agent=agent, status=CallStatus.AI_RESPONDING
    )
    with django_capture_on_commit_callbacks(execute=True):
        handoff_request(call_id=call.pk, trigger="operator")
    [got] = receiver.requests
    data = got.event["data"]
    assert data["mode"] == "transfer" and data["status"] == CallStatus.TRANSFERRING


def test_a_failed_handoff_publishes_nothing(
    org,
    endpoint,
    receiver: Receiver,
    eager_celery,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    def refuse(**_: Any) -> str:
        raise ApplicationError("Twilio said no", code="twilio_error")

    monkeypatch.setattr("handoff.services.twilio_call_create", refuse)
    agent = AgentProfileFactory(organization=org, handoff_phone_number="+818070239355")
    call = CallSessionFactory(
        organization=org, agent=agent, status=CallStatus.AI_RESPONDING
    )
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(ApplicationError),
    ):
        handoff_request(call_id=call.pk, trigger="operator")
    assert receiver.requests == [] and not Event.objects.exists()


def test_campaign_completion_publishes_campaign_completed(
    org, endpoint, receiver: Receiver, eager_celery, django_capture_on_commit_callbacks
):
    campaign = RunningCampaignFactory(
        organization=org, agent=AgentProfileFactory(organization=org)
    )
    with django_capture_on_commit_callbacks(execute=True):
        campaign_complete(campaign=campaign)
    [got] = receiver.requests
    assert got.headers["X-Callcenter-Event"] == "campaign.completed"
    data = got.event["data"]
    assert data["campaign_id"] == campaign.pk and data["status"] == "completed"
    assert data["name"] == campaign.name and "counts" in data
    assert isinstance(data["finished_at"], int)
