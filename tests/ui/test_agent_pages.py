"""Agent settings page (F-39), live preview, legacy conversion (F-05)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from agents.forms import FIELDSETS
from agents.models import VOICES, AgentProfile

pytestmark = pytest.mark.django_db


def _form_data(agent: AgentProfile, **changes):
    """The settings form as the page posts it, with some values changed."""
    data = {}
    for _key, _legend, names in FIELDSETS:
        for name in names:
            value = getattr(agent, name, "")  # form-only fields: blank
            if isinstance(value, dict):  # the extraction schema's JSON text
                data[name] = json.dumps(value, ensure_ascii=False)
            elif isinstance(value, bool):
                if value:
                    data[name] = "on"
            elif name == "enabled_tools":
                data[name] = list(value)
            else:
                data[name] = "" if value is None else value
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def test_agent_list_shows_only_own_agents(logged_in, agent, foreign_agent):
    html = logged_in.get(reverse("agents:list")).content.decode()
    assert agent.name in html
    assert foreign_agent.name not in html


def test_other_organisations_agent_is_404(logged_in, foreign_agent):
    url = reverse("agents:detail", args=[foreign_agent.pk])
    assert logged_in.get(url).status_code == 404
    assert logged_in.post(url, {}).status_code == 404
    legacy = reverse("agents:legacy", args=[foreign_agent.pk])
    assert logged_in.post(legacy, {"opening": "x"}).status_code == 404


def test_settings_page_has_the_right_controls(logged_in, agent):
    response = logged_in.get(reverse("agents:detail", args=[agent.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    for voice in VOICES:
        assert f'<option value="{voice}"' in html
    assert 'type="range"' in html
    assert 'min="0.25"' in html
    assert 'max="1.5"' in html
    assert 'step="0.05"' in html
    assert 'data-range-output="id_speed"' in html
    assert '<option value="gpt-realtime-mini"' in html
    assert 'data-turn-types="semantic_vad"' in html  # eagerness
    assert 'data-turn-types="server_vad"' in html  # threshold, padding, silence
    assert 'data-insert="customer_name"' in html
    assert "既存設定から生成" in html
    form = response.context["form"]
    every_f03_field = {
        "name",
        "realtime_enabled",
        "model",
        "voice",
        "speed",
        "instructions_template",
        "greeting_template",
        "ai_speaks_first",
        "language",
        "turn_detection",
        "vad_threshold",
        "vad_prefix_padding_ms",
        "vad_silence_duration_ms",
        "vad_eagerness",
        "transcription_model",
        "transcription_language",
        "noise_reduction",
        "enabled_tools",
        "handoff_phone_number",
        "max_call_duration_s",
        "idle_timeout_s",
        "rollout_percentage",
    }
    assert every_f03_field <= set(form.fields)


def test_settings_save(logged_in, agent):
    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]),
        _form_data(
            agent,
            voice="cedar",
            speed="1.25",
            turn_detection="semantic_vad",
            vad_eagerness="high",
            instructions_template="{{company_name}}の{{representative_name}}です。",
            representative_name="鈴木",
            handoff_phone_number="090-1234-5678",
            enabled_tools=["end_call"],
        ),
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.voice == "cedar"
    assert agent.speed == 1.25
    assert agent.turn_detection == "semantic_vad"
    assert agent.vad_eagerness == "high"
    assert (
        agent.instructions_template == "{{company_name}}の{{representative_name}}です。"
    )
    assert agent.handoff_phone_number == "+819012345678"
    assert agent.enabled_tools == ["end_call"]
    page = logged_in.get(response["Location"]).content.decode()
    assert "設定を保存しました。" in page


def test_unknown_variable_is_named_in_the_error(logged_in, agent):
    before = agent.instructions_template
    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]),
        _form_data(agent, instructions_template="こんにちは{{nickname}}さん"),
    )
    assert response.status_code == 400
    errors = response.context["form"].errors["instructions_template"]
    assert "{{nickname}}" in errors[0]
    html = response.content.decode()
    assert "{{nickname}}" in html
    assert 'data-field-error="instructions_template"' in html
    agent.refresh_from_db()
    assert agent.instructions_template == before


@pytest.mark.parametrize("speed", ["0.2", "1.55"])
def test_speed_outside_the_ga_range_is_refused(logged_in, agent, speed):
    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]), _form_data(agent, speed=speed)
    )
    assert response.status_code == 400
    assert "speed" in response.context["form"].errors


def test_invalid_handoff_number_is_refused(logged_in, agent):
    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]),
        _form_data(agent, handoff_phone_number="12"),
    )
    assert response.status_code == 400
    assert "handoff_phone_number" in response.context["form"].errors


def test_preview_renders_with_sample_values(logged_in):
    response = logged_in.post(
        reverse("agents:preview"),
        {
            "template": "{{customer_name}}、{{company_name}}です。",
            "company_name": "X社",
        },
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True, "rendered": "山田様、X社です。"}


def test_preview_without_profile_values_uses_samples(logged_in):
    response = logged_in.post(
        reverse("agents:preview"), {"template": "{{company_name}}"}
    )
    assert response.json()["rendered"] == "株式会社サンプル"


def test_preview_names_the_unknown_variable(logged_in):
    response = logged_in.post(reverse("agents:preview"), {"template": "{{nickname}}"})
    body = response.json()
    assert body["ok"] is False
    assert "{{nickname}}" in body["error"]


def test_preview_requires_login_and_post(client, logged_in):
    assert logged_in.get(reverse("agents:preview")).status_code == 405
    client.logout()
    assert client.post(reverse("agents:preview"), {"template": "x"}).status_code == 302


LEGACY = {
    "opening": "お忙しいところ失礼いたします。",
    "self_introduction": "営業部の田中と申します",
    "service_description": "勤怠管理のクラウドサービスです",
    "objection_answers": "今は忙しい → 1分だけお時間をください",
    "closing": "資料をお送りしてもよろしいでしょうか。",
}


def test_legacy_conversion_previews_before_and_after_without_saving(logged_in, agent):
    before = agent.instructions_template
    response = logged_in.post(reverse("agents:legacy", args=[agent.pk]), LEGACY)
    assert response.status_code == 200
    after = response.context["after"]
    assert response.context["before"] == before
    assert "{{company_name}}" in after
    assert "{{service_name}}" in after  # the profile has a service name
    assert "{{self_introduction}}" in after
    assert "{{service_description}}" in after
    assert "お忙しいところ失礼いたします。" in after
    assert "今は忙しい → 1分だけお時間をください" in after
    assert "営業部の田中と申します" in response.context["after_rendered"]
    assert "{{" not in response.context["after_rendered"]
    html = response.content.decode()
    assert "変更前" in html
    assert "変更後" in html
    assert 'name="confirm" value="1"' in html
    agent.refresh_from_db()
    assert agent.instructions_template == before


def test_legacy_conversion_applies_on_confirm(logged_in, agent):
    response = logged_in.post(
        reverse("agents:legacy", args=[agent.pk]), {**LEGACY, "confirm": "1"}
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert "お忙しいところ失礼いたします。" in agent.instructions_template
    assert agent.self_introduction == "営業部の田中と申します"
    assert agent.service_description == "勤怠管理のクラウドサービスです"


def test_legacy_conversion_leaves_out_empty_sections(logged_in, agent):
    agent.service_name = ""
    agent.save()
    response = logged_in.post(
        reverse("agents:legacy", args=[agent.pk]),
        {"opening": "もしもし", "self_introduction": "", "service_description": ""},
    )
    after = response.context["after"]
    assert "{{service_name}}" not in after
    assert "{{self_introduction}}" not in after
    assert "もしもし" in after


def test_legacy_conversion_rejects_unknown_variables_and_empty_input(logged_in, agent):
    url = reverse("agents:legacy", args=[agent.pk])
    response = logged_in.post(url, {"opening": "{{nickname}}様", "confirm": "1"})
    assert response.status_code == 400
    assert "{{nickname}}" in response.content.decode()
    response = logged_in.post(
        url, {"opening": "", "self_introduction": "", "service_description": ""}
    )
    assert response.status_code == 400


# The extraction schema (F-76) ------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (
            '{"type": "object", "properties": {"a": {"type": "strng"}}}',
            "properties/a/type",
        ),
        ('{"type": "array", "items": {}}', '"type": "object"'),
        ('{"type": "object"}', '"properties" に項目を1つ以上'),
        ("[1, 2]", "JSON オブジェクトにしてください"),
        ("{not json", "JSON"),
    ],
)
def test_an_invalid_extraction_schema_is_refused_naming_the_problem(
    logged_in, agent, schema, problem
):
    before = agent.extraction_schema
    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]),
        _form_data(agent, extraction_schema=schema),
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert problem in page.replace("&quot;", '"')
    agent.refresh_from_db()
    assert agent.extraction_schema == before


def test_a_preset_replaces_the_extraction_schema(logged_in, agent):
    from agents.extraction_schema import SALES_SCHEMA

    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]),
        _form_data(agent, extraction_preset="sales", extraction_schema="{broken"),
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.extraction_schema == SALES_SCHEMA


def test_a_custom_extraction_schema_is_saved(logged_in, agent):
    custom = {"type": "object", "properties": {"車種": {"type": "string"}}}
    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]),
        _form_data(agent, extraction_schema=json.dumps(custom, ensure_ascii=False)),
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.extraction_schema == custom
