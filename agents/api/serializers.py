"""Input validation and output shapes for agent profiles, customers, appointments.

Validation matches the settings page and the model: prompt templates may only use
known variables (`agents.prompts.validate_template`), voice and model come from the
GA lists, speed stays in the GA range, phone numbers in any Japanese format become
E.164. Related objects (organisation, customer, call) resolve only within what the
caller may see, so another organisation's id is "does not exist", never a leak.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.extraction_schema import check_extraction_schema
from agents.http_tools_config import http_tools_clean, names_clash_check
from agents.mcp_config import mcp_servers_clean
from agents.models import (
    TOOL_NAMES,
    AgentProfile,
    Appointment,
    Customer,
    Organization,
)
from agents.phones import normalize_phone
from agents.prompts import validate_template
from agents.selectors import customer_list
from agents.tool_masking import (
    MASK,
    http_tools_masked,
    http_tools_unmasked,
    mcp_servers_masked,
    mcp_servers_unmasked,
)
from calls.selectors import call_list

DTMF_DIGITS = [*"0123456789", "*", "#"]


@extend_schema_field(
    {
        "type": "string",
        "example": "090-1234-5678",
        "description": "Any Japanese or international format; stored and "
        "returned as E.164 (`+819012345678`).",
    }
)
class PhoneNumberField(serializers.CharField):
    """A phone number in, E.164 out (F-32)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            return normalize_phone(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$",
        "example": "14:30",
        "description": "Local wall-clock time, HH:MM[:SS] (no UTC offset).",
    }
)
class LocalTimeField(serializers.TimeField):
    """A wall-clock time; JSON Schema's `time` format would demand an offset."""


def _no_nul(value: Any) -> None:
    """Refuse NUL characters anywhere in a JSON value (PostgreSQL cannot store them)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Null characters are not allowed.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _no_nul(item)
    elif isinstance(value, list):
        for item in value:
            _no_nul(item)


class JSONObjectField(serializers.DictField):
    """A free JSON object (customer context, contact fields)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("child", serializers.JSONField())
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value: dict[str, Any] = super().to_internal_value(data)
        _no_nul(value)
        return value


NAME_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
TIMEOUT_SCHEMA = {"type": "number", "minimum": 0.5, "default": 10}


@extend_schema_field(
    {
        "type": "array",
        "maxItems": 10,
        "description": "MCP servers whose tools the AI may call (F-78), over "
        "streamable HTTP or (`transport`: `sse`) the older HTTP+SSE transport. "
        f"Header values are write-only: reads show `{MASK}`; sending `{MASK}` keeps "
        "the stored value. Empty `allowed_tools`: all tools.",
        "items": {
            "type": "object",
            "required": ["name", "url"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
                "url": {"type": "string", "format": "uri", "maxLength": 2000},
                "headers": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "maxLength": 4000},
                },
                "allowed_tools": {"type": "array", "items": NAME_SCHEMA},
                "timeout_s": {**TIMEOUT_SCHEMA, "maximum": 60},
                "transport": {
                    "type": "string",
                    "enum": ["streamable-http", "sse"],
                    "default": "streamable-http",
                },
            },
        },
    }
)
class McpServersField(serializers.JSONField):
    """An agent's MCP servers: validated like the page, header values masked on read."""

    def to_representation(self, value: Any) -> Any:
        return mcp_servers_masked(value)


