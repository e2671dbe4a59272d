"""Organisation scoping for the admin (F-01, F-40).

An operator of organisation A sees none of B's rows: lists, change pages opened by
URL (a 404-like redirect, since the object is not in the queryset), and foreign-key
choices are all limited to A. Superusers see everything.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import ForeignKey, Model, QuerySet
from django.http import HttpRequest

from agents.selectors import organization_scope


class OrganizationScopedAdmin(admin.ModelAdmin):
    """Scope a model admin to the request user's organisation.

    `organization_path` is the lookup from the model to its organisation
    (`organization` for most, `call__organization` for a call's children).
    """

    organization_path = "organization"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return organization_scope(
            super().get_queryset(request),
            user=request.user,
            path=self.organization_path,
        )

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        user = request.user
        if field is not None and not user.is_superuser:
            related = db_field.related_model
            names = {f.name for f in related._meta.get_fields()}
            if related._meta.model_name == "organization":
                field.queryset = field.queryset.filter(pk=user.organization_id)
            elif "organization" in names:
                field.queryset = organization_scope(field.queryset, user=user)
            elif "call" in names:
                field.queryset = organization_scope(
                    field.queryset, user=user, path="call__organization"
                )
        return field

    def get_exclude(self, request: HttpRequest, obj: Model | None = None) -> Any:
        excluded = list(super().get_exclude(request, obj) or [])
        if not request.user.is_superuser and self.organization_path == "organization":
            excluded.append("organization")
        return excluded

    def save_model(
        self, request: HttpRequest, obj: Any, form: Any, change: bool
    ) -> None:
        if (
            not request.user.is_superuser
            and self.organization_path == "organization"
            and not change
        ):
            obj.organization_id = request.user.organization_id
        super().save_model(request, obj, form, change)
