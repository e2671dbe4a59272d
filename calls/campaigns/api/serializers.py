"""Input validation and output shapes of the campaigns and do-not-call API (F-67).

Field names are contracts (SPEC F-67). A campaign's organisation is its agent's:
the agent resolves only among the caller's own profiles, so another organisation's
id is "does not exist". Times are wall-clock `HH:MM` in the campaign's IANA zone.
"""

from __future__ import annotations

import functools
import json
import zoneinfo
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.api.serializers import JSONObjectField, LocalTimeField, PhoneNumberField
from agents.selectors import agent_list
from calls.campaigns.models import (
    CAMPAIGN_SETTINGS_FIELDS,
    DEFAULT_OPENING,
    RETRYABLE_RESULTS,
    Attempt,
    Campaign,
    Contact,
    DoNotCall,
)
from calls.campaigns.selectors import campaign_progress

COUNTS_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "integer", "minimum": 0},
}


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class HourMinuteField(LocalTimeField):
    """`HH:MM` out; `HH:MM` or `HH:MM:SS` in."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("format", "%H:%M")
        super().__init__(**kwargs)


class CampaignFilterSerializer(serializers.Serializer):
    """Query filters of `GET /api/campaigns/`."""

    status = serializers.ChoiceField(choices=Campaign.Status.choices, required=False)


class ContactFilterSerializer(serializers.Serializer):
    """Query filters of `GET /api/campaigns/<id>/contacts/`."""

    status = serializers.ChoiceField(choices=Contact.Status.choices, required=False)


class CampaignSerializer(serializers.ModelSerializer):
    """A campaign: who calls, from which number, when, how fast, and what it says."""

    agent = serializers.PrimaryKeyRelatedField(
        queryset=agent_list(user=None),
        help_text="Agent profile id (of your organisation).",
    )
    from_number = PhoneNumberField(
        help_text="The caller number; any format in, E.164 out."
    )
    time_zone = serializers.CharField(
        max_length=64,
        required=False,
        default="Asia/Tokyo",
        help_text="IANA time zone of the calling window.",
    )
    days = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=7),
        min_length=1,
        max_length=7,
        required=False,
        help_text="ISO weekdays to call on: 1 = Monday … 7 = Sunday.",
    )
    window_start = HourMinuteField(required=False, help_text="First dial, HH:MM.")
    window_end = HourMinuteField(
        required=False, help_text="No dial at or after, HH:MM; after window_start."
    )
    retry_on = serializers.ListField(
        child=serializers.ChoiceField(choices=RETRYABLE_RESULTS),
        max_length=len(RETRYABLE_RESULTS),
        required=False,
        help_text="Attempt results that are retried.",
    )
    opening = serializers.CharField(
        required=False,
        default=DEFAULT_OPENING,
        max_length=2000,
        help_text="What the agent says first (F-66); may use {{business_name}}, "
        "{{caller_name}}, {{product}} and contact variables.",
    )
    progress = serializers.SerializerMethodField(
        help_text="Final contacts over all, 0–100."
    )
    total = serializers.SerializerMethodField(help_text="Contacts in the campaign.")
    counts = serializers.SerializerMethodField(
        help_text="Contact status → number of contacts."
    )
    outcomes = serializers.SerializerMethodField(
        help_text="Outcome → number of contacts."
    )

    class Meta:
        model = Campaign
        fields = [
            "id",
            *CAMPAIGN_SETTINGS_FIELDS,
            "status",
            "progress",
            "total",
            "counts",
            "outcomes",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            agent_field = self.fields["agent"]
            assert isinstance(agent_field, serializers.PrimaryKeyRelatedField)
            agent_field.queryset = agent_list(user=request.user)

    # Output ---------------------------------------------------------------------

    def _progress(self, campaign: Campaign) -> dict[str, Any]:
        cached: dict[str, Any] | None = getattr(campaign, "_progress_cache", None)
        if cached is None:
            cached = campaign_progress(campaign=campaign)
            campaign._progress_cache = cached  # type: ignore[attr-defined]
        return cached

    @extend_schema_field({"type": "integer", "minimum": 0, "maximum": 100})
    def get_progress(self, campaign: Campaign) -> int:
        return int(self._progress(campaign)["progress"])

    @extend_schema_field({"type": "integer", "minimum": 0})
    def get_total(self, campaign: Campaign) -> int:
        return int(self._progress(campaign)["total"])

    @extend_schema_field(COUNTS_SCHEMA)
    def get_counts(self, campaign: Campaign) -> dict[str, int]:
        return dict(self._progress(campaign)["counts"])

    @extend_schema_field(COUNTS_SCHEMA)
    def get_outcomes(self, campaign: Campaign) -> dict[str, int]:
        return dict(self._progress(campaign)["outcomes"])

    # Input ----------------------------------------------------------------------

    def validate_time_zone(self, value: str) -> str:
        if value not in _zones():
            raise serializers.ValidationError(
                "Not an IANA time zone (e.g. Asia/Tokyo)."
            )
        return value

    def validate_days(self, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Each day once.")
        return sorted(value)

    def validate_retry_on(self, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Each result once.")
        return [r for r in RETRYABLE_RESULTS if r in value]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: Campaign | None = self.instance
        start = attrs.get("window_start", getattr(instance, "window_start", None))
        end = attrs.get("window_end", getattr(instance, "window_end", None))
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError(
                {"window_end": ["The window must end after it starts."]}
            )
        agent = attrs.get("agent")
        if (
            instance is not None
            and agent is not None
            and agent.organization_id != instance.organization_id
        ):
            raise serializers.ValidationError(
                {"agent": ["The agent must be of the campaign's organisation."]}
            )
        return attrs


class CampaignStatusSerializer(serializers.Serializer):
    """The reply to start, pause, resume and cancel: the campaign's new status."""

    status = serializers.ChoiceField(choices=Campaign.Status.choices)


