"""The campaign form of the operators' pages (F-46, F-66, F-67)."""

from __future__ import annotations

import zoneinfo
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from agents.phones import normalize_phone
from agents.selectors import agent_list
from calls.campaigns.models import CAMPAIGN_SETTINGS_FIELDS, DEFAULT_OPENING, Campaign

WEEKDAYS = [
    (1, _("月")),
    (2, _("火")),
    (3, _("水")),
    (4, _("木")),
    (5, _("金")),
    (6, _("土")),
    (7, _("日")),
]
RETRY_RESULTS = [
    ("busy", _("話し中")),
    ("no-answer", _("応答なし")),
    ("failed", _("失敗")),
    ("machine", _("留守番電話")),
]


def time_zone_choices() -> list[tuple[str, str]]:
    return [(z, z) for z in sorted(zoneinfo.available_timezones())]


class CampaignForm(forms.ModelForm):
    """Create or edit a campaign; the opening's default is shown and explained."""

    time_zone = forms.ChoiceField(label=_("タイムゾーン"), choices=time_zone_choices)
    days = forms.TypedMultipleChoiceField(
        label=_("発信する曜日"),
        choices=WEEKDAYS,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
    )
    retry_on = forms.MultipleChoiceField(
        label=_("再発信する結果"),
        choices=RETRY_RESULTS,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = Campaign
        fields = list(CAMPAIGN_SETTINGS_FIELDS)
        labels = {
            "name": _("キャンペーン名"),
            "agent": _("エージェント"),
            "from_number": _("発信元番号"),
            "window_start": _("発信開始時刻"),
            "window_end": _("発信終了時刻"),
            "max_concurrent": _("最大同時通話数"),
            "calls_per_second": _("1秒あたりの発信数"),
            "max_attempts": _("最大発信回数"),
            "retry_delay_seconds": _("再発信までの秒数"),
            "machine_action": _("留守番電話のとき"),
            "business_name": _("事業者名"),
            "caller_name": _("担当者名"),
            "product": _("商品・サービス"),
            "opening": _("冒頭の名乗り"),
        }
        widgets = {
            "window_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "window_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "from_number": forms.TextInput(
                attrs={"inputmode": "tel", "placeholder": "050-1234-5678"}
            ),
            "opening": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = agent_list(user=user)  # type: ignore[attr-defined]
        self.fields["opening"].initial = DEFAULT_OPENING
        self.fields["opening"].help_text = _(
            "通話の最初に必ず話します（特定商取引法 第16条）。既定: %(default)s"
        ) % {"default": DEFAULT_OPENING}
        self.fields["business_name"].help_text = _(
            "事業者名・担当者名・商品と勧誘目的の文言（ご案内 など）が名乗りに揃わないと開始できません。"
        )

    def clean_from_number(self) -> str:
        return normalize_phone(self.cleaned_data["from_number"])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("window_start"), data.get("window_end")
        if start is not None and end is not None and start >= end:
            self.add_error("window_end", _("終了時刻は開始時刻より後にしてください。"))
        return data


class DoNotCallForm(forms.Form):
    phone = forms.CharField(
        label=_("電話番号"),
        max_length=32,
        widget=forms.TextInput(attrs={"inputmode": "tel"}),
    )
    reason = forms.CharField(label=_("理由"), max_length=300, required=False)

    def clean_phone(self) -> str:
        return normalize_phone(self.cleaned_data["phone"])


class ImportForm(forms.Form):
    file = forms.FileField(label=_("連絡先CSV"))
