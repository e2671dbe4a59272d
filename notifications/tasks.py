"""Celery tasks of the notifications (F-77): thin wrappers over `services` and `emails`.

- `notifications.tasks.deliver(delivery_id, lease)`: one attempt of one delivery.
- `notifications.tasks.sweep`: beat runs it every few seconds (`webhook-sweep`);
  it enqueues due retries and anything a dead worker or a lost message left behind.
- `notifications.tasks.job_email(organization_id, job)`: the new-job email.

The schedule lives in the database (`Delivery.next_try_at` and its lease), never
in ETA messages.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from notifications import emails, services


def enqueue_delivery(delivery_id: int, lease: str) -> None:
    """Enqueue one attempt (called once the lease is committed)."""
    deliver.apply_async(args=[delivery_id, lease])


@shared_task(name="notifications.tasks.deliver", ignore_result=True)
def deliver(delivery_id: int, lease: str) -> str:
    return services.delivery_attempt(delivery_id=delivery_id, lease=lease)


@shared_task(name="notifications.tasks.sweep", ignore_result=True)
def sweep() -> int:
    return len(services.deliveries_sweep())


@shared_task(name="notifications.tasks.job_email", ignore_result=True)
def job_email(organization_id: int, job: dict[str, Any]) -> int:
    return emails.job_created_email_send(organization_id=organization_id, job=job)