@extend_schema_field(
    {
        "type": "array",
        "maxItems": 20,
        "description": "HTTP tools (F-78): a call POSTs `{arguments, call_id, "
        "caller}` to `url`, signed like the webhooks (`X-Callcenter-Signature`) with "
        "`secret`; the JSON reply is the function output. `parameters` is the "
        "arguments' JSON Schema (an object schema). `secret` is write-only: reads "
        f"show `{MASK}`; sending `{MASK}` or leaving it out keeps the stored one.",
        "items": {
            "type": "object",
            "required": ["name", "description", "url"],
            "additionalProperties": False,
            "properties": {
                "name": NAME_SCHEMA,
                "description": {"type": "string", "maxLength": 1024},
                "parameters": {"type": "object", "additionalProperties": True},
                "url": {"type": "string", "format": "uri", "maxLength": 2000},
                "secret": {
                    "type": "string",
                    "maxLength": 200,
                    "description": "16 to 200 characters; write-only.",
                },
                "timeout_s": {**TIMEOUT_SCHEMA, "maximum": 30},
            },
        },
    }
)
class HttpToolsField(serializers.JSONField):
    """An agent's HTTP tools: validated like the page, the secret masked on read."""

    def to_representation(self, value: Any) -> Any:
        return http_tools_masked(value)


def _request_user(serializer: serializers.Serializer) -> Any:
    return serializer.context["request"].user


def _scope_field(
    serializer: serializers.Serializer, name: str, queryset: QuerySet[Any]
) -> None:
    field = serializer.fields.get(name)
    if isinstance(field, serializers.PrimaryKeyRelatedField):
        field.queryset = queryset


