"""Admin actions on calls (F-40): hang up, export transcripts as CSV."""

from __future__ import annotations

import csv
import io

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from django.urls import reverse

from calls.groups import call_control_group
from tests.agents.factories import OperatorFactory
from tests.calls.factories import TranscriptEntryFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:calls_callsession_changelist")


@pytest.fixture
def staff(org):
    user = OperatorFactory(organization=org, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="calls")
    )
    return user


def test_hang_up_action_sends_hangup_to_live_calls_only(
    client, staff, live_call, ended_call
):
    layer = get_channel_layer()
    channels = {}
    for call in (live_call, ended_call):
        channels[call.pk] = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(call_control_group(call.pk), channels[call.pk])
    client.force_login(staff)
    response = client.post(
        CHANGELIST,
        {"action": "hang_up", "_selected_action": [live_call.pk, ended_call.pk]},
        follow=True,
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "1件の通話に切断を指示しました。" in text
    assert "1件は通話中でないか通話に届かなかったため、切断できませんでした。" in text
    message = async_to_sync(layer.receive)(channels[live_call.pk])
    assert message == {"type": "call.control", "command": "hangup"}


def test_export_transcripts_csv(client, staff, live_call, ended_call, foreign_call):
    TranscriptEntryFactory(
        call=live_call, speaker="ai", text="お電話ありがとうございます", offset_ms=100
    )
    TranscriptEntryFactory(
        call=live_call, speaker="customer", text="予約, お願いします", offset_ms=900
    )
    TranscriptEntryFactory(call=foreign_call, text="他社の通話")
    client.force_login(staff)
    response = client.post(
        CHANGELIST,
        {
            "action": "export_transcripts_csv",
            "_selected_action": [live_call.pk, ended_call.pk, foreign_call.pk],
        },
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    body = response.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][:3] == ["call_id", "call_created_at", "direction"]
    assert [(r[0], r[7], r[8]) for r in rows[1:]] == [
        (str(live_call.pk), "ai", "お電話ありがとうございます"),
        (str(live_call.pk), "customer", "予約, お願いします"),
    ]


def test_csv_export_needs_only_view_permission(client, org, live_call):
    viewer = OperatorFactory(organization=org, is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_callsession"))
    client.force_login(viewer)
    response = client.post(
        CHANGELIST,
        {"action": "export_transcripts_csv", "_selected_action": [live_call.pk]},
    )
    assert response["Content-Type"].startswith("text/csv")
    # Hanging up needs the change permission: the action is not offered.
    page = client.get(CHANGELIST).content.decode()
    assert 'value="hang_up"' not in page
