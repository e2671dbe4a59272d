"""The settings page's legacy-path section (F-72): voices for ja-JP only, a valid
speech-end timeout, and the per-path figures on the agent page and dashboard."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.models import AgentProfile
from calls.models import CallSession
from calls.status import CallStatus
from tests.calls.factories import CallSessionFactory
from tests.ui.test_agent_pages import _form_data

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "voice", ["Polly.Joanna", "Google.en-US-Standard-A", "alice", "Polly.Mizukii"]
)
def test_a_voice_that_cannot_speak_japanese_is_refused(logged_in, agent, voice):
    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]),
        _form_data(agent, legacy_say_voice=voice),
    )
    assert response.status_code == 400
    assert "legacy_say_voice" in response.context["form"].errors
    agent.refresh_from_db()
    assert agent.legacy_say_voice == "Polly.Mizuki"  # nothing saved


def test_legacy_settings_save(logged_in, agent):
    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]),
        _form_data(
            agent,
            legacy_say_voice="Google.ja-JP-Wavenet-C",
            legacy_speech_model="googlev2_telephony",
            legacy_speech_timeout="3",
            legacy_hints="予約,解約",
            legacy_action_on_empty_result=None,
        ),
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.legacy_say_voice == "Google.ja-JP-Wavenet-C"
    assert agent.legacy_speech_timeout == "3"
    assert agent.legacy_action_on_empty_result is False


@pytest.mark.parametrize("value", ["soon", "0", "61", "1.5"])
def test_bad_speech_timeout_is_refused(logged_in, agent, value):
    response = logged_in.post(
        reverse("agents:detail", args=[agent.pk]),
        _form_data(agent, legacy_speech_timeout=value),
    )
    assert response.status_code == 400
    assert "legacy_speech_timeout" in response.context["form"].errors


def test_api_refuses_a_foreign_voice(logged_in, agent):
    response = logged_in.patch(
        f"/api/agents/{agent.pk}/",
        {"legacy_say_voice": "Polly.Amy"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert AgentProfile.objects.get(pk=agent.pk).legacy_say_voice == "Polly.Mizuki"


def test_agent_page_and_dashboard_show_both_paths(logged_in, agent):
    CallSessionFactory(
        agent=agent,
        organization=agent.organization,
        path=CallSession.Path.LEGACY,
        status=CallStatus.COMPLETED,
        turn_latencies_ms=[1234],
    )
    for url in (reverse("agents:detail", args=[agent.pk]), reverse("calls:dashboard")):
        html = logged_in.get(url).content.decode()
        assert 'data-testid="path-figures"' in html
        assert 'data-path="realtime"' in html and 'data-path="legacy"' in html
        assert "1234 ms" in html


def test_call_api_says_which_path(logged_in, agent):
    call = CallSessionFactory(
        agent=agent, organization=agent.organization, path=CallSession.Path.LEGACY
    )
    data = logged_in.get(f"/api/calls/{call.pk}/").json()
    assert data["path"] == "legacy"


def test_call_pages_show_the_path(logged_in, agent):
    call = CallSessionFactory(
        agent=agent,
        organization=agent.organization,
        path=CallSession.Path.LEGACY,
        status=CallStatus.AI_RESPONDING,
    )
    detail = logged_in.get(reverse("calls:detail", args=[call.pk])).content.decode()
    assert 'data-path="legacy"' in detail and "従来経路 (Gather)" in detail
    listing = logged_in.get(reverse("calls:list")).content.decode()
    assert 'data-path="legacy"' in listing
