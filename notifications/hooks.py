"""Events the notifications app publishes from other apps' services (F-77):
`call.handoff` from `handoff.services`, `campaign.completed` from the campaigns.

Each is published once the caller's transaction commits and never raises into it.
"""

from __future__ import annotations

from typing import Any

from notifications import payloads
from notifications.models import EventType
from notifications.services import event_publish_on_commit


def call_handoff_publish(*, call: Any, trigger: str, reason: str, mode: str) -> None:
    """A handoff started (`mode` "transfer": a human is dialled; "message": the AI
    takes a message on a web call)."""
    event_publish_on_commit(
        organization_id=call.organization_id,
        type=EventType.CALL_HANDOFF,
        data=lambda: payloads.call_data(
            call, trigger=trigger, reason=reason, mode=mode
        ),
    )


def campaign_completed_publish(*, campaign: Any) -> None:
    def data() -> dict[str, Any]:
        from calls.campaigns.selectors import campaign_progress

        return payloads.campaign_data(campaign, campaign_progress(campaign=campaign))

    event_publish_on_commit(
        organization_id=campaign.organization_id,
        type=EventType.CAMPAIGN_COMPLETED,
        data=data,
    )
