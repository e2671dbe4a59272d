"""Campaigns, contacts, attempts and the do-not-call list in the admin (F-40, F-63).

Organisation-scoped like the rest (`OrganizationScopedAdmin`). Status changes go
through the services (actions), never by editing the field; contacts are shown
read-only inline (the first ones) with a link to all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from agents.admin_scoping import OrganizationScopedAdmin
from callcenter.errors import ApplicationError
from calls.campaigns import services
from calls.campaigns.models import Attempt, Campaign, Contact, DoNotCall


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0
    max_num = 0
    fields = ["phone", "name", "status", "attempts", "outcome", "updated_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True


def _run(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Campaign],
    service: Callable[..., Campaign],
) -> None:
    for campaign in queryset:
        try:
            service(campaign=campaign)
        except ApplicationError as exc:
            modeladmin.message_user(
                request, f"{campaign}: {exc.message}", messages.WARNING
            )
        else:
            modeladmin.message_user(request, f"{campaign}: OK", messages.SUCCESS)


@admin.register(Campaign)
class CampaignAdmin(OrganizationScopedAdmin):
    list_display = [
        "name",
        "status",
        "agent",
        "from_number",
        "organization",
        "contacts_link",
        "created_at",
    ]
    list_filter = ["status", "organization", "machine_action"]
    search_fields = ["name", "business_name", "product"]
    readonly_fields = [
        "status",
        "created_by",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
    ]
    inlines = [ContactInline]
    actions = ["start", "pause", "resume", "cancel"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Like the API and the pages: settings change only while draft or paused.
        if obj is not None and obj.status not in services.EDITABLE:
            return [f.name for f in Campaign._meta.fields]
        return self.readonly_fields

    @admin.display(description=_("contacts"))
    def contacts_link(self, campaign: Campaign) -> Any:
        url = (
            reverse("admin:calls_contact_changelist")
            + f"?campaign__id__exact={campaign.pk}"
        )
        return format_html('<a href="{}">{}</a>', url, campaign.contacts.count())

    @admin.action(description=_("Start the selected campaigns"), permissions=["change"])
    def start(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        _run(self, request, queryset, services.campaign_start)

    @admin.action(description=_("Pause the selected campaigns"), permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        _run(self, request, queryset, services.campaign_pause)

    @admin.action(
        description=_("Resume the selected campaigns"), permissions=["change"]
    )
    def resume(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        _run(self, request, queryset, services.campaign_resume)

    @admin.action(
        description=_("Cancel the selected campaigns"), permissions=["change"]
    )
    def cancel(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        _run(self, request, queryset, services.campaign_cancel)


@admin.register(Contact)
class ContactAdmin(OrganizationScopedAdmin):
    organization_path = "campaign__organization"
    list_display = ["phone", "name", "campaign", "status", "attempts", "outcome"]
    list_filter = ["status"]
    search_fields = ["phone", "name", "outcome"]
    raw_id_fields = ["campaign"]
    readonly_fields = ["attempts", "next_attempt_at", "source_line", "created_at"]


@admin.register(Attempt)
class AttemptAdmin(OrganizationScopedAdmin):
    organization_path = "contact__campaign__organization"
    list_display = [
        "contact",
        "number",
        "state",
        "call_sid",
        "twilio_status",
        "answered_by",
        "duration",
        "result",
        "outcome",
        "created_at",
    ]
    list_filter = ["state", "result", "answered_by"]
    search_fields = ["call_sid", "contact__phone"]
    raw_id_fields = ["contact", "call"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The dialer's record of a dial: read, not edited.
        return [f.name for f in Attempt._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(DoNotCall)
class DoNotCallAdmin(OrganizationScopedAdmin):
    list_display = ["phone", "reason", "source", "organization", "created_at"]
    list_filter = ["source", "organization"]
    search_fields = ["phone", "reason"]
    raw_id_fields = ["call", "created_by"]
    readonly_fields = ["created_at"]
