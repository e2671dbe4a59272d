"""Forms of the agent settings page (F-39) and the legacy conversion (F-05)."""

from __future__ import annotations

import copy
import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput
from django.utils.translation import gettext_lazy as _

from agents.extraction_schema import PRESETS
from agents.http_tools_config import http_tools_clean, names_clash_check
from agents.mcp_config import mcp_servers_clean
from agents.models import SPEED_MAX, SPEED_MIN, TOOL_NAMES, AgentProfile
from agents.prompts import SAMPLE_VALUES, render_template, validate_template
from agents.tool_masking import (
    http_tools_masked,
    http_tools_unmasked,
    mcp_servers_masked,
    mcp_servers_unmasked,
)

LANGUAGE_SUGGESTIONS = ("ja", "en", "zh", "ko", "es", "fr", "de", "pt", "vi", "th")

TOOL_LABELS = {
    "request_operator_handoff": _("担当者への引き継ぎ (request_operator_handoff)"),
    "get_customer_info": _("顧客情報の参照 (get_customer_info)"),
    "schedule_appointment": _("予約の登録 (schedule_appointment)"),
    "end_call": _("通話の終了 (end_call)"),
    "save_call_outcome": _("結果の記録 (save_call_outcome)"),
    "record_opt_out": _("今後の電話の停止 (record_opt_out)"),
}

# Field groups of the settings page, in order; the template renders one fieldset each.
FIELDSETS: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    (
        "basic",
        _("基本設定"),
        (
            "name",
            "realtime_enabled",
            "model",
            "voice",
            "speed",
            "language",
            "ai_speaks_first",
            "rollout_percentage",
        ),
    ),
    ("prompts", _("プロンプト"), ("instructions_template", "greeting_template")),
    (
        "variables",
        _("プロンプト変数"),
        (
            "company_name",
            "service_name",
            "representative_name",
            "self_introduction",
            "service_description",
        ),
    ),
    (
        "turn",
        _("ターン検出"),
        (
            "turn_detection",
            "vad_threshold",
            "vad_prefix_padding_ms",
            "vad_silence_duration_ms",
            "vad_eagerness",
            "interrupt_response",
        ),
    ),
    (
        "audio",
        _("音声入力"),
        ("transcription_model", "transcription_language", "noise_reduction"),
    ),
    (
        "handoff",
        _("ツールと引き継ぎ"),
        (
            "enabled_tools",
            "handoff_phone_number",
            "handoff_dtmf_digit",
            "handoff_farewell",
            "on_agent_unavailable",
            "return_to_ai_after_agent",
            "on_model_failure",
            "resume_message",
            "voicemail_message",
        ),
    ),
    ("mcp", _("MCPサーバー"), ("mcp_servers",)),
    ("http_tools", _("HTTPツール"), ("http_tools",)),
    ("limits", _("制限"), ("max_call_duration_s", "idle_timeout_s")),
    (
        "legacy",
        _("従来の音声認識経路 (Gather)"),
        (
            "legacy_text_model",
            "legacy_say_voice",
            "legacy_speech_model",
            "legacy_timeout_s",
            "legacy_speech_timeout",
            "legacy_hints",
            "legacy_action_on_empty_result",
        ),
    ),
    ("web", _("Web通話"), ("public_web_calls", "public_web_max_calls")),
    ("after_call", _("通話後の要約と抽出"), ("extraction_preset", "extraction_schema")),
)
# Form-only fields (not on the model).
FORM_ONLY = frozenset({"extraction_preset"})

# Which turn-detection types each VAD field applies to (the page hides the others).
VAD_FIELD_TYPES = {
    "vad_threshold": ("server_vad",),
    "vad_prefix_padding_ms": ("server_vad",),
    "vad_silence_duration_ms": ("server_vad",),
    "vad_eagerness": ("semantic_vad",),
    "interrupt_response": ("server_vad", "semantic_vad"),
}

