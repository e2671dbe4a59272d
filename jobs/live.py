"""Job cards on the operators' pages over Channels (F-77): the toast and live lists."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.urls import reverse

from callcenter.db import caller_loop, send_in_order
from calls.groups import org_jobs_group
from calls.layer import agroup_send_best_effort, broadcasts_paused

log = logging.getLogger(__name__)


def job_message(
    job: Any, kind: str, changed: list[str] | None = None
) -> dict[str, Any]:
    """What the pages receive about a job (type `job.created` or `job.updated`)."""
    return {
        "type": kind,
        "job_id": job.pk,
        "title": job.title,
        "status": job.status,
        "url": reverse("jobs:detail", args=[job.pk]),
        "changed": changed or [],
    }


def jobs_broadcast(*, organization_id: int, message: dict[str, Any]) -> None:
    """Best effort, bounded (calls/layer.py): a job is saved whatever the layer does."""
    if get_channel_layer() is None or broadcasts_paused():
        return

    async def send() -> None:
        await agroup_send_best_effort(org_jobs_group(organization_id), message)

    loop = caller_loop()
    if loop is not None and not loop.is_closed():
        send_in_order(loop, send)
        return
    try:
        async_to_sync(send)()
    except Exception:  # a page hiccup must never break the caller
        log.warning("jobs broadcast failed", exc_info=True)
