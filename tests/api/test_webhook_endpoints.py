"""The webhook endpoints API (F-77): the contract's fields, validation (bad event
names, private URLs refused naming the address, short secrets), the secret never
returned, and organisation scoping of endpoints and their delivery logs."""

from __future__ import annotations

from typing import Any

import pytest

from notifications.models import Delivery, Event, WebhookEndpoint
from tests.agents.factories import OperatorFactory
from tests.api.conftest import assert_error, token_client

URL = "/api/webhook-endpoints/"
SECRET = "whsec_api_secret_0123456789"


@pytest.fixture(autouse=True)
def _private_urls(settings: Any) -> None:
    settings.ALLOW_PRIVATE_URLS = True


def endpoint_of(org: Any, **fields: Any) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        organization=org,
        url=fields.pop("url", "http://127.0.0.1:9/hook"),
        secret=SECRET,
        events=fields.pop("events", ["job.created"]),
        **fields,
    )


def test_create_and_list(api, org):
    body = {
        "url": "http://127.0.0.1:8999/hook",
        "secret": SECRET,
        "events": ["job.created", "call.completed"],
        "active": True,
    }
    created = api.post(URL, body, format="json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["url"] == body["url"] and data["active"] is True
    assert data["events"] == ["call.completed", "job.created"]  # documented order
    assert "secret" not in data and data["disabled_reason"] == ""
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.organization == org and endpoint.secret == SECRET
    listed = api.get(URL).json()
    assert [e["id"] for e in listed["results"]] == [endpoint.pk]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["call.exploded"]}, "events"),
        ({"events": []}, "events"),
        ({"secret": "short"}, "secret"),
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://127.0.0.1/x"}, "url"),
    ],
)
def test_bad_input_is_refused_naming_the_field(api, body, field):
    full = {
        "url": "http://127.0.0.1:8999/hook",
        "secret": SECRET,
        "events": ["job.created"],
    }
    response = api.post(URL, {**full, **body}, format="json")
    assert_error(response, 400, "validation_error", field)
    assert not WebhookEndpoint.objects.exists()


def test_private_url_refused_when_not_allowed(api, settings):
    settings.ALLOW_PRIVATE_URLS = False
    response = api.post(
        URL,
        {
            "url": "http://192.168.0.10/hook",
            "secret": SECRET,
            "events": ["job.created"],
        },
        format="json",
    )
    error = assert_error(response, 400, "validation_error", "url")
    assert "192.168.0.10" in str(error["details"]["url"])


def test_scoped_to_the_organisation(api, org, other_org):
    mine = endpoint_of(org)
    theirs = endpoint_of(other_org)
    event = Event.objects.create(organization=other_org, type="job.created", data={})
    Delivery.objects.create(endpoint=theirs, event=event)
    assert [e["id"] for e in api.get(URL).json()["results"]] == [mine.pk]
    assert api.get(f"{URL}{theirs.pk}/").status_code == 404
    assert api.get(f"{URL}{theirs.pk}/deliveries/").status_code == 404
    assert (
        api.patch(f"{URL}{theirs.pk}/", {"active": False}, format="json").status_code
        == 404
    )
    assert api.delete(f"{URL}{theirs.pk}/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.active


def test_deliveries_of_an_endpoint(api, org):
    endpoint = endpoint_of(org)
    event = Event.objects.create(
        organization=org, type="job.created", data={"job_id": 1}
    )
    Delivery.objects.create(
        endpoint=endpoint,
        event=event,
        attempts=3,
        last_status=500,
        last_response="oops",
        state="pending",
    )
    response = api.get(f"{URL}{endpoint.pk}/deliveries/")
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["event_id"] == event.public_id and row["type"] == "job.created"
    assert row["attempts"] == 3 and row["last_status"] == 500
    assert set(row) >= {"next_try_at", "state", "last_response", "delivered_at"}


def test_turning_a_disabled_endpoint_on_again_clears_the_reason(api, org):
    endpoint = endpoint_of(org, active=False, disabled_reason="410 Gone at …")
    response = api.patch(f"{URL}{endpoint.pk}/", {"active": True}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["disabled_reason"] == ""
    endpoint.refresh_from_db()
    assert endpoint.active and endpoint.disabled_reason == ""


def test_a_user_without_an_organisation_cannot_create(db):
    loner = OperatorFactory(organization=None)
    response = token_client(loner).post(
        URL,
        {
            "url": "http://127.0.0.1:8999/hook",
            "secret": SECRET,
            "events": ["job.created"],
        },
        format="json",
    )
    assert_error(response, 400, "validation_error")


def test_anonymous_is_refused(anon):
    assert anon.get(URL).status_code in (401, 403)
