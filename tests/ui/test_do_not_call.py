"""The monitor's "do not call again" button (F-65): operator source, org-scoped."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from calls.campaigns.models import Attempt, Contact, DoNotCall
from calls.models import CallEvent
from calls.status import CallStatus
from tests.calls.campaigns.factories import CampaignFactory, ContactFactory
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db


def url(call_id: int) -> str:
    return reverse("calls:do-not-call", args=[call_id])


def test_monitor_shows_the_button_for_a_live_call(logged_in, live_call):
    page = logged_in.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    assert url(live_call.pk) in page
    assert "今後の電話を停止" in page


def test_button_lists_the_inbound_caller(logged_in, live_call, operator):
    """Inbound: the from number goes on the list, source operator, with the call."""
    response = logged_in.post(url(live_call.pk), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert "****" in body["message"]  # masked
    entry = DoNotCall.objects.get()
    assert entry.organization_id == live_call.organization_id
    assert (entry.phone, entry.source, entry.call_id, entry.created_by_id) == (
        live_call.from_number,
        DoNotCall.Source.OPERATOR,
        live_call.pk,
        operator.pk,
    )
    assert CallEvent.objects.filter(call=live_call, type="opt-out").exists()


def test_button_on_a_campaign_call_opts_the_contact_out(logged_in, org, agent):
    """Outbound campaign call: the dialled number, and the contact is opted out."""
    campaign = CampaignFactory(organization=org, agent=agent, status="running")
    contact = ContactFactory(
        campaign=campaign, phone="+819055556666", status=Contact.Status.IN_CALL
    )
    call = CallSessionFactory(
        organization=org,
        agent=agent,
        direction="outbound",
        from_number="+815012345678",
        to_number="+819055556666",
        status=CallStatus.AI_RESPONDING,
    )
    Attempt.objects.create(contact=contact, number=1, call=call)
    response = logged_in.post(url(call.pk))
    assert response.status_code == 302  # no JSON asked: back to the page
    assert DoNotCall.objects.get().phone == "+819055556666"
    contact.refresh_from_db()
    assert contact.status == Contact.Status.OPTED_OUT


def test_another_organisations_call_is_404(logged_in, foreign_call):
    assert logged_in.post(url(foreign_call.pk)).status_code == 404
    assert not DoNotCall.objects.exists()


def test_needs_post_login_and_csrf(client, operator, live_call):
    assert client.post(url(live_call.pk)).status_code == 302  # to the login page
    client.force_login(operator)
    assert client.get(url(live_call.pk)).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)
    assert strict.post(url(live_call.pk)).status_code == 403
    assert not DoNotCall.objects.exists()


def test_pressing_twice_keeps_one_entry(logged_in, live_call):
    logged_in.post(url(live_call.pk))
    logged_in.post(url(live_call.pk))
    assert DoNotCall.objects.count() == 1
