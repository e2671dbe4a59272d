"""Job cards in the admin (F-77), scoped to the operator's organisation.

Saves go through `jobs.services` so that a card made or changed here is announced
like any other (`job_created` / `job_updated`, the pages' toast and list).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.forms import ModelForm
from django.http import HttpRequest

from agents.admin_scoping import OrganizationScopedAdmin
from jobs.models import Job
from jobs.services import check_job_transition, job_create, job_update


class JobAdminForm(ModelForm):
    class Meta:
        model = Job
        fields = [
            "organization",
            "title",
            "status",
            "customer",
            "call",
            "assignee",
            "fields",
        ]

    def clean_status(self) -> str:
        status: str = self.cleaned_data["status"]
        if self.instance.pk is not None:
            current = Job.objects.get(pk=self.instance.pk).status
            try:
                check_job_transition(current, status)
            except Exception as exc:
                raise ValidationError(str(exc)) from None
        return status


@admin.register(Job)
class JobAdmin(OrganizationScopedAdmin):
    form = JobAdminForm
    list_display = [
        "id",
        "created_at",
        "title",
        "status",
        "customer",
        "assignee",
        "call",
        "organization",
    ]
    list_filter = ["status", "organization", "created_at"]
    search_fields = ["title", "customer__name", "customer__phone_number"]
    date_hierarchy = "created_at"
    raw_id_fields = ["customer", "call"]
    readonly_fields = ["created_at", "updated_at"]

    def save_model(
        self, request: HttpRequest, obj: Job, form: Any, change: bool
    ) -> None:
        data = form.cleaned_data
        if not change:
            organization = data.get("organization") or request.user.organization
            saved = job_create(
                organization=organization,
                title=data["title"],
                fields=data.get("fields") or {},
                customer=data.get("customer"),
                call=data.get("call"),
                assignee=data.get("assignee"),
            )
            obj.pk = saved.pk
            return
        try:
            job_update(
                job=obj,
                title=data["title"],
                fields=data.get("fields") or {},
                status=data["status"],
                assignee=data.get("assignee"),
                customer=data.get("customer"),
            )
        except Exception as exc:  # shown, not a 500
            self.message_user(request, str(exc), messages.ERROR)
