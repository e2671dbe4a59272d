"""Admin of the notifications (F-77): endpoints, the delivery log with "send
again", events and who gets the new-job email. Organisation-scoped like the rest."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from agents.admin_scoping import OrganizationScopedAdmin
from notifications import services
from notifications.forms import WebhookEndpointForm
from notifications.models import Delivery, Event, NotificationSettings, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OrganizationScopedAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "organization", "events", "active", "disabled_reason"]
    list_filter = ["active"]
    readonly_fields = ["disabled_reason", "created_at", "updated_at"]

    def save_model(
        self, request: HttpRequest, obj: Any, form: Any, change: bool
    ) -> None:
        if not request.user.is_superuser and not change:
            obj.organization_id = request.user.organization_id
        if obj.active:
            obj.disabled_reason = ""
        super().save_model(request, obj, form, change)


@admin.register(Delivery)
class DeliveryAdmin(OrganizationScopedAdmin):
    organization_path = "endpoint__organization"
    list_display = [
        "event_id",
        "event_type",
        "endpoint",
        "state",
        "attempts",
        "last_status",
        "last_attempt_at",
        "next_try_at",
        "delivered_at",
    ]
    list_filter = ["state", "event__type"]
    search_fields = ["event__public_id", "endpoint__url"]
    list_select_related = ["event", "endpoint"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    actions = ["send_again"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("event id"), ordering="event__public_id")
    def event_id(self, delivery: Delivery) -> str:
        return delivery.event.public_id

    @admin.display(description=_("type"), ordering="event__type")
    def event_type(self, delivery: Delivery) -> str:
        return delivery.event.type

    @admin.action(description=_("Send the selected deliveries again"))
    def send_again(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        n = 0
        for delivery in queryset:
            services.delivery_send_again(delivery=delivery)
            n += 1
        self.message_user(
            request,
            ngettext("%d delivery sent again.", "%d deliveries sent again.", n) % n,
            messages.SUCCESS,
        )


@admin.register(Event)
class EventAdmin(OrganizationScopedAdmin):
    list_display = ["public_id", "type", "organization", "created_at"]
    list_filter = ["type"]
    search_fields = ["public_id"]
    readonly_fields = ["public_id", "organization", "type", "created_at", "data"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(OrganizationScopedAdmin):
    filter_horizontal = ["job_email_operators"]

    def formfield_for_manytomany(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> Any:
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if field is not None and not request.user.is_superuser:
            field.queryset = field.queryset.filter(
                organization_id=request.user.organization_id
            )
        return field
