"""API fixtures: two organisations, token-authenticated clients, a fake dialer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import Operator, Organization
from tests.agents.factories import OperatorFactory, OrganizationFactory
from tests.api import fakes


@pytest.fixture(autouse=True)
def _api_settings(settings: Any) -> Iterator[None]:
    """Fresh throttle counters, fast passwords, a fake dialer, a caller ID; no Twilio."""
    cache.clear()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    fakes.DIALER.dialled.clear()
    fakes.DIALER.error = None
    settings.TWILIO_DIALER = "tests.api.fakes.DIALER"
    settings.TWILIO_FROM_NUMBER = "+815012345678"
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # refused, never the network
    yield
    cache.clear()


@pytest.fixture
def dialer() -> fakes.FakeDialer:
    return fakes.DIALER


@pytest.fixture
def org(db: None) -> Organization:
    return OrganizationFactory()


@pytest.fixture
def other_org(db: None) -> Organization:
    return OrganizationFactory()


@pytest.fixture
def operator(org: Organization) -> Operator:
    return OperatorFactory(organization=org)


def token_client(user: Operator) -> APIClient:
    """An API client authenticated with the user's token."""
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(operator: Operator) -> APIClient:
    """A client of an operator of `org`, by token."""
    return token_client(operator)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


def assert_error(
    response: Any, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """Assert the documented error body; return its `error` object."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    if field is not None:
        assert field in error["details"], error
    return error
