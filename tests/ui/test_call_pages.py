"""Operators' call pages: login, organisation scope, figures, filters, controls."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from calls.figures import (
    figures_for,
    latency_histogram,
    latency_mean_p95,
)
from calls.groups import call_control_group
from calls.models import CallEvent, Recording
from calls.status import CallStatus
from calls.timeline import event_text
from tests.calls.factories import CallSessionFactory, TranscriptEntryFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "name,args",
    [
        ("calls:dashboard", []),
        ("calls:list", []),
        ("calls:live", []),
        ("calls:today", []),
        ("calls:detail", [1]),
        ("agents:list", []),
        ("agents:detail", [1]),
    ],
)
def test_pages_require_login(client, name, args):
    """An anonymous visitor is sent to the login page."""
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_login_page_renders_in_japanese(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert "ログイン" in response.content.decode()


def test_login_with_the_form_lands_on_the_dashboard(client, operator):
    response = client.post(
        "/accounts/login/", {"username": operator.username, "password": "pw"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_english_is_available(logged_in):
    """The language switch (set_language) turns the pages English."""
    logged_in.post("/i18n/setlang/", {"language": "en", "next": "/"})
    html = logged_in.get("/").content.decode()
    assert "Dashboard" in html
    assert "ダッシュボード" not in html


def test_demo_banner_follows_demo_mode(logged_in, settings):
    settings.DEMO_MODE = True
    assert 'data-testid="demo-banner"' in logged_in.get("/").content.decode()
    settings.DEMO_MODE = False
    assert 'data-testid="demo-banner"' not in logged_in.get("/").content.decode()


def test_dashboard_lists_only_own_live_calls(
    logged_in, live_call, ended_call, foreign_call
):
    html = logged_in.get("/").content.decode()
    assert f'data-call-id="{live_call.pk}"' in html
    assert f'data-call-id="{ended_call.pk}"' not in html
    assert f'data-call-id="{foreign_call.pk}"' not in html
    fragment = logged_in.get(reverse("calls:live")).content.decode()
    assert f'data-call-id="{live_call.pk}"' in fragment
    assert f'data-call-id="{foreign_call.pk}"' not in fragment


def test_dashboard_shows_todays_figures(logged_in, org, agent):
    now = timezone.now()
    CallSessionFactory(
        organization=org,
        agent=agent,
        status=CallStatus.COMPLETED,
        answered_at=now,
        ended_at=now,
        turn_latencies_ms=[400, 600],
        cost_usd=Decimal("0.50"),
    )
    CallSessionFactory(
        organization=org,
        agent=agent,
        status=CallStatus.COMPLETED,
        answered_at=now,
        ended_at=now,
        handoff_requested_at=now,
        handoff_trigger="operator",
        turn_latencies_ms=[800],
        cost_usd=Decimal("0.25"),
    )
    response = logged_in.get("/")
    figures = response.context["figures"]
    assert figures.calls == 2
    assert figures.handoff_pct == 50
    assert figures.completion_pct == 100
    assert figures.latency_mean_ms == 600
    assert figures.cost_usd == Decimal("0.75")
    html = response.content.decode()
    assert "50.0%" in html
    assert 'id="chart-data"' in html
    assert "vendor/chartjs/chart.umd.js" in html
    # The same figures alone, as the dashboard refetches them while calls come and go.
    fragment = logged_in.get(reverse("calls:today"))
    assert fragment.context["figures"] == figures
    text = fragment.content.decode()
    assert '<dd data-figure="calls">2</dd>' in text
    assert "50.0%" in text
    assert 'id="chart-data"' in text
    assert "<html" not in text


def test_todays_figures_count_only_own_calls(logged_in, live_call, foreign_call):
    fragment = logged_in.get(reverse("calls:today"))
    assert fragment.context["figures"].calls == 1


def test_latency_figures():
    """Mean and nearest-rank p95; the histogram's last bin is open-ended."""
    assert latency_mean_p95([]) == (None, None)
    mean, p95 = latency_mean_p95(list(range(1, 101)))
    assert mean == 50.5
    assert p95 == 95
    counts = latency_histogram([0, 249, 250, 99999])
    assert counts[0] == 2
    assert counts[1] == 1
    assert counts[-1] == 1


