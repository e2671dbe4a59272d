from __future__ import annotations

from django.contrib import admin

from agents.admin_scoping import OrganizationScopedAdmin
from calls.models import CallEvent, CallSession, Recording, TranscriptEntry

METRIC_FIELDS = (
    "input_text_tokens",
    "input_audio_tokens",
    "input_cached_tokens",
    "output_text_tokens",
    "output_audio_tokens",
    "cost_usd",
    "first_audio_ms",
    "turn_latencies_ms",
    "barge_in_count",
)


class TranscriptInline(admin.TabularInline):
    model = TranscriptEntry
    extra = 0
    fields = ["offset_ms", "speaker", "text", "interrupted", "item_id"]
    readonly_fields = fields
    can_delete = False


class EventInline(admin.TabularInline):
    model = CallEvent
    extra = 0
    fields = ["created_at", "type", "payload"]
    readonly_fields = fields
    can_delete = False


class RecordingInline(admin.TabularInline):
    model = Recording
    extra = 0
    fields = ["source", "status", "duration_s", "url", "file", "recording_sid"]
    readonly_fields = fields
    can_delete = False


@admin.register(CallSession)
class CallSessionAdmin(OrganizationScopedAdmin):
    list_display = [
        "id",
        "created_at",
        "direction",
        "status",
        "from_number",
        "to_number",
        "agent",
        "organization",
        "first_audio_ms",
        "cost_usd",
        "end_reason",
    ]
    list_filter = ["status", "direction", "organization", "agent", "created_at"]
    search_fields = ["twilio_call_sid", "from_number", "to_number", "transcript__text"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "status",
        "twilio_call_sid",
        "stream_sid",
        "openai_session_id",
        "created_at",
        "answered_at",
        "ended_at",
        "heartbeat_at",
        *METRIC_FIELDS,
        "handoff_requested_at",
        "handoff_connected_at",
        "handoff_agent_call_sid",
        "handoff_conference_name",
    ]
    raw_id_fields = ["customer", "handoff_requested_by"]
    inlines = [TranscriptInline, EventInline, RecordingInline]

    def get_search_results(self, request, queryset, search_term):  # type: ignore[no-untyped-def]
        queryset, _dupes = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


@admin.register(TranscriptEntry)
class TranscriptEntryAdmin(OrganizationScopedAdmin):
    organization_path = "call__organization"
    list_display = ["call", "offset_ms", "speaker", "text", "interrupted", "created_at"]
    list_filter = ["speaker", "interrupted"]
    search_fields = ["text", "item_id"]
    raw_id_fields = ["call"]


@admin.register(CallEvent)
class CallEventAdmin(OrganizationScopedAdmin):
    organization_path = "call__organization"
    list_display = ["call", "type", "created_at"]
    list_filter = ["type"]
    search_fields = ["type"]
    raw_id_fields = ["call"]


@admin.register(Recording)
class RecordingAdmin(OrganizationScopedAdmin):
    organization_path = "call__organization"
    list_display = [
        "call",
        "source",
        "status",
        "duration_s",
        "recording_sid",
        "created_at",
    ]
    list_filter = ["source", "status"]
    search_fields = ["recording_sid", "url"]
    raw_id_fields = ["call"]