class ContactSerializer(serializers.ModelSerializer):
    """One person a campaign calls, where they are and how it ended."""

    variables = JSONObjectField(read_only=True)

    class Meta:
        model = Contact
        fields = [
            "id",
            "phone",
            "name",
            "variables",
            "status",
            "attempts",
            "next_attempt_at",
            "outcome",
            "source_line",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ContactsImportSerializer(serializers.Serializer):
    """A CSV of contacts, UTF-8 or Shift_JIS, header on line 1."""

    file = serializers.FileField(
        help_text="Columns: `phone` (or `phone_number`, `number`), `name`; every "
        "other column becomes a prompt variable `{{column}}`."
    )


class RejectedRowSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="CSV line; 1 is the header.")
    phone = serializers.CharField(allow_blank=True)
    reason = serializers.ChoiceField(
        choices=["invalid", "duplicate", "dnc", "missing_variable"]
    )
    detail = serializers.CharField(allow_blank=True)


class ImportReportSerializer(serializers.Serializer):
    """Rows accepted, and every rejected row with why."""

    accepted = serializers.IntegerField(min_value=0)
    rejected = RejectedRowSerializer(many=True)


class DoNotCallSerializer(serializers.ModelSerializer):
    """A number on the organisation's do-not-call list (F-65)."""

    phone = PhoneNumberField(help_text="Any format in, E.164 out.")
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True)

    class Meta:
        model = DoNotCall
        fields = ["id", "phone", "reason", "source", "call", "created_at"]
        read_only_fields = ["id", "source", "call", "created_at"]


RESULTS_CSV_COLUMNS = (
    "phone",
    "name",
    "attempt",
    "call_id",
    "call_sid",
    "status",
    "answered_by",
    "duration",
    "outcome",
    "opted_out",
    "result",
    "contact_status",
    "dialed_at",
    "ended_at",
    "extraction_status",
    "summary",
    "extraction",
)


def results_csv_row(attempt: Attempt, *, opted_out: bool) -> list[Any]:
    """One row of results.csv: the attempt, its contact and its call."""
    contact = attempt.contact
    call = attempt.call
    return [
        contact.phone,
        contact.name,
        attempt.number,
        attempt.call_id or "",
        attempt.call_sid or "",
        attempt.twilio_status,
        attempt.answered_by,
        "" if attempt.duration is None else attempt.duration,
        attempt.outcome,
        "yes" if opted_out else "no",
        attempt.result,
        contact.status,
        attempt.dialed_at.isoformat() if attempt.dialed_at else "",
        attempt.ended_at.isoformat() if attempt.ended_at else "",
        # After the call (F-76): the summary and the extracted fields as JSON.
        call.extraction_status if call else "",
        call.summary if call else "",
        json.dumps(call.extraction, ensure_ascii=False)
        if call and call.extraction
        else "",
    ]