class OrganizationOwnedSerializer(serializers.ModelSerializer):
    """An object of one organisation: the caller's, or a superuser's choice."""

    organization = serializers.PrimaryKeyRelatedField(
        queryset=Organization.objects.all(),
        required=False,
        help_text="Defaults to your organisation; only superusers may choose "
        "another. Cannot change after creation.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None and not request.user.is_superuser:
            own_id = getattr(request.user, "organization_id", None)
            _scope_field(self, "organization", Organization.objects.filter(pk=own_id))

    def _organization(self, attrs: dict[str, Any]) -> Organization:
        given: Organization | None = attrs.get("organization")
        if self.instance is not None:
            owned: Organization = self.instance.organization
            if given is not None and given.pk != owned.pk:
                raise serializers.ValidationError(
                    {"organization": ["An object cannot move to another organisation."]}
                )
            return owned
        own = getattr(_request_user(self), "organization", None)
        organization = given or own
        if organization is None:
            raise serializers.ValidationError(
                {"organization": ["Choose the organisation (you belong to none)."]}
            )
        return organization

    def _unique_in_organization(
        self, attrs: dict[str, Any], organization: Organization, field: str
    ) -> None:
        value = attrs.get(field)
        if value is None:
            return
        model: type[Model] = self.Meta.model
        clash = model._default_manager.filter(
            organization=organization, **{field: value}
        )
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(
                {field: ["Already used in this organisation."]}
            )


class AgentProfileSerializer(OrganizationOwnedSerializer):
    """An agent profile: the sales pitch and its Realtime settings (F-03)."""

    extraction_schema = serializers.JSONField(
        required=False,
        help_text="JSON Schema (an object with properties) of the fields the text "
        "model extracts after each call (F-76). Default: the reception schema.",
    )

    enabled_tools = serializers.ListField(
        child=serializers.ChoiceField(choices=TOOL_NAMES),
        required=False,
        help_text="Built-in function tools the AI may call.",
    )
    mcp_servers = McpServersField(required=False)
    http_tools = HttpToolsField(required=False)
    handoff_phone_number = PhoneNumberField(
        required=False, allow_blank=True, help_text="Where handoffs ring (F-32)."
    )
    handoff_dtmf_digit = serializers.ChoiceField(
        choices=DTMF_DIGITS,
        required=False,
        allow_blank=True,
        help_text="Keypad digit that asks for a human; blank for none.",
    )

    class Meta:
        model = AgentProfile
        fields = [
            "id",
            "organization",
            "name",
            "realtime_enabled",
            "model",
            "voice",
            "speed",
            "instructions_template",
            "greeting_template",
            "ai_speaks_first",
            "language",
            "turn_detection",
            "vad_threshold",
            "vad_prefix_padding_ms",
            "vad_silence_duration_ms",
            "vad_eagerness",
            "interrupt_response",
            "transcription_model",
            "transcription_language",
            "noise_reduction",
            "enabled_tools",
            "mcp_servers",
            "http_tools",
            "company_name",
            "service_name",
            "representative_name",
            "self_introduction",
            "service_description",
            "handoff_phone_number",
            "handoff_dtmf_digit",
            "handoff_farewell",
            "on_agent_unavailable",
            "return_to_ai_after_agent",
            "on_model_failure",
            "resume_message",
            "voicemail_message",
            "max_call_duration_s",
            "idle_timeout_s",
            "rollout_percentage",
            "extraction_schema",
            "legacy_text_model",
            "legacy_say_voice",
            "legacy_speech_model",
            "legacy_timeout_s",
            "legacy_speech_timeout",
            "legacy_hints",
            "legacy_action_on_empty_result",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        # Name per organisation is checked in validate(): the organisation is implied.
        validators: list[Any] = []
        extra_kwargs = {
            "instructions_template": {
                "help_text": "May use {{company_name}}, {{service_name}}, "
                "{{representative_name}}, {{self_introduction}}, "
                "{{service_description}}, {{customer_name}}."
            },
            "greeting_template": {"help_text": "The AI's first words; same variables."},
            # Twilio ends any call at 4 hours; an idle caller gets an hour at most.
            "max_call_duration_s": {"max_value": 4 * 3600},
            "idle_timeout_s": {"max_value": 3600},
        }

    def validate_instructions_template(self, value: str) -> str:
        validate_template(value)
        return value

    def validate_greeting_template(self, value: str) -> str:
        validate_template(value)
        return value

    def validate_extraction_schema(self, value: Any) -> Any:
        try:
            check_extraction_schema(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value

    def validate_mcp_servers(self, value: Any) -> list[dict[str, Any]]:
        stored = self.instance.mcp_servers if self.instance is not None else []
        try:
            return mcp_servers_clean(mcp_servers_unmasked(value, stored))
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None

    def validate_http_tools(self, value: Any) -> list[dict[str, Any]]:
        stored = self.instance.http_tools if self.instance is not None else []
        try:
            return http_tools_clean(
                http_tools_unmasked(value, stored), builtin_names=TOOL_NAMES
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["organization"] = self._organization(attrs)
        self._unique_in_organization(attrs, attrs["organization"], "name")
        if "http_tools" in attrs or "mcp_servers" in attrs:
            try:
                names_clash_check(
                    attrs.get("http_tools", getattr(self.instance, "http_tools", [])),
                    attrs.get("mcp_servers", getattr(self.instance, "mcp_servers", [])),
                )
            except DjangoValidationError as exc:
                raise serializers.ValidationError(
                    {"http_tools": exc.messages}
                ) from None
        return attrs


class CustomerSerializer(OrganizationOwnedSerializer):
    """A customer (F-06): one per phone number in an organisation."""

    phone_number = PhoneNumberField()
    context = JSONObjectField(
        required=False, help_text="Free context: bookings, notes, anything."
    )

    class Meta:
        model = Customer
        fields = ["id", "organization", "phone_number", "name", "context", "created_at"]
        read_only_fields = ["id", "created_at"]
        # Phone per organisation is checked in validate(): the organisation is implied.
        validators: list[Any] = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["organization"] = self._organization(attrs)
        self._unique_in_organization(attrs, attrs["organization"], "phone_number")
        return attrs


class AppointmentSerializer(OrganizationOwnedSerializer):
    """An appointment (F-07); its customer and call must be of its organisation."""

    time = LocalTimeField()

    class Meta:
        model = Appointment
        fields = [
            "id",
            "organization",
            "customer",
            "call",
            "date",
            "time",
            "name",
            "notes",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            _scope_field(self, "customer", customer_list(user=request.user))
            _scope_field(self, "call", call_list(user=request.user))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["organization"] = self._organization(attrs)
        return attrs
