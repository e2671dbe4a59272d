"""Input validation and output shapes of the calls API.

Numbers of the human agents a call was handed to are masked (`080****9355`); the
caller's and callee's numbers are the organisation's own customers' and stay whole.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.api.serializers import JSONObjectField, PhoneNumberField
from agents.phones import mask_phone
from agents.selectors import agent_list
from callcenter.api import ID_MAX
from calls.models import (
    CallEvent,
    CallSession,
    ExtractionStatus,
    Recording,
    TranscriptEntry,
)
from calls.status import CallStatus


class CallFilterSerializer(serializers.Serializer):
    """Query filters of `GET /api/calls/`; all optional, combined with AND."""

    status = serializers.ChoiceField(choices=CallStatus.choices, required=False)
    direction = serializers.ChoiceField(
        choices=CallSession.Direction.choices, required=False
    )
    path = serializers.ChoiceField(
        choices=CallSession.Path.choices,
        required=False,
        help_text="The speech path the call took (F-72).",
    )
    created_after = serializers.DateTimeField(
        required=False,
        help_text="Created at or after (ISO 8601; a date means its midnight, "
        "Asia/Tokyo, unless an offset is given).",
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="Created strictly before (ISO 8601)."
    )
    agent = serializers.IntegerField(
        required=False, min_value=1, max_value=ID_MAX, help_text="Agent profile id."
    )
    phone = PhoneNumberField(
        required=False,
        help_text="The caller's or callee's number, any Japanese format.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        after, before = attrs.get("created_after"), attrs.get("created_before")
        if after and before and after >= before:
            raise serializers.ValidationError(
                {"created_before": ["Must be later than created_after."]}
            )
        return attrs


class CallSerializer(serializers.ModelSerializer):
    """A call as listed: who, when, status, cost."""

    agent_name = serializers.CharField(
        source="agent.name", read_only=True, allow_null=True, default=None
    )
    duration_s = serializers.FloatField(read_only=True, allow_null=True)
    handoff_agent_number = serializers.SerializerMethodField(
        help_text="The human agent's number, masked."
    )

    class Meta:
        model = CallSession
        fields = [
            "id",
            "organization",
            "agent",
            "agent_name",
            "customer",
            "direction",
            "path",
            "status",
            "from_number",
            "to_number",
            "twilio_call_sid",
            "created_at",
            "answered_at",
            "ended_at",
            "duration_s",
            "end_reason",
            "answered_by",
            "handoff_trigger",
            "handoff_reason",
            "handoff_requested_at",
            "handoff_agent_number",
            "handoff_connected_at",
            "outcome",
            "outcome_notes",
            "cost_usd",
        ]
        read_only_fields = fields

    def get_handoff_agent_number(self, call: CallSession) -> str:
        return (
            mask_phone(call.handoff_agent_number) if call.handoff_agent_number else ""
        )


class TranscriptEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = TranscriptEntry
        fields = ["id", "speaker", "text", "offset_ms", "interrupted", "created_at"]
        read_only_fields = fields


class CallEventSerializer(serializers.ModelSerializer):
    payload = serializers.DictField(child=serializers.JSONField(), read_only=True)

    class Meta:
        model = CallEvent
        fields = ["id", "type", "payload", "created_at"]
        read_only_fields = fields


class RecordingSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(
        help_text="Twilio's recording URL, or the media path of the bridge's own "
        "file; null while there is neither."
    )

    class Meta:
        model = Recording
        fields = ["id", "source", "status", "url", "duration_s", "created_at"]
        read_only_fields = fields

    @extend_schema_field(
        {"type": "string", "format": "uri-reference", "nullable": True}
    )
    def get_url(self, recording: Recording) -> str | None:
        if recording.url:
            return recording.url
        return recording.file.url if recording.file else None


class CallDetailSerializer(CallSerializer):
    """A call with its usage, latency figures, transcript and recordings."""

    transcript = TranscriptEntrySerializer(many=True, read_only=True)
    recordings = RecordingSerializer(many=True, read_only=True)
    extraction = serializers.DictField(
        child=serializers.JSONField(),
        read_only=True,
        help_text="Fields extracted by the agent profile's extraction schema (F-76); "
        "{} until the summary is done.",
    )

    class Meta(CallSerializer.Meta):
        fields = [
            *CallSerializer.Meta.fields,
            "summary",
            "extraction",
            "extraction_status",
            "extraction_error",
            "summary_cost_usd",
            "openai_session_id",
            "input_text_tokens",
            "input_audio_tokens",
            "input_cached_tokens",
            "output_text_tokens",
            "output_audio_tokens",
            "first_audio_ms",
            "turn_latencies_ms",
            "barge_in_count",
            "transcript",
            "recordings",
        ]
        read_only_fields = fields


class InstructSerializer(serializers.Serializer):
    text = serializers.CharField(
        max_length=2000, help_text="What the AI should do or say next."
    )


class CallControlSerializer(serializers.Serializer):
    """The reply to a control request: accepted, sent to the call's bridge."""

    call_id = serializers.IntegerField()
    command = serializers.ChoiceField(choices=["hangup", "instruct"])
    status = serializers.ChoiceField(
        choices=CallStatus.choices, help_text="The call's status when sent."
    )


class OutboundCallSerializer(serializers.Serializer):
    """Place a call from an agent profile to a number."""

    agent = serializers.PrimaryKeyRelatedField(
        queryset=agent_list(user=None), help_text="Agent profile id."
    )
    to = PhoneNumberField(help_text="The callee, any Japanese format.")
    contact_variables = JSONObjectField(
        required=False,
        default=dict,
        help_text='Per-call prompt values, e.g. {"customer_name": "山田様"}.',
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            agent_field = self.fields["agent"]
            assert isinstance(agent_field, serializers.PrimaryKeyRelatedField)
            agent_field.queryset = agent_list(user=request.user)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["ok", "degraded", "unavailable", "draining"],
        help_text="`draining`: this process is shutting down and handing its calls "
        "over (F-69); send it no new calls. `degraded` (200): the channel layer is "
        "down; calls still talk, live control and monitors wait for it (F-71).",
    )
    database = serializers.BooleanField(help_text="`SELECT 1` answered.")
    channel_layer = serializers.BooleanField(
        help_text="A message went round the channel layer in time."
    )
    live_calls_in_process = serializers.IntegerField(
        help_text="Calls this server process is bridging now."
    )
    draining = serializers.BooleanField(
        help_text="SIGTERM received: new streams refused, live calls being handed over."
    )


class CallExtractSerializer(serializers.Serializer):
    """The answer to a re-run of the summary: queued, status now pending."""

    call_id = serializers.IntegerField()
    extraction_status = serializers.ChoiceField(choices=ExtractionStatus.choices)
