from __future__ import annotations

import csv
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from agents.admin_scoping import OrganizationScopedAdmin
from callcenter.errors import ApplicationError
from calls.control import call_hangup_request
from calls.models import CallEvent, CallSession, Recording, TranscriptEntry

TRANSCRIPT_CSV_COLUMNS = (
    "call_id",
    "call_created_at",
    "direction",
    "from_number",
    "to_number",
    "agent",
    "offset_ms",
    "speaker",
    "text",
    "interrupted",
    "item_id",
)

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

# After the call (F-76): shown, never edited by hand (re-run instead).
SUMMARY_FIELDS = (
    "extraction_status",
    "summary",
    "extraction",
    "extraction_error",
    "extraction_attempts",
    "summarized_at",
    "summary_input_tokens",
    "summary_output_tokens",
    "summary_cost_usd",
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
        "extraction_status",
    ]
    list_filter = [
        "status",
        "extraction_status",
        "direction",
        "organization",
        "agent",
        "created_at",
    ]
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
        "held_by",
        *SUMMARY_FIELDS,
    ]
    raw_id_fields = ["customer", "handoff_requested_by"]
    inlines = [TranscriptInline, EventInline, RecordingInline]
    actions = ["hand_off", "hang_up", "export_transcripts_csv", "summarize_again"]

    @admin.action(
        description=_("選択した通話を担当者に引き継ぐ"), permissions=["change"]
    )
    def hand_off(self, request: HttpRequest, queryset: QuerySet[CallSession]) -> None:
        """Hand each selected AI call to a human (F-29, F-40); others are reported."""
        from handoff.services import handoff_request

        for call in queryset:
            try:
                result = handoff_request(
                    call_id=call.pk, trigger="admin", requested_by=request.user
                )
            except ApplicationError as exc:
                self.message_user(
                    request, f"#{call.pk}: {exc.message}", messages.WARNING
                )
            else:
                self.message_user(
                    request,
                    _("#%(id)s: %(number)s に引き継ぎ中です。")
                    % {"id": call.pk, "number": result.agent_number_masked},
                    messages.SUCCESS,
                )

    @admin.action(description=_("選択した通話を切断する"), permissions=["change"])
    def hang_up(self, request: HttpRequest, queryset: QuerySet[CallSession]) -> None:
        """Tell each selected live call's bridge to hang up (F-23, F-40)."""
        live, skipped = [], 0
        for call in queryset:
            try:
                call_hangup_request(call=call, requested_by=request.user)
            except ApplicationError:  # not live (or its bridge unreachable)
                skipped += 1
            else:
                live.append(call.pk)
        if live:
            self.message_user(
                request,
                ngettext(
                    "%(count)d件の通話に切断を指示しました。",
                    "%(count)d件の通話に切断を指示しました。",
                    len(live),
                )
                % {"count": len(live)},
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d件は通話中でないか通話に届かなかったため、切断できませんでした。",
                    "%(count)d件は通話中でないか通話に届かなかったため、切断できませんでした。",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )

    @admin.action(description=_("要約と抽出をやり直す"), permissions=["change"])
    def summarize_again(
        self, request: HttpRequest, queryset: QuerySet[CallSession]
    ) -> None:
        """Queue the after-call step again for each ended call (F-76)."""
        from calls.summary.services import call_extraction_rerun

        queued, live = 0, 0
        for call in queryset:
            try:
                call_extraction_rerun(call=call)
            except ApplicationError:
                live += 1
            else:
                queued += 1
        if queued:
            self.message_user(
                request,
                ngettext(
                    "%(count)d件の通話の要約をやり直します。",
                    "%(count)d件の通話の要約をやり直します。",
                    queued,
                )
                % {"count": queued},
                messages.SUCCESS,
            )
        if live:
            self.message_user(
                request,
                ngettext(
                    "%(count)d件は通話中のため、終了後に要約します。",
                    "%(count)d件は通話中のため、終了後に要約します。",
                    live,
                )
                % {"count": live},
                messages.WARNING,
            )

    @admin.action(description=_("文字起こしをCSVで書き出す"), permissions=["view"])
    def export_transcripts_csv(
        self, request: HttpRequest, queryset: QuerySet[CallSession]
    ) -> HttpResponse:
        """One row per utterance of the selected calls, in call and time order."""
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="transcripts-{stamp}.csv"'
        )
        response.write("\ufeff")  # BOM: Excel opens UTF-8 Japanese correctly
        writer = csv.writer(response)
        writer.writerow(TRANSCRIPT_CSV_COLUMNS)
        entries = (
            TranscriptEntry.objects.filter(call__in=queryset)
            .select_related("call", "call__agent")
            .order_by("call_id", "offset_ms", "id")
        )
        for entry in entries:
            call = entry.call
            writer.writerow(_transcript_row(call, entry))
        return response

    def get_search_results(self, request, queryset, search_term):  # type: ignore[no-untyped-def]
        queryset, _dupes = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


def _transcript_row(call: CallSession, entry: TranscriptEntry) -> list[Any]:
    return [
        call.pk,
        timezone.localtime(call.created_at).isoformat(),
        call.direction,
        call.from_number,
        call.to_number,
        call.agent.name if call.agent_id else "",
        entry.offset_ms,
        entry.speaker,
        entry.text,
        entry.interrupted,
        entry.item_id,
    ]


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


# The campaigns package's admin registers itself on import (autodiscovery only
# imports `calls.admin`).
import calls.campaigns.admin  # noqa: E402, F401
