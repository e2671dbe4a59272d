"""The notification settings page (F-77): add an endpoint (SSRF refusal shown on
the form), choose who is emailed, the delivery log with "send again", scoping."""

from __future__ import annotations

import pytest

from notifications.models import Delivery, Event, NotificationSettings, WebhookEndpoint
from tests.agents.factories import OperatorFactory, OrganizationFactory
from tests.notifications.conftest import SECRET, Inline

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(client, operator):
    client.force_login(operator)
    return client


def test_add_an_endpoint(page, org, receiver):
    response = page.post(
        "/notifications/",
        {
            "endpoint-url": receiver.url,
            "endpoint-secret": SECRET,
            "endpoint-events": ["job.created", "call.handoff"],
            "endpoint-active": "on",
            "add_endpoint": "1",
        },
    )
    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.organization == org
    assert endpoint.events == ["call.handoff", "job.created"]
    listing = page.get("/notifications/").content.decode()
    assert receiver.url in listing


def test_a_private_url_is_refused_on_the_form(page, settings):
    settings.ALLOW_PRIVATE_URLS = False
    response = page.post(
        "/notifications/",
        {
            "endpoint-url": "http://10.0.0.8/hook",
            "endpoint-secret": SECRET,
            "endpoint-events": ["job.created"],
            "add_endpoint": "1",
        },
    )
    assert response.status_code == 200
    assert "10.0.0.8" in response.content.decode()
    assert 'data-field-error="url"' in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_choose_the_operators_emailed(page, org):
    sato = OperatorFactory(organization=org, email="sato@example.jp")
    stranger = OperatorFactory(organization=OrganizationFactory(), email="x@example.jp")
    response = page.post(
        "/notifications/", {"email-operators": [sato.pk], "save_email": "1"}
    )
    assert response.status_code == 302
    prefs = NotificationSettings.objects.get(organization=org)
    assert list(prefs.job_email_operators.all()) == [sato]
    refused = page.post(
        "/notifications/", {"email-operators": [stranger.pk], "save_email": "1"}
    )
    assert refused.status_code == 200  # not a choice: the form says so
    assert list(prefs.job_email_operators.all()) == [sato]


def test_delivery_log_and_send_again(
    page, org, endpoint, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    endpoint.disabled_reason = "Disabled at 2026-12-06: the receiver answered 410 Gone"
    endpoint.active = False
    endpoint.save()
    event = Event.objects.create(
        organization=org, type="job.created", data={"job_id": 9}
    )
    delivery = Delivery.objects.create(
        endpoint=endpoint, event=event, state="failed", attempts=5, last_status=500
    )
    html = page.get(f"/notifications/endpoints/{endpoint.pk}/").content.decode()
    assert event.public_id in html and "410 Gone" in html
    assert f'data-delivery-id="{delivery.pk}" data-state="failed"' in html
    assert SECRET not in html  # the secret is never shown again
    endpoint.active = True
    endpoint.save()
    inline = Inline()
    monkeypatch.setattr("notifications.services._default_enqueue", inline)
    with django_capture_on_commit_callbacks(execute=True):
        response = page.post(f"/notifications/deliveries/{delivery.pk}/send-again")
    assert response.status_code == 302
    assert inline.outcomes == ["delivered"]
    delivery.refresh_from_db()
    assert delivery.state == "delivered" and delivery.attempts == 6
    assert receiver.requests[0].event["id"] == event.public_id


def test_another_organisations_endpoint_and_delivery_are_404(page):
    other = OrganizationFactory()
    endpoint = WebhookEndpoint.objects.create(
        organization=other,
        url="http://127.0.0.1:9/",
        secret=SECRET,
        events=["job.created"],
    )
    event = Event.objects.create(organization=other, type="job.created", data={})
    delivery = Delivery.objects.create(endpoint=endpoint, event=event)
    assert page.get(f"/notifications/endpoints/{endpoint.pk}/").status_code == 404
    assert (
        page.post(f"/notifications/deliveries/{delivery.pk}/send-again").status_code
        == 404
    )


def test_admin_send_again_action(admin_client, org, endpoint, monkeypatch):
    event = Event.objects.create(organization=org, type="job.created", data={})
    delivery = Delivery.objects.create(endpoint=endpoint, event=event, state="failed")
    recorded = Inline(run=False)
    monkeypatch.setattr("notifications.services._default_enqueue", recorded)
    listing = admin_client.get("/admin/notifications/delivery/")
    assert event.public_id in listing.content.decode()
    response = admin_client.post(
        "/admin/notifications/delivery/",
        {"action": "send_again", "_selected_action": [delivery.pk]},
    )
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.state == "pending"
