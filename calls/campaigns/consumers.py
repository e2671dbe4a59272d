"""`ws/campaigns/<campaign_id>/`: a campaign's live progress for its page (F-48, F-67).

Same rules as the call monitor (`calls.consumers`): a socket that is not logged in,
or asks for another organisation's campaign, is closed with 4403 before it is
accepted. Once in the group it sends one `campaign.snapshot` (the progress now, so
nothing broadcast between the page's render and the socket joining is lost), then
relays every `campaign.progress` that `campaign_broadcast` sends:
`{"type", "campaign_id", "status", "progress", "total", "counts", "outcomes"}`.
"""

from __future__ import annotations

from typing import Any

from callcenter.db import db_sync_to_async
from calls.consumers import MonitorConsumer
from calls.groups import campaign_monitor_group


class CampaignMonitorConsumer(MonitorConsumer):
    """One campaign's progress, counts and outcomes, live."""

    async def connect(self) -> None:
        await super().connect()
        if self.groups_joined:
            campaign_id = self.scope["url_route"]["kwargs"]["campaign_id"]
            snapshot = await _snapshot(campaign_id)
            if snapshot is not None:
                await self.send_json(snapshot)

    async def monitor_groups(self, user: Any) -> list[str] | None:
        campaign_id = self.scope["url_route"]["kwargs"]["campaign_id"]
        if not await _user_may_see_campaign(user, campaign_id):
            return None
        return [campaign_monitor_group(campaign_id)]


@db_sync_to_async
def _user_may_see_campaign(user: Any, campaign_id: int) -> bool:
    from calls.campaigns.selectors import campaigns_visible

    return campaigns_visible(user=user).filter(pk=campaign_id).exists()


@db_sync_to_async
def _snapshot(campaign_id: int) -> dict[str, Any] | None:
    from calls.campaigns.models import Campaign
    from calls.campaigns.selectors import campaign_progress

    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        return None
    return {
        "type": "campaign.snapshot",
        "campaign_id": campaign.pk,
        **campaign_progress(campaign=campaign),
    }
