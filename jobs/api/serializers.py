"""Serializers of the jobs API (F-77)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from agents.api.serializers import (
    JSONObjectField,
    OrganizationOwnedSerializer,
    _scope_field,
)
from agents.models import Operator
from agents.selectors import customer_list, organization_scope
from calls.selectors import call_list
from jobs.models import Job, JobStatus


class JobSerializer(OrganizationOwnedSerializer):
    """A job card: made from a call's extraction or by hand; status `new` →
    `accepted` → `done` | `canceled` (a new job may be canceled too)."""

    fields = JSONObjectField(
        required=False,
        help_text="The call's extracted fields, or anything the job needs.",
    )
    status = serializers.ChoiceField(
        choices=JobStatus.choices,
        required=False,
        help_text="A new job is `new`; changes follow new → accepted → done | "
        "canceled (409 otherwise).",
    )
    call_summary = serializers.SerializerMethodField(
        help_text="The summary of the job's call (F-76); empty without a call."
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "organization",
            "customer",
            "call",
            "title",
            "fields",
            "status",
            "assignee",
            "call_summary",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "call_summary", "created_at", "updated_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            user = request.user
            _scope_field(self, "customer", customer_list(user=user))
            _scope_field(self, "call", call_list(user=user))
            _scope_field(
                self, "assignee", organization_scope(Operator.objects.all(), user=user)
            )

    def get_call_summary(self, job: Job) -> str:
        return job.call.summary if job.call_id and job.call else ""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        organization = self._organization(attrs)
        attrs["organization"] = organization
        for name in ("customer", "call", "assignee"):
            other = attrs.get(name)
            if other is not None and other.organization_id != organization.pk:
                raise serializers.ValidationError(
                    {name: ["Belongs to another organisation."]}
                )
        if self.instance is None and attrs.get("status", JobStatus.NEW) != "new":
            raise serializers.ValidationError({"status": ["A job starts as `new`."]})
        if self.instance is not None:
            call = attrs.get("call", self.instance.call)
            if call != self.instance.call:
                raise serializers.ValidationError(
                    {"call": ["The call of a job cannot change."]}
                )
        return attrs


class JobFilterSerializer(serializers.Serializer):
    """Query parameters of the job list."""

    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    assignee = serializers.IntegerField(
        required=False, min_value=1, help_text="Operator id."
    )
    unassigned = serializers.BooleanField(
        required=False, default=False, help_text="Only jobs with no assignee."
    )
    q = serializers.CharField(
        required=False, max_length=200, help_text="Text in the title or customer."
    )