def test_figures_count_outcomes(org, agent):
    now = timezone.now()
    calls = [
        CallSessionFactory(organization=org, agent=agent, status=CallStatus.NO_ANSWER),
        CallSessionFactory(
            organization=org,
            agent=agent,
            status=CallStatus.TRANSFERRING,
            answered_at=now,
        ),
    ]
    figures, charts = figures_for(calls)
    assert figures.calls == 2
    assert figures.answered == 1
    assert figures.handoff_pct == 100
    assert charts["outcome"]["counts"] == [0, 1, 1, 0]
    assert sum(charts["perHour"]["counts"]) == 2


def test_call_list_filters(logged_in, org, agent, foreign_call):
    inbound = CallSessionFactory(
        organization=org, agent=agent, from_number="+819011112222"
    )
    outbound = CallSessionFactory(
        organization=org,
        agent=agent,
        direction="outbound",
        to_number="+818033334444",
        status=CallStatus.COMPLETED,
    )
    old = CallSessionFactory(organization=org, agent=agent)
    type(old).objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=3)
    )

    def listed(**params):
        page = logged_in.get(reverse("calls:list"), params).context["page"]
        return {call.pk for call in page}

    assert listed() == {inbound.pk, outbound.pk, old.pk}
    assert listed(direction="outbound") == {outbound.pk}
    assert listed(status="completed") == {outbound.pk}
    assert listed(number="1111") == {inbound.pk}
    assert listed(number="080-3333") == set()  # national format is not rewritten
    assert listed(number="8033334444") == {outbound.pk}
    assert listed(date=timezone.localdate().isoformat()) == {inbound.pk, outbound.pk}
    assert listed(agent=agent.pk) == {inbound.pk, outbound.pk, old.pk}


def test_call_list_agent_filter_offers_only_own_agents(logged_in, agent, foreign_agent):
    form = logged_in.get(reverse("calls:list")).context["form"]
    assert list(form.fields["agent"].queryset) == [agent]


def test_other_organisations_call_is_404(logged_in, foreign_call):
    assert (
        logged_in.get(reverse("calls:detail", args=[foreign_call.pk])).status_code
        == 404
    )


def test_monitor_of_a_live_call(logged_in, live_call):
    TranscriptEntryFactory(
        call=live_call, speaker="ai", text="お電話ありがとうございます"
    )
    TranscriptEntryFactory(call=live_call, speaker="customer", text="予約したいです")
    html = logged_in.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    assert f'data-ws-path="/ws/calls/{live_call.pk}/"' in html
    assert 'role="log"' in html
    assert 'aria-live="polite"' in html
    assert "speaker-ai" in html
    assert "speaker-customer" in html
    assert "担当者に引き継ぐ" in html
    assert f'action="/api/calls/{live_call.pk}/handoff"' in html
    assert "monitor.js" in html


def test_detail_of_an_ended_call(logged_in, ended_call):
    ended_call.outcome = "appointment"
    ended_call.cost_usd = Decimal("0.1234")
    ended_call.input_audio_tokens = 321
    ended_call.save()
    recording = Recording.objects.create(
        call=ended_call, source="twilio-call", url="https://example.com/rec.mp3"
    )
    CallEvent.objects.create(
        call=ended_call, type="status", payload={"from": "ringing", "to": "completed"}
    )
    TranscriptEntryFactory(call=ended_call, speaker="ai", text="失礼いたします")
    html = logged_in.get(reverse("calls:detail", args=[ended_call.pk])).content.decode()
    audio_url = reverse("calls:recording-audio", args=[ended_call.pk, recording.pk])
    assert f'<audio controls preload="none" src="{audio_url}"' in html
    assert "ringing → completed" in html
    assert "appointment" in html
    assert "$0.1234" in html
    assert "321" in html
    assert "失礼いたします" in html
    assert "担当者に引き継ぐ" not in html
    assert "monitor.js" not in html


