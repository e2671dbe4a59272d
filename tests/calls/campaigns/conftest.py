from __future__ import annotations

from typing import Any

import pytest


class Dispatched:
    """Stands in for the Celery dispatch: records (attempt_id, lease)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str | None]] = []

    def __call__(self, attempt_id: int, lease: str | None) -> None:
        self.calls.append((attempt_id, lease))

    @property
    def ids(self) -> list[int]:
        return [a for a, _ in self.calls]


@pytest.fixture
def dispatched() -> Dispatched:
    return Dispatched()


@pytest.fixture
def dialer_settings(settings: Any) -> Any:
    settings.MAX_LIVE_CALLS = 100
    settings.CAMPAIGN_INBOUND_RESERVE = 20
    settings.DIALER_LEASE_SECONDS = 30
    return settings
