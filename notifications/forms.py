"""Forms of the notification settings page and the admin (F-77)."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from agents.models import Operator
from notifications.models import EVENT_TYPES, WebhookEndpoint
from notifications.services import url_check

SECRET_MIN = 16


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


class WebhookEndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        label=_("events"),
        choices=[(e, e) for e in EVENT_TYPES],
        widget=forms.CheckboxSelectMultiple,
    )
    secret = forms.CharField(
        label=_("secret"),
        min_length=SECRET_MIN,
        max_length=200,
        help_text=_("Signs each delivery (HMAC-SHA256); the receiver checks it."),
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "secret", "events", "active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # The secret is never shown again; blank keeps it.
            secret = self.fields["secret"]
            secret.required = False
            secret.widget = forms.PasswordInput(render_value=False)
            secret.help_text = _("Leave blank to keep the current secret.")
        elif not self.is_bound:
            self.initial.setdefault("secret", new_secret())
            self.initial.setdefault("events", list(EVENT_TYPES))

    def clean_secret(self) -> str:
        secret: str = self.cleaned_data.get("secret") or ""
        if not secret and self.instance.pk:
            return self.instance.secret
        return secret

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        try:
            url_check(url)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["url"]) from exc
        return url

    def clean_events(self) -> list[str]:
        chosen = set(self.cleaned_data["events"])
        return [e for e in EVENT_TYPES if e in chosen]


class JobEmailForm(forms.Form):
    operators = forms.ModelMultipleChoiceField(
        label=_("Email these operators when a job card is created"),
        queryset=Operator.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    def __init__(self, *args: Any, organization_id: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["operators"]
        assert isinstance(field, forms.ModelMultipleChoiceField)
        field.queryset = Operator.objects.filter(
            organization_id=organization_id, is_active=True
        ).order_by("username")
        field.label_from_instance = lambda op: (  # type: ignore[method-assign]
            f"{op.get_full_name() or op.username} <{op.email or '—'}>"
        )
