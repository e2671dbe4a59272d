"""Every endpoint: authentication, organisation scoping, the one error format."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from agents.models import Organization
from calls.status import CallStatus
from tests.agents.factories import (
    AgentProfileFactory,
    CustomerFactory,
    OperatorFactory,
)
from tests.api.conftest import assert_error
from tests.calls.factories import CallSessionFactory

# (method, path); `{call}`, `{agent}`, `{customer}`, `{appointment}` name an object.
ENDPOINTS = [
    ("get", "/api/calls/"),
    ("post", "/api/calls/outbound"),
    ("get", "/api/calls/{call}/"),
    ("get", "/api/calls/{call}/transcript/"),
    ("get", "/api/calls/{call}/events/"),
    ("post", "/api/calls/{call}/hangup"),
    ("post", "/api/calls/{call}/instruct"),
    ("get", "/api/agents/"),
    ("post", "/api/agents/"),
    ("get", "/api/agents/{agent}/"),
    ("put", "/api/agents/{agent}/"),
    ("patch", "/api/agents/{agent}/"),
    ("delete", "/api/agents/{agent}/"),
    ("get", "/api/customers/"),
    ("post", "/api/customers/"),
    ("get", "/api/customers/{customer}/"),
    ("put", "/api/customers/{customer}/"),
    ("patch", "/api/customers/{customer}/"),
    ("delete", "/api/customers/{customer}/"),
    ("get", "/api/appointments/"),
    ("post", "/api/appointments/"),
    ("get", "/api/appointments/{appointment}/"),
    ("put", "/api/appointments/{appointment}/"),
    ("patch", "/api/appointments/{appointment}/"),
    ("delete", "/api/appointments/{appointment}/"),
]
OBJECT_ENDPOINTS = [(m, p) for m, p in ENDPOINTS if "{" in p]


def objects_of(org: Organization) -> dict[str, int]:
    """One object of each kind in `org` (the call is live), by kind."""
    from agents.models import Appointment

    agent = AgentProfileFactory(organization=org)
    customer = CustomerFactory(organization=org)
    call = CallSessionFactory(
        organization=org, agent=agent, status=CallStatus.AI_RESPONDING
    )
    appointment = Appointment.objects.create(
        organization=org,
        customer=customer,
        call=call,
        date="2026-01-05",
        time="10:00",
        name="見学",
    )
    return {
        "call": call.pk,
        "agent": agent.pk,
        "customer": customer.pk,
        "appointment": appointment.pk,
    }


def send(client: APIClient, method: str, path: str, body: Any = None) -> Any:
    return getattr(client, method)(path, body, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_unauthenticated_is_401(anon: APIClient, method: str, path: str) -> None:
    """Without credentials every endpoint refuses with 401 in the error format."""
    response = send(
        anon, method, path.format(call=1, agent=1, customer=1, appointment=1)
    )
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_bad_token_is_401(method: str, path: str) -> None:
    """A wrong token is refused, not treated as anonymous."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    response = send(
        client, method, path.format(call=1, agent=1, customer=1, appointment=1)
    )
    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize(("method", "path"), OBJECT_ENDPOINTS)
def test_other_organisations_object_is_404(
    api: APIClient, other_org: Organization, method: str, path: str
) -> None:
    """Another organisation's object does not exist for you: 404, never 403."""
    ids = objects_of(other_org)
    response = send(api, method, path.format(**ids), {"text": "x"})
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(("method", "path"), OBJECT_ENDPOINTS)
def test_missing_object_is_404(api: APIClient, method: str, path: str) -> None:
    response = send(
        api,
        method,
        path.format(call=999999, agent=999999, customer=999999, appointment=999999),
    )
    assert_error(response, 404, "not_found")


def test_superuser_sees_every_organisation(
    org: Organization, other_org: Organization
) -> None:
    from tests.api.conftest import token_client

    objects_of(org)
    objects_of(other_org)
    root = OperatorFactory(organization=None, is_superuser=True)
    client = token_client(root)
    for path in (
        "/api/calls/",
        "/api/agents/",
        "/api/customers/",
        "/api/appointments/",
    ):
        assert client.get(path).json()["count"] == 2, path


def test_user_without_organisation_sees_nothing(org: Organization) -> None:
    from tests.api.conftest import token_client

    objects_of(org)
    client = token_client(OperatorFactory(organization=None))
    assert client.get("/api/calls/").json()["count"] == 0


def test_token_minted_by_drf_create_token_works(org: Organization) -> None:
    """`manage.py drf_create_token <user>` mints a key the API accepts."""
    user = OperatorFactory(organization=org)
    out = io.StringIO()
    call_command("drf_create_token", user.username, stdout=out)
    key = out.getvalue().split()[2]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/calls/").status_code == 200


def test_session_auth_works(operator: Any) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.get("/api/calls/").status_code == 200


def test_session_post_needs_csrf(operator: Any) -> None:
    """A session (browser) client must send the CSRF token on writes."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post(
        "/api/customers/", {"phone_number": "090-1111-2222"}, format="json"
    )
    assert_error(response, 403, "permission_denied")


def test_malformed_json_is_400(api: APIClient) -> None:
    response = api.post("/api/customers/", "{not json", content_type="application/json")
    assert_error(response, 400, "validation_error")


def test_form_body_is_415(api: APIClient) -> None:
    response = api.post("/api/customers/", {"phone_number": "0311112222"})  # multipart
    assert_error(response, 415, "unsupported_media_type")


def test_method_not_allowed_in_error_format(api: APIClient) -> None:
    response = api.delete("/api/calls/")
    assert_error(response, 405, "method_not_allowed")


@pytest.mark.parametrize(
    "path", ["/api/nope", "/api/calls/-1/", "/api/calls/abc/hangup"]
)
def test_unknown_api_url_is_404_in_error_format(anon: APIClient, path: str) -> None:
    """Even URLs no view matches answer in the error format, for any method."""
    assert_error(anon.get(path), 404, "not_found")
    assert_error(anon.post(path, {}, format="json"), 404, "not_found")
