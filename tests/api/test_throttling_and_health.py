"""Throttling of mutating requests, and /api/health."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError
from rest_framework.test import APIClient

from agents.models import Organization
from calls import live
from tests.agents.factories import AgentProfileFactory, OperatorFactory
from tests.api.conftest import assert_error, token_client


@pytest.fixture
def low_rates(settings: Any) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"mutations": "3/min", "outbound": "1/min"},
    }


@pytest.mark.usefixtures("low_rates")
def test_mutations_throttled_per_user_in_error_format(
    api: APIClient, org: Organization
) -> None:
    for n in range(3):
        ok = api.post(
            "/api/customers/", {"phone_number": f"03111122{n:02d}"}, format="json"
        )
        assert ok.status_code == 201, ok.content
    response = api.post(
        "/api/customers/", {"phone_number": "0311119999"}, format="json"
    )
    error = assert_error(response, 429, "throttled")
    assert 0 < error["details"]["retry_after"] <= 60
    assert int(response["Retry-After"]) == error["details"]["retry_after"]
    # Reads are not throttled, and another user has their own allowance.
    assert api.get("/api/customers/").status_code == 200
    other = token_client(OperatorFactory(organization=org))
    assert (
        other.post(
            "/api/customers/", {"phone_number": "0311118888"}, format="json"
        ).status_code
        == 201
    )


@pytest.mark.usefixtures("low_rates")
def test_outbound_has_its_own_lower_rate(api: APIClient, org: Organization) -> None:
    agent = AgentProfileFactory(organization=org)
    body = {"agent": agent.pk, "to": "0311112222"}
    assert api.post("/api/calls/outbound", body, format="json").status_code == 201
    assert_error(api.post("/api/calls/outbound", body, format="json"), 429, "throttled")


def test_health_ok_without_auth(anon: APIClient, db: None) -> None:
    live.live_calls_increment()
    try:
        response = anon.get("/api/health")
    finally:
        live.live_calls_decrement()
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": True,
        "channel_layer": True,
        "live_calls_in_process": 1,
        "draining": False,
    }


def test_health_503_draining_at_once(anon: APIClient, db: None) -> None:
    """From the moment the process starts draining (F-69), health says so with a 503
    so that balancers send it no new calls; the probes still report."""
    from callcenter import draining

    assert draining.begin()
    try:
        response = anon.get("/api/health")
    finally:
        draining.reset()
    assert response.status_code == 503
    assert response.json() == {
        "status": "draining",
        "database": True,
        "channel_layer": True,
        "live_calls_in_process": 0,
        "draining": True,
    }
    assert anon.get("/api/health").status_code == 200


def test_health_degraded_when_channel_layer_is_down(
    anon: APIClient, db: None, settings: Any
) -> None:
    """Redis down (F-71): calls still talk, so a proxy keeps sending them here."""
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "tests.api.fakes.BrokenChannelLayer"}
    }
    response = anon.get("/api/health")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["channel_layer"] is False
    assert response.json()["database"] is True


def test_health_degraded_when_layer_never_answers(
    anon: APIClient, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layer that swallows the message is caught by the timeout."""
    from channels.layers import get_channel_layer

    from calls import selectors

    async def black_hole(self: Any, channel: str, message: dict[str, Any]) -> None:
        return None

    # Whichever layer is configured (in-memory, or Redis on CI) swallows the probe.
    monkeypatch.setattr(type(get_channel_layer()), "send", black_hole)
    monkeypatch.setattr(selectors, "CHANNEL_LAYER_TIMEOUT_S", 0.05)
    response = anon.get("/api/health")
    assert response.status_code == 200 and response.json()["channel_layer"] is False
    assert response.json()["status"] == "degraded"


def test_health_503_when_database_is_down(
    anon: APIClient, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calls import selectors

    class DeadConnection:
        def cursor(self) -> Any:
            raise DatabaseError("connection refused")

    monkeypatch.setattr(selectors, "connection", DeadConnection())
    response = anon.get("/api/health")
    assert response.status_code == 503
    assert response.json()["database"] is False


def test_live_call_counter() -> None:
    """The bridge's per-process count: up while a call runs, never below zero."""
    before = live.live_calls_in_process()
    with live.live_call_counted():
        assert live.live_calls_in_process() == before + 1
    assert live.live_calls_in_process() == before
    if before == 0:
        assert live.live_calls_decrement() == 0


@pytest.mark.django_db(transaction=True)
async def test_health_through_asgi() -> None:
    """Under the ASGI server the sync view's layer round trip still works."""
    from django.test import AsyncClient

    response = await AsyncClient().get("/api/health")
    assert response.status_code == 200, response.content
    assert response.json()["channel_layer"] is True
