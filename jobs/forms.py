"""Forms of the jobs pages (F-77): the list's filters and the card's changes."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from agents.models import Operator
from jobs.models import JobStatus


class JobFilterForm(forms.Form):
    status = forms.ChoiceField(
        label=_("状態"),
        required=False,
        choices=[("", _("すべて")), *JobStatus.choices],
    )
    assignee = forms.ChoiceField(label=_("担当者"), required=False)
    q = forms.CharField(label=_("検索"), required=False, max_length=200)

    def __init__(self, *args: Any, operators: Any = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["assignee"].choices = [
            ("", _("すべて")),
            ("none", _("未割り当て")),
            *[(str(o.pk), o.get_full_name() or o.username) for o in operators],
        ]


class JobAssignForm(forms.Form):
    assignee = forms.ModelChoiceField(
        label=_("担当者"),
        queryset=Operator.objects.none(),
        required=False,
        empty_label=_("(未割り当て)"),
    )

    def __init__(self, *args: Any, operators: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = operators


class JobStatusForm(forms.Form):
    status = forms.ChoiceField(choices=JobStatus.choices)
