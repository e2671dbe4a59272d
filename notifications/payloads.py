"""The `data` of each event type (F-77; docs/WEBHOOKS.md lists the fields).

Read by attribute name: the call's summary fields and the job model come from the
after-call branch (callcenter/domain_events.py is the seam).
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def _time(value: Any) -> int | None:
    return int(value.timestamp()) if isinstance(value, dt.datetime) else None


def call_data(call: Any, **extra: Any) -> dict[str, Any]:
    """`call_id`, `status`, `summary`, `extraction` and what else the call says."""
    return {
        "call_id": call.pk,
        "status": call.status,
        "summary": getattr(call, "summary", "") or "",
        "extraction": getattr(call, "extraction", None) or {},
        "direction": getattr(call, "direction", ""),
        "agent_id": getattr(call, "agent_id", None),
        "customer_id": getattr(call, "customer_id", None),
        "from": getattr(call, "from_number", ""),
        "to": getattr(call, "to_number", ""),
        "started_at": _time(getattr(call, "created_at", None)),
        "ended_at": _time(getattr(call, "ended_at", None)),
        **extra,
    }


def job_data(job: Any, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "call_id": getattr(job, "call_id", None),
        "customer_id": getattr(job, "customer_id", None),
        "title": getattr(job, "title", ""),
        "fields": getattr(job, "fields", None) or {},
        "status": getattr(job, "status", ""),
        "assignee_id": getattr(job, "assignee_id", None),
        "created_at": _time(getattr(job, "created_at", None)),
        "updated_at": _time(getattr(job, "updated_at", None)),
        **extra,
    }


def campaign_data(campaign: Any, progress: dict[str, Any]) -> dict[str, Any]:
    return {
        "campaign_id": campaign.pk,
        "name": campaign.name,
        "status": campaign.status,
        "started_at": _time(campaign.started_at),
        "finished_at": _time(campaign.finished_at),
        "total": progress.get("total", 0),
        "counts": progress.get("counts", {}),
        "outcomes": progress.get("outcomes", {}),
    }
