"""Webhook endpoints, the events they hear about and each endpoint's delivery (F-77).

An `Event` is written once, with a stable public id (`evt_…`); a `Delivery` is one
event for one endpoint (unique together), retried with back-off until a 2xx, a 410,
or 24 h. The schedule lives in the rows (`next_try_at`, the lease), not in broker
messages: a periodic sweep hands due rows to the delivery task again.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from agents.models import Organization


class EventType(models.TextChoices):
    CALL_COMPLETED = "call.completed", "call.completed"
    CALL_HANDOFF = "call.handoff", "call.handoff"
    JOB_CREATED = "job.created", "job.created"
    JOB_UPDATED = "job.updated", "job.updated"
    CAMPAIGN_COMPLETED = "campaign.completed", "campaign.completed"


EVENT_TYPES: tuple[str, ...] = tuple(EventType.values)


def new_event_id() -> str:
    """`evt_` and 24 random hexadecimal digits."""
    return "evt_" + secrets.token_hex(12)


class WebhookEndpoint(models.Model):
    """A URL of an organisation that hears about the events it subscribed to."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        verbose_name=_("organisation"),
    )
    url = models.URLField(_("URL"), max_length=500)
    secret = models.CharField(
        _("secret"),
        max_length=200,
        help_text=_("Signs each delivery (HMAC-SHA256); the receiver checks it."),
    )
    events = models.JSONField(_("events"), default=list)
    active = models.BooleanField(_("active"), default=True)
    disabled_reason = models.CharField(
        _("disabled because"), max_length=300, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("webhook endpoint")
        ordering = ["organization", "pk"]

    def __str__(self) -> str:
        return self.url


class Event(models.Model):
    """Something that happened, as the receivers see it (`id`, `type`, `created`, `data`)."""

    public_id = models.CharField(
        _("event id"), max_length=40, unique=True, default=new_event_id
    )
    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="webhook_events",
        verbose_name=_("organisation"),
    )
    type = models.CharField(_("type"), max_length=40, choices=EventType.choices)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    data = models.JSONField(_("data"), default=dict)

    class Meta:
        verbose_name = _("event")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.public_id} {self.type}"


class Delivery(models.Model):
    """One event for one endpoint: its attempts, last answer and next try."""

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        DELIVERED = "delivered", _("delivered")
        FAILED = "failed", _("failed")

    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.CASCADE,
        related_name="deliveries",
        verbose_name=_("endpoint"),
    )
    event = models.ForeignKey(
        Event,
        on_delete=models.CASCADE,
        related_name="deliveries",
        verbose_name=_("event"),
    )
    state = models.CharField(
        _("state"), max_length=12, choices=State.choices, default=State.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_status = models.PositiveIntegerField(_("last status"), null=True, blank=True)
    last_response = models.CharField(_("last response"), max_length=500, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    next_try_at = models.DateTimeField(_("next try"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    # Retries stop 24 h after this: the event's creation, or the last "send again".
    retry_from = models.DateTimeField(null=True, blank=True)
    # Who may send it now: set when a task is enqueued (or runs), void after `lease_until`.
    lease = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event"], name="one_delivery_per_endpoint_event"
            )
        ]
        indexes = [models.Index(fields=["state", "next_try_at"])]

    def __str__(self) -> str:
        return f"{self.event.public_id} → {self.endpoint.url}"


class NotificationSettings(models.Model):
    """Per organisation: which operators get an email when a job card is created."""

    organization = models.OneToOneField(
        Organization,
        on_delete=models.CASCADE,
        related_name="notification_settings",
        verbose_name=_("organisation"),
    )
    job_email_operators = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="+",
        verbose_name=_("operators emailed on a new job"),
    )

    class Meta:
        verbose_name = _("notification settings")
        verbose_name_plural = _("notification settings")

    def __str__(self) -> str:
        return str(self.organization)
