from __future__ import annotations

from typing import Any

from rest_framework import serializers

from agents.phones import normalize_phone
from calls.status import CallStatus


class HandoffRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        help_text="Why, for the record.",
    )


class HandoffByPhoneSerializer(serializers.Serializer):
    """Find the live call by the caller's number or by Twilio's CallSid."""

    phoneNumber = serializers.CharField(
        max_length=40,
        required=False,
        help_text="The customer's number, any Japanese format.",
    )
    callSid = serializers.CharField(
        max_length=64,
        required=False,
        help_text="Twilio's CallSid of the caller's call.",
    )
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)

    def validate_phoneNumber(self, value: str) -> str:
        try:
            return normalize_phone(value)
        except Exception as exc:
            raise serializers.ValidationError(
                f"'{value}' is not a phone number."
            ) from exc

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("phoneNumber") and not attrs.get("callSid"):
            raise serializers.ValidationError(
                {"phoneNumber": "Give phoneNumber or callSid."}
            )
        return attrs


class HandoffResultSerializer(serializers.Serializer):
    call_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=CallStatus.choices)
    agent_call_sid = serializers.CharField(help_text="Twilio SID of the human's leg.")
    agent_number = serializers.CharField(help_text="The human's number, masked.")
    created = serializers.BooleanField(
        help_text="False when a handoff was already in flight (nothing new dialled)."
    )