LABELS = {
    "name": _("名前"),
    "realtime_enabled": _("Realtime を使う"),
    "model": _("モデル"),
    "voice": _("音声"),
    "speed": _("話す速さ"),
    "language": _("言語"),
    "ai_speaks_first": _("着信時にAIから話し始める"),
    "rollout_percentage": _("ロールアウト (%)"),
    "instructions_template": _("指示 (instructions)"),
    "greeting_template": _("最初のあいさつ"),
    "company_name": _("会社名"),
    "service_name": _("サービス名"),
    "representative_name": _("担当者名"),
    "self_introduction": _("自己紹介"),
    "service_description": _("サービス説明"),
    "turn_detection": _("ターン検出"),
    "vad_threshold": _("しきい値"),
    "vad_prefix_padding_ms": _("前置パディング (ms)"),
    "vad_silence_duration_ms": _("無音判定 (ms)"),
    "vad_eagerness": _("応答の積極性 (eagerness)"),
    "interrupt_response": _("発話で応答を中断する"),
    "transcription_model": _("文字起こしモデル"),
    "transcription_language": _("文字起こしの言語"),
    "noise_reduction": _("ノイズ除去"),
    "enabled_tools": _("使えるツール"),
    "handoff_phone_number": _("引き継ぎ先の電話番号"),
    "handoff_dtmf_digit": _("担当者を呼ぶキー"),
    "handoff_farewell": _("引き継ぎ前のひとこと"),
    "on_agent_unavailable": _("担当者が出られないとき"),
    "return_to_ai_after_agent": _("担当者の退出後AIに戻す"),
    "on_model_failure": _("モデル障害時"),
    "resume_message": _("通話の再接続後のひとこと"),
    "voicemail_message": _("留守番電話へのメッセージ"),
    "max_call_duration_s": _("最大通話時間 (秒)"),
    "idle_timeout_s": _("無音タイムアウト (秒)"),
    "mcp_servers": _("MCPサーバー (JSON)"),
    "http_tools": _("HTTPツール (JSON)"),
    "extraction_preset": _("既定のスキーマに置き換える"),
    "extraction_schema": _("抽出スキーマ (JSON Schema)"),
    "legacy_text_model": _("テキストモデル"),
    "legacy_say_voice": _("読み上げ音声 (<Say>)"),
    "legacy_speech_model": _("音声認識モデル"),
    "legacy_timeout_s": _("発話を待つ時間 (秒)"),
    "legacy_speech_timeout": _("発話終了の判定"),
    "legacy_hints": _("認識のヒント"),
    "legacy_action_on_empty_result": _("聞き取れないときは聞き返す"),
}

HELP = {
    "speed": _("0.25〜1.5。1.0 が標準です。"),
    "instructions_template": _(
        "{{変数名}} の形で変数を使えます。上のチップをクリックすると挿入されます。"
    ),
    "rollout_percentage": _(
        "この割合の通話が Realtime で応答します。残りは従来の音声認識経路 (Gather) で"
        "応答します。通話ごと (CallSid) に決まります。"
    ),
    "legacy_say_voice": _(
        "日本語 (ja-JP) を話せる Amazon Polly / Google の音声だけを選べます。"
    ),
    "legacy_speech_timeout": _("auto、または発話の終わりとみなす無音の秒数 (1〜60)。"),
    "legacy_hints": _("お客様が言いそうな言葉をカンマ区切りで (1つ100文字まで)。"),
    "handoff_phone_number": _("090-1234-5678 や +81… の形式で入力できます。"),
    "resume_message": _(
        "サーバーの再起動などで音声が途切れた通話が戻ったときに言います。空欄なら何も言いません。"
    ),
    "mcp_servers": _(
        '[{"name", "url", "headers", "allowed_tools", "timeout_s", "transport"}] の形の'
        "一覧です。transport は streamable-http (既定) か、古い SSE 方式のサーバーなら sse。"
        "ヘッダーの値は ******** と表示され、******** のままなら保存済みの値を使います。"
        "allowed_tools が空ならサーバーのすべてのツールを使います。"
    ),
    "http_tools": _(
        '[{"name", "description", "parameters", "url", "secret", "timeout_s"}] の形の'
        "一覧です。parameters は引数の JSON Schema、secret は署名の鍵 (16文字以上) で、"
        "******** と表示されます。******** のままなら保存済みの鍵を使います。"
    ),
    "extraction_schema": _(
        "通話の終了後、テキストモデルがこのスキーマの項目を文字起こしから抽出します。"
        "job_required が true になるか予約が入ると案件カードを作ります。"
    ),
}


