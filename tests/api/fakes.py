"""Fakes plugged in through settings: a dialer and a channel layer that is down."""

from __future__ import annotations

from typing import Any

from calls.models import CallSession
from calls.twilio_client import TwilioError


class FakeDialer:
    """Records the calls it is asked to dial; answers SIDs, or fails if told to."""

    def __init__(self) -> None:
        self.dialled: list[CallSession] = []
        self.error: TwilioError | None = None

    def __call__(self, call: CallSession) -> str:
        self.dialled.append(call)
        if self.error is not None:
            raise self.error
        return f"CA{call.pk:032x}"


# The dialer `settings.TWILIO_DIALER` points at during a test (see conftest).
DIALER = FakeDialer()


class BrokenChannelLayer:
    """A channel layer whose server is unreachable: every operation fails."""

    extensions: list[str] = ["groups"]

    def __init__(self, **_: Any) -> None:
        pass

    async def new_channel(self, prefix: str = "specific.") -> str:
        return f"{prefix}broken"

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        raise ConnectionError("channel layer down")

    async def receive(self, channel: str) -> dict[str, Any]:
        raise ConnectionError("channel layer down")

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        raise ConnectionError("channel layer down")

    async def group_add(self, group: str, channel: str) -> None:
        raise ConnectionError("channel layer down")

    async def group_discard(self, group: str, channel: str) -> None:
        raise ConnectionError("channel layer down")
