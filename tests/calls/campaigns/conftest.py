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


ACCOUNT_SID = "AC" + "2" * 32
AUTH_TOKEN = "dialer-test-token"


@pytest.fixture
async def twilio_emulator(settings: Any) -> Any:
    """The Twilio emulator on a loopback port; the REST client points at it.

    Webhooks go to a closed port (nothing answers): these tests look at creates.
    """
    from realtime.emulators.twilio_api import TwilioEmulator

    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = "+815012345678"
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9"
    async with TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN) as emulator:
        settings.TWILIO_API_BASE_URL = emulator.base_url
        yield emulator
