from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from agents.admin_scoping import OrganizationScopedAdmin
from agents.forms import AgentProfileAdminForm
from agents.models import (
    AgentProfile,
    Appointment,
    Customer,
    Operator,
    Organization,
    PhoneNumber,
)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(pk=request.user.organization_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


@admin.register(Operator)
class OperatorAdmin(UserAdmin):
    list_display = [
        "username",
        "email",
        "organization",
        "phone_number",
        "is_staff",
        "is_active",
    ]
    list_filter = ["organization", "is_staff", "is_superuser", "is_active"]
    search_fields = ["username", "email", "first_name", "last_name", "phone_number"]
    fieldsets = (
        *UserAdmin.fieldsets,
        (_("Call center"), {"fields": ("organization", "phone_number")}),
    )
    add_fieldsets = (
        *UserAdmin.add_fieldsets,
        (_("Call center"), {"fields": ("organization", "phone_number")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(organization_id=request.user.organization_id)

    # Only superusers manage accounts: an operator must not be able to grant rights.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


@admin.register(AgentProfile)
class AgentProfileAdmin(OrganizationScopedAdmin):
    form = AgentProfileAdminForm
    list_display = [
        "name",
        "organization",
        "realtime_enabled",
        "model",
        "voice",
        "speed",
        "turn_detection",
        "rollout_percentage",
        "updated_at",
    ]
    list_filter = [
        "organization",
        "realtime_enabled",
        "model",
        "voice",
        "turn_detection",
    ]
    search_fields = ["name", "instructions_template", "greeting_template"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "organization",
                    "name",
                    "realtime_enabled",
                    "model",
                    "voice",
                    "speed",
                    "language",
                    "ai_speaks_first",
                    "rollout_percentage",
                )
            },
        ),
        (
            _("Prompts"),
            {
                "fields": (
                    "instructions_template",
                    "greeting_template",
                    "company_name",
                    "service_name",
                    "representative_name",
                    "self_introduction",
                    "service_description",
                )
            },
        ),
        (
            _("Turn detection"),
            {
                "fields": (
                    "turn_detection",
                    "vad_threshold",
                    "vad_prefix_padding_ms",
                    "vad_silence_duration_ms",
                    "vad_eagerness",
                    "interrupt_response",
                )
            },
        ),
        (
            _("Audio input"),
            {
                "fields": (
                    "transcription_model",
                    "transcription_language",
                    "noise_reduction",
                )
            },
        ),
        (
            _("Tools and handoff"),
            {
                "fields": (
                    "enabled_tools",
                    "handoff_phone_number",
                    "handoff_dtmf_digit",
                    "handoff_farewell",
                    "on_agent_unavailable",
                    "return_to_ai_after_agent",
                    "on_model_failure",
                    "resume_message",
                    "voicemail_message",
                )
            },
        ),
        (_("Business tools"), {"fields": ("mcp_servers", "http_tools")}),
        (_("Limits"), {"fields": ("max_call_duration_s", "idle_timeout_s")}),
    )


@admin.register(PhoneNumber)
class PhoneNumberAdmin(OrganizationScopedAdmin):
    list_display = ["number", "label", "organization", "agent", "is_active"]
    list_filter = ["organization", "is_active"]
    search_fields = ["number", "label"]


@admin.register(Customer)
class CustomerAdmin(OrganizationScopedAdmin):
    list_display = ["name", "phone_number", "organization", "created_at"]
    list_filter = ["organization"]
    search_fields = ["name", "phone_number"]


@admin.register(Appointment)
class AppointmentAdmin(OrganizationScopedAdmin):
    list_display = ["date", "time", "name", "customer", "call", "organization"]
    list_filter = ["organization", "date"]
    search_fields = ["name", "notes", "customer__name", "customer__phone_number"]
    date_hierarchy = "date"
    raw_id_fields = ["call"]
