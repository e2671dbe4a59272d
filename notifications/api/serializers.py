"""Input validation and output shapes of the webhook endpoints API (F-77).

Field names are contracts (SPEC F-77): `url`, `secret`, `events`, `active`; the
secret is write-only (it is never sent back).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from notifications.forms import SECRET_MIN
from notifications.models import EVENT_TYPES, Delivery, WebhookEndpoint
from notifications.services import url_check


class WebhookEndpointSerializer(serializers.ModelSerializer):
    """A URL of your organisation that receives signed events."""

    url = serializers.URLField(
        max_length=500,
        help_text="http(s) URL; must resolve to public addresses "
        "(unless the service allows private ones).",
    )
    secret = serializers.CharField(
        write_only=True,
        min_length=SECRET_MIN,
        max_length=200,
        help_text="Signs each delivery (HMAC-SHA256); never returned.",
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=list(EVENT_TYPES)),
        min_length=1,
        help_text="Event types delivered to this URL.",
    )
    active = serializers.BooleanField(
        required=False,
        default=True,
        help_text="Off: nothing is sent. A 410 answer turns it off.",
    )
    disabled_reason = serializers.CharField(
        read_only=True, help_text="Why it was turned off (empty when on)."
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "secret",
            "events",
            "active",
            "disabled_reason",
            "created_at",
        ]
        read_only_fields = ["id", "disabled_reason", "created_at"]

    def validate_url(self, value: str) -> str:
        try:
            url_check(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict["url"]) from exc
        return value

    def validate_events(self, value: list[str]) -> list[str]:
        chosen = set(value)
        return [e for e in EVENT_TYPES if e in chosen]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        request = self.context.get("request")
        if (
            self.instance is None
            and getattr(request.user, "organization_id", None) is None
        ):
            raise serializers.ValidationError(
                "Your account belongs to no organisation: webhook endpoints belong to one."
            )
        return attrs


class DeliverySerializer(serializers.ModelSerializer):
    """One event for this endpoint: attempts, the last answer and the next try."""

    event_id = serializers.CharField(source="event.public_id", help_text="`evt_…`")
    type = serializers.CharField(source="event.type", help_text="The event type.")
    created = serializers.DateTimeField(source="event.created_at")

    class Meta:
        model = Delivery
        fields = [
            "id",
            "event_id",
            "type",
            "created",
            "state",
            "attempts",
            "last_status",
            "last_response",
            "last_error",
            "last_attempt_at",
            "next_try_at",
            "delivered_at",
        ]
        read_only_fields = fields
