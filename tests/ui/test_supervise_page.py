"""The supervisor console on the monitor page (F-75): who sees it, what it holds.

The permission `calls.supervise_call` comes with the supervision migration; the
tests make it themselves so the page can be tried on its own.
"""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.test import override_settings
from django.urls import reverse

from calls.models import CallSession

pytestmark = pytest.mark.django_db

BUTTONS_JA = ("聴く", "割り込む", "代わる", "AIに戻す", "ささやく")
# The accessible names the operators' tests rely on (the issue's contract).
CONTRACT = ("聴く|Listen", "ささやく|Whisper", "割り込む|Barge", "代わる|Take over",
            "AIに戻す|Hand back")  # fmt: skip


def supervise_permission() -> Permission:
    permission, _ = Permission.objects.get_or_create(
        codename="supervise_call",
        content_type=ContentType.objects.get_for_model(CallSession),
        defaults={"name": "Can supervise live calls"},
    )
    return permission


@pytest.fixture
def supervisor(operator):
    operator.user_permissions.add(supervise_permission())
    return operator


def button_names(html: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", "", name).strip()
        for name in re.findall(r"<button\b[^>]*>(.*?)</button>", html, re.S)
    ]


def panel(html: str) -> str:
    start = html.find("data-supervise")
    assert start != -1, "no supervisor console on the page"
    return html[start : html.index("</section>", start)]


def test_a_supervisor_sees_the_console_on_a_live_call(client, supervisor, live_call):
    client.force_login(supervisor)
    html = client.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    console = panel(html)
    names = button_names(console)
    for pattern in CONTRACT:
        assert any(re.search(pattern, name) for name in names), (pattern, names)
    assert f'data-offer-url="/calls/{live_call.pk}/supervise/offer/"' in console
    assert f'data-api-url="/api/calls/{live_call.pk}/supervise/"' in console
    assert 'type="range"' in console and "data-balance" in console
    assert 'data-level-meter="caller"' in console
    assert 'data-level-meter="ai"' in console
    assert "AIが対応しています" in console  # nobody took the call over
    assert "callcenter/js/supervise.js" in html
    assert "callcenter/js/webrtc.js" in html


@override_settings(WEBRTC_ICE_SERVERS=[{"urls": "stun:stun.example.com:3478"}])
def test_listen_gets_the_web_call_ice_servers(client, supervisor, live_call):
    client.force_login(supervisor)
    html = client.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    found = re.search(
        r'<script id="supervise-ice-servers" type="application/json">(.*?)</script>',
        html,
    )
    assert found
    assert json.loads(found.group(1)) == [{"urls": "stun:stun.example.com:3478"}]


def test_the_console_speaks_english(client, supervisor, live_call):
    client.force_login(supervisor)
    response = client.get(
        reverse("calls:detail", args=[live_call.pk]), HTTP_ACCEPT_LANGUAGE="en"
    )
    names = button_names(panel(response.content.decode()))
    assert {"Listen", "Barge in", "Take over", "Hand back to the AI", "Whisper"} <= set(
        names
    )
    for pattern in CONTRACT:
        assert any(re.search(pattern, name) for name in names), (pattern, names)


def test_an_operator_without_the_permission_sees_no_console(logged_in, live_call):
    supervise_permission()  # exists, not granted
    html = logged_in.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    assert "data-supervise" not in html
    assert "supervise.js" not in html
    names = button_names(html)
    for name in BUTTONS_JA:
        assert name not in names
    # The monitor's own controls are still there.
    assert "担当者に引き継ぐ" in names


def test_an_ended_call_has_no_console(client, supervisor, ended_call):
    client.force_login(supervisor)
    html = client.get(reverse("calls:detail", args=[ended_call.pk])).content.decode()
    assert "data-supervise" not in html
    assert "supervise.js" not in html


def test_the_page_says_who_holds_the_call_and_who_listened(
    client, supervisor, live_call
):
    """Taken over by 佐藤: the console names them and offers the hand-back; the
    history shows who listened and stepped in (B2's fragment)."""
    from calls.models import CallEvent

    CallEvent.objects.create(
        call=live_call,
        type="supervise-listen-start",
        payload={"listener": "L1", "by_id": supervisor.pk, "by_name": "佐藤"},
    )
    CallEvent.objects.create(
        call=live_call,
        type="supervise-take-over",
        payload={"listener": "L1", "by_id": supervisor.pk, "by_name": "佐藤"},
    )
    live_call.held_by = supervisor
    live_call.save(update_fields=["held_by"])
    client.force_login(supervisor)
    html = client.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    console = panel(html)
    assert "佐藤 が対応しています" in console
    hand_back = re.search(r"<button[^>]*hand-back[^>]*>", console).group(0)
    assert "disabled" not in hand_back
    history = html[html.index('data-testid="supervision-history"') :]
    history = history[: history.index("</section>")]
    assert "佐藤" in history
    assert 'data-action="listen"' in history
    assert 'data-action="take-over"' in history


def test_a_call_with_a_human_offers_listening_from_the_supervisors_phone(
    client, supervisor, live_call
):
    """With a human in the conference the bridge is gone: the console offers the
    phone (prefilled with the supervisor's number), muted or coaching."""
    supervisor.phone_number = "+819012345678"
    supervisor.save(update_fields=["phone_number"])
    live_call.status = "human-connected"
    live_call.save(update_fields=["status"])
    client.force_login(supervisor)
    html = client.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    console = panel(html)
    assert "data-supervise-phone" in console
    assert 'value="+819012345678"' in console and 'name="coaching"' in console
    # Not named like the Listen button (the contract's accessible names stay unique).
    assert "自分の電話をつなぐ" in button_names(console)
    assert not any("聴く" in name for name in button_names(console)[1:])


def test_a_call_with_the_ai_offers_no_phone_listening(client, supervisor, live_call):
    client.force_login(supervisor)
    html = client.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    assert "data-supervise-phone" not in panel(html)