# --- Hang up and instruct ------------------------------------------------------


@pytest.fixture
def control_listener(live_call):
    """A channel joined to the call's control group, as the bridge consumer is."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(call_control_group(live_call.pk), channel)

    def receive():
        return async_to_sync(layer.receive)(channel)

    yield receive
    async_to_sync(layer.group_discard)(call_control_group(live_call.pk), channel)


def test_hangup_sends_the_control_message(logged_in, live_call, control_listener):
    response = logged_in.post(
        reverse("calls:hangup", args=[live_call.pk]), HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 202
    assert response.json()["ok"] is True
    assert control_listener() == {"type": "call.control", "command": "hangup"}


def test_instruct_sends_the_text(logged_in, live_call, control_listener, operator):
    response = logged_in.post(
        reverse("calls:instruct", args=[live_call.pk]),
        {"text": "料金は担当者から折り返すと伝えて"},
    )
    assert response.status_code == 302  # without JS: back to the monitor
    assert control_listener() == {
        "type": "call.control",
        "command": "instruct",
        "text": "料金は担当者から折り返すと伝えて",
        "by_id": operator.pk,
        "by_name": operator.username,
    }


def test_instruct_needs_text(logged_in, live_call):
    response = logged_in.post(
        reverse("calls:instruct", args=[live_call.pk]),
        {"text": "  "},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400
    assert response.json()["ok"] is False


def test_control_of_an_ended_call_is_refused(logged_in, ended_call):
    for name in ("calls:hangup", "calls:instruct"):
        response = logged_in.post(
            reverse(name, args=[ended_call.pk]),
            {"text": "x"},
            HTTP_ACCEPT="application/json",
        )
        assert response.status_code == 409
        assert "終了" in response.json()["message"]


def test_control_of_another_organisations_call_is_404(logged_in, foreign_call):
    for name in ("calls:hangup", "calls:instruct"):
        response = logged_in.post(reverse(name, args=[foreign_call.pk]), {"text": "x"})
        assert response.status_code == 404


def test_control_needs_post_login_and_csrf(client, operator, live_call):
    url = reverse("calls:hangup", args=[live_call.pk])
    assert client.post(url).status_code == 302  # to the login page
    client.force_login(operator)
    assert client.get(url).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)
    assert strict.post(url).status_code == 403


def test_handoff_api_takes_what_the_monitor_button_sends(logged_in, ended_call):
    """The button posts `{"reason": "monitor"}` as JSON with the session; a refusal
    comes back as `{"error": {"message": …}}`, which the page shows."""
    response = logged_in.post(
        f"/api/calls/{ended_call.pk}/handoff",
        {"reason": "monitor"},
        content_type="application/json",
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 409
    assert response.json()["error"]["message"]


def test_control_is_recorded_on_the_timeline(logged_in, live_call, operator):
    logged_in.post(reverse("calls:hangup", args=[live_call.pk]))
    logged_in.post(reverse("calls:instruct", args=[live_call.pk]), {"text": "急いで"})
    events = {e.type: e.payload for e in live_call.events.all()}
    assert events["hangup-requested"] == {"requested_by": operator.pk}
    assert events["instruct-requested"]["text"] == "急いで"


def test_unreachable_bridge_is_reported(logged_in, live_call, monkeypatch):
    """With the channel layer down the button says so instead of a server error."""

    def layer_down(**kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr("calls.control.call_control_send", layer_down)
    response = logged_in.post(
        reverse("calls:hangup", args=[live_call.pk]), HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 502
    assert response.json() == {
        "ok": False,
        "message": "通話に届きませんでした。もう一度お試しください。",
    }


def test_event_text_leaves_out_empty_values_and_cuts_long_ones():
    assert event_text("status", {"from": "a", "to": "b", "reason": "r"}) == (
        "a → b (r)"
    )
    line = event_text("handoff-refused", {"why": "x" * 200, "participant": "", "n": 0})
    assert line.startswith("引き継ぎは行いませんでした · why: xxx")
    assert line.endswith("… · n: 0")
    assert len(line) < 130
    assert "participant" not in line
