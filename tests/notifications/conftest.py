"""Fixtures of the notification tests: loopback receivers (private URLs allowed),
an organisation with an endpoint, and deliveries run inline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from notifications.models import EVENT_TYPES, WebhookEndpoint
from notifications.services import delivery_attempt
from tests.agents.factories import OperatorFactory, OrganizationFactory
from tests.notifications.receiver import Receiver

SECRET = "whsec_test_secret_0123456789"


@pytest.fixture(autouse=True)
def _private_urls(settings: Any) -> None:
    settings.ALLOW_PRIVATE_URLS = True
    settings.WEBHOOK_FIRST_RETRY_SECONDS = 30
    settings.WEBHOOK_LEASE_SECONDS = 120


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET).start()
    yield r
    r.stop()


@pytest.fixture
def org(db: None) -> Any:
    return OrganizationFactory()


@pytest.fixture
def operator(org: Any) -> Any:
    return OperatorFactory(organization=org)


@pytest.fixture
def endpoint(org: Any, receiver: Receiver) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        organization=org, url=receiver.url, secret=SECRET, events=list(EVENT_TYPES)
    )


class Inline:
    """An `enqueue` that records and can run the attempt at once."""

    def __init__(self, run: bool = True) -> None:
        self.run = run
        self.calls: list[tuple[int, str]] = []
        self.outcomes: list[str] = []

    def __call__(self, delivery_id: int, lease: str) -> None:
        self.calls.append((delivery_id, lease))
        if self.run:
            self.outcomes.append(delivery_attempt(delivery_id=delivery_id, lease=lease))


@pytest.fixture
def inline() -> Inline:
    return Inline()


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Tasks run where they are sent (the signal receivers enqueue real tasks)."""
    from callcenter.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before
