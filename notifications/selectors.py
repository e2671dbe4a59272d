"""Reads of the notifications app, scoped to the asker (F-77)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from agents.selectors import organization_scope
from notifications.models import Delivery, NotificationSettings, WebhookEndpoint


def endpoints_visible(*, user: Any) -> QuerySet[WebhookEndpoint]:
    return organization_scope(WebhookEndpoint.objects.all(), user=user)


def endpoint_deliveries(*, endpoint: WebhookEndpoint) -> QuerySet[Delivery]:
    return endpoint.deliveries.select_related("event").order_by("-created_at", "-pk")


def deliveries_visible(*, user: Any) -> QuerySet[Delivery]:
    return organization_scope(
        Delivery.objects.select_related("event", "endpoint"),
        user=user,
        path="endpoint__organization",
    ).order_by("-created_at", "-pk")


def job_email_recipients(*, organization_id: int) -> list[str]:
    """Email addresses of the operators chosen to hear about new jobs."""
    prefs = NotificationSettings.objects.filter(organization_id=organization_id).first()
    if prefs is None:
        return []
    return sorted(
        {
            op.email
            for op in prefs.job_email_operators.filter(
                is_active=True, organization_id=organization_id
            )
            if op.email
        }
    )
