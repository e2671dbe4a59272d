"""`ws/jobs/`: job cards of the user's organisation as they are made and changed."""

from __future__ import annotations

from typing import Any

from calls.consumers import MonitorConsumer, _user_organization_ids
from calls.groups import org_jobs_group


class JobsConsumer(MonitorConsumer):
    """Forwards `job.created` and `job.updated` (jobs.live) to the page."""

    async def monitor_groups(self, user: Any) -> list[str] | None:
        org_ids = await _user_organization_ids(user)
        if not org_ids:
            return None
        return [org_jobs_group(org_id) for org_id in org_ids]