def preview_values(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample values for previews, overlaid with whatever profile values are given."""
    values: dict[str, Any] = dict(SAMPLE_VALUES)
    values.update({k: v for k, v in (overrides or {}).items() if v not in (None, "")})
    return values


class PrettyJSONField(forms.JSONField):
    """A JSON field shown indented, Japanese as written (the extraction schema)."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


def _code_area(rows: int) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows, "spellcheck": "false", "class": "code"})


class ToolConfigFields(forms.ModelForm):
    """The profile's MCP servers and HTTP tools as JSON, secrets masked (F-78).

    Shared by the settings page and the admin: shown through agents.tool_masking,
    a masked value sent back keeps the stored one, then validated like the API.
    """

    mcp_servers = PrettyJSONField(required=False, widget=_code_area(8))
    http_tools = PrettyJSONField(required=False, widget=_code_area(12))

    def tool_config_init(self) -> None:
        self.initial["mcp_servers"] = mcp_servers_masked(self.instance.mcp_servers)
        self.initial["http_tools"] = http_tools_masked(self.instance.http_tools)

    def clean_mcp_servers(self) -> list[dict[str, Any]]:
        value = mcp_servers_unmasked(
            self.cleaned_data.get("mcp_servers"), self.instance.mcp_servers
        )
        return mcp_servers_clean(value)

    def clean_http_tools(self) -> list[dict[str, Any]]:
        value = http_tools_unmasked(
            self.cleaned_data.get("http_tools"), self.instance.http_tools
        )
        return http_tools_clean(value, builtin_names=TOOL_NAMES)

    def tool_config_check(self, data: dict[str, Any]) -> None:
        if "http_tools" in data and "mcp_servers" in data:
            try:
                names_clash_check(data["http_tools"], data["mcp_servers"])
            except ValidationError as exc:
                self.add_error("http_tools", exc)


class AgentProfileAdminForm(ToolConfigFields):
    """The admin's agent form: the tool configs masked like on the settings page."""

    class Meta:
        model = AgentProfile
        fields = ["mcp_servers", "http_tools"]  # the admin adds its fieldsets

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tool_config_init()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self.tool_config_check(data)
        return data


class AgentProfileForm(ToolConfigFields):
    """Every F-03 field of an agent profile, each with the control that fits it."""

    enabled_tools = forms.MultipleChoiceField(
        choices=[(name, TOOL_LABELS[name]) for name in TOOL_NAMES],
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    extraction_schema = PrettyJSONField(
        widget=forms.Textarea(
            attrs={"rows": 16, "spellcheck": "false", "class": "code"}
        )
    )
    extraction_preset = forms.ChoiceField(
        choices=[
            ("", _("置き換えない (下の内容を保存)")),
            ("reception", _("受付の既定スキーマ")),
            ("sales", _("営業の既定スキーマ")),
        ],
        required=False,
    )

    class Meta:
        model = AgentProfile
        fields = [
            name
            for _key, _legend, names in FIELDSETS
            for name in names
            if name not in FORM_ONLY
        ]
        widgets = {
            "speed": forms.NumberInput(
                attrs={
                    "type": "range",
                    "min": SPEED_MIN,
                    "max": SPEED_MAX,
                    "step": "0.05",
                }
            ),
            "vad_threshold": forms.NumberInput(
                attrs={"type": "range", "min": "0", "max": "1", "step": "0.05"}
            ),
            "instructions_template": forms.Textarea(
                attrs={"rows": 14, "spellcheck": "false"}
            ),
            "greeting_template": forms.Textarea(attrs={"rows": 3}),
            "self_introduction": forms.Textarea(attrs={"rows": 2}),
            "service_description": forms.Textarea(attrs={"rows": 3}),
            "voicemail_message": forms.Textarea(attrs={"rows": 2}),
            "language": forms.TextInput(attrs={"list": "language-suggestions"}),
            "transcription_language": forms.TextInput(
                attrs={"list": "language-suggestions"}
            ),
            "rollout_percentage": forms.NumberInput(attrs={"min": 0, "max": 100}),
            "handoff_phone_number": forms.TextInput(attrs={"inputmode": "tel"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            field.label = LABELS.get(name, field.label)
            if name in HELP:
                field.help_text = HELP[name]
            if name in VAD_FIELD_TYPES:
                field.widget.attrs["data-turn-types"] = " ".join(VAD_FIELD_TYPES[name])
        for name in ("instructions_template", "greeting_template"):
            self.fields[name].widget.attrs["data-template"] = name
        self.tool_config_init()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self.tool_config_check(data)
        preset = data.get("extraction_preset")
        if preset in PRESETS:
            data["extraction_schema"] = copy.deepcopy(PRESETS[preset])
            self.errors.pop("extraction_schema", None)
        return data

    def fieldsets(self) -> list[dict[str, Any]]:
        """Bound fields grouped for the template."""
        return [
            {"key": key, "legend": legend, "fields": [self[name] for name in names]}
            for key, legend, names in FIELDSETS
        ]


class TemplatePreviewForm(forms.Form):
    """What the live preview endpoint receives: a template and the profile values."""

    template = forms.CharField(required=False, max_length=20000, strip=False)
    company_name = forms.CharField(required=False, max_length=200)
    service_name = forms.CharField(required=False, max_length=200)
    representative_name = forms.CharField(required=False, max_length=200)
    self_introduction = forms.CharField(required=False, max_length=5000)
    service_description = forms.CharField(required=False, max_length=5000)

    def preview(self) -> dict[str, Any]:
        """Validate and render with agents.prompts, the one renderer (F-04)."""
        data = self.cleaned_data
        template = data["template"]
        try:
            validate_template(template)
        except ValidationError as exc:
            return {"ok": False, "error": " ".join(exc.messages)}
        values = preview_values({k: v for k, v in data.items() if k != "template"})
        return {"ok": True, "rendered": render_template(template, values)}


class LegacyPitchForm(forms.Form):
    """The structured sales pitch of older set-ups (F-05), turned into a template."""

    opening = forms.CharField(
        label=_("冒頭のあいさつ"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    self_introduction = forms.CharField(
        label=_("自己紹介"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    service_description = forms.CharField(
        label=_("サービス説明"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    objection_answers = forms.CharField(
        label=_("反論への切り返し"),
        required=False,
        help_text=_("1行に1つ。「断り文句 → 返答」の形がおすすめです。"),
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    closing = forms.CharField(
        label=_("締めくくり"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args: Any, agent: AgentProfile, **kwargs: Any) -> None:
        kwargs.setdefault(
            "initial",
            {
                "self_introduction": agent.self_introduction,
                "service_description": agent.service_description,
            },
        )
        super().__init__(*args, **kwargs)
        self.agent = agent

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not any((data.get(name) or "").strip() for name in self.fields):
            raise ValidationError(_("少なくとも1つの項目を入力してください。"))
        try:
            validate_template(self.instructions_template())
        except ValidationError as exc:
            raise ValidationError(exc.messages) from exc
        return data

    def instructions_template(self) -> str:
        """The instructions template the structured pitch converts into.

        Self introduction and service description become the profile variables of the
        same name (set on apply); the rest is quoted as written.
        """
        data = {k: (v or "").strip() for k, v in self.cleaned_data.items()}
        role = "あなたは{{company_name}}の電話営業担当AIです。"
        if self.agent.service_name:
            role += "{{service_name}}をご案内します。"
        parts = [
            role + "丁寧な日本語で、一度に二文までで簡潔に話してください。",
        ]
        sections = (
            ("冒頭のあいさつ", data.get("opening")),
            (
                "自己紹介",
                "{{self_introduction}}" if data.get("self_introduction") else "",
            ),
            (
                "サービス説明",
                "{{service_description}}" if data.get("service_description") else "",
            ),
            ("よくある断り文句と返答", data.get("objection_answers")),
            ("締めくくり", data.get("closing")),
        )
        parts += [f"# {title}\n{body}" for title, body in sections if body]
        return "\n\n".join(parts)

    def profile_updates(self) -> dict[str, str]:
        """Profile variables the converted template relies on."""
        return {
            name: self.cleaned_data[name].strip()
            for name in ("self_introduction", "service_description")
            if (self.cleaned_data.get(name) or "").strip()
        }
