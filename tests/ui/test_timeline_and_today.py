"""Fixes found by a new user on the monitor and the dashboard (issue 16).

- One time zone on the timeline (the organisation's, TIME_ZONE), named once; live
  lines format their time in that zone (the page gives it to monitor.js).
- Events in words: TwiML becomes a sentence; the raw payload is behind "details";
  the monitor socket adds the same words to the events it forwards live.
- Today's calls: what the figure counts is said, and a live call counts today even
  when it started before midnight.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.urls import reverse
from django.utils import timezone

from calls.models import CallEvent
from calls.services import call_event_record
from calls.status import CallStatus
from calls.timeline import event_text, twiml_in_words
from tests.agents.factories import OperatorFactory, OrganizationFactory
from tests.calls.factories import CallSessionFactory
from tests.ui.test_consumers import _session_cookie

CALLER_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Say language="ja-JP">'
    "担当者におつなぎします</Say><Dial><Conference>handoff-7</Conference></Dial>"
    "</Response>"
)


def test_twiml_reads_as_steps_in_words():
    assert twiml_in_words(CALLER_TWIML) == (
        "TwiML: 「担当者におつなぎします」と読み上げる → 会議 handoff-7 に参加する"
    )
    assert twiml_in_words(
        '<?xml version="1.0"?><Response><Connect><Stream url="wss://x/"/></Connect>'
        "</Response>"
    ) == ("TwiML: AIの音声ストリームにつなぐ")
    assert twiml_in_words("<Response><Hangup/></Response>") == "TwiML: 切断する"
    # Not XML: shown as it is, cut short.
    assert twiml_in_words("<?xml broken" + "x" * 200).endswith("…")


def test_an_event_with_twiml_is_a_sentence():
    line = event_text("handoff-caller-moved", {"twiml": CALLER_TWIML})
    assert line == (
        "お客様を担当者との会議に移しました · TwiML: "
        "「担当者におつなぎします」と読み上げる → 会議 handoff-7 に参加する"
    )
    assert "<?xml" not in line
    assert event_text("some-new-kind", {"a": 1, "b": ""}) == "a: 1"


def test_supervision_events_say_who_did_it():
    from django.utils import translation

    payload = {"by_id": 3, "by_name": "佐藤", "listener": "l-1"}
    assert event_text("supervise-take-over", payload) == "佐藤 が通話を代わりました"
    assert event_text("supervise-whisper", {**payload, "text": "急いで"}) == (
        "佐藤 がAIにささやきました · text: 急いで"
    )
    lost = {"by_id": None, "reason": "supervisor-lost"}
    assert event_text("supervise-hand-back", lost) == (
        "通話をAIに戻しました · reason: supervisor-lost"
    )
    with translation.override("en"):
        assert event_text("supervise-barge", payload) == "佐藤 barged in"


@pytest.mark.django_db
def test_the_timeline_shows_words_one_zone_and_the_raw_payload_behind_details(
    logged_in, live_call
):
    event = CallEvent.objects.create(
        call=live_call, type="handoff-caller-moved", payload={"twiml": CALLER_TWIML}
    )
    CallEvent.objects.filter(pk=event.pk).update(
        created_at=datetime(2026, 12, 6, 2, 38, 30, tzinfo=UTC)
    )
    html = logged_in.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    # The organisation's zone, named once on the page.
    assert html.count("時刻は Asia/Tokyo の時刻です") == 1
    assert 'data-time-zone="Asia/Tokyo"' in html
    assert "時刻は Asia/Tokyo の時刻です" in html
    line = html[html.index('class="event event-handoff-caller-moved"') :]
    line = line[: line.index("</li>")]
    assert ">11:38:30</time>" in line  # 02:38:30 UTC in Tokyo
    summary = re.search(r'<span class="event-summary">(.*?)</span>', line).group(1)
    assert "<?xml" not in summary and "&lt;?xml" not in summary
    assert "会議 handoff-7 に参加する" in summary
    # The raw payload, behind the toggle.
    details = re.search(
        r"<details[^>]*><summary>詳細</summary><pre>(.*?)</pre>", line, re.S
    )
    assert details and "&lt;Conference&gt;handoff-7" in details.group(1)


@pytest.mark.django_db
def test_the_monitor_script_formats_live_times_in_the_pages_zone(logged_in, live_call):
    html = logged_in.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    assert "callcenter/js/monitor.js" in html
    from pathlib import Path

    script = (
        Path(__file__).resolve().parents[2] / "static/callcenter/js/monitor.js"
    ).read_text()
    # Not the browser's zone: the page's, as the server renders saved lines.
    assert "toLocaleTimeString" not in script
    assert "timeZone: root.dataset.timeZone" in script


@pytest.mark.django_db(transaction=True)
async def test_the_monitor_socket_adds_the_words_in_the_pages_language():
    from callcenter.asgi import application

    @database_sync_to_async
    def world():
        org = OrganizationFactory()
        return OperatorFactory(organization=org), CallSessionFactory(
            organization=org, status=CallStatus.AI_RESPONDING
        )

    operator, call = await world()
    for language, words in (("ja", "会議 handoff-7 に参加する"), ("en", "join conference handoff-7")):  # fmt: skip
        headers = [
            (b"origin", b"http://localhost"),
            (b"host", b"localhost"),
            (b"accept-language", language.encode()),
            (b"cookie", (await _session_cookie(operator)).encode()),
        ]
        communicator = WebsocketCommunicator(
            application, f"/ws/calls/{call.pk}/", headers=headers
        )
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            await database_sync_to_async(call_event_record)(
                call=call, type="handoff-caller-moved", payload={"twiml": CALLER_TWIML}
            )
            message = await communicator.receive_json_from(timeout=3)
            assert message["type"] == "call.event"
            assert message["payload"] == {"twiml": CALLER_TWIML}  # raw, for details
            assert words in message["text"], message["text"]
            assert "<?xml" not in message["text"]
        finally:
            await communicator.disconnect()


@pytest.mark.django_db
def test_todays_calls_count_a_live_call_that_started_before_midnight(
    logged_in, org, agent
):
    midnight = timezone.make_aware(
        datetime.combine(timezone.localdate(), datetime.min.time())
    )
    CallSessionFactory(organization=org, agent=agent, status=CallStatus.COMPLETED)
    old_live = CallSessionFactory(
        organization=org, agent=agent, status=CallStatus.AI_RESPONDING
    )
    old_done = CallSessionFactory(
        organization=org, agent=agent, status=CallStatus.COMPLETED
    )
    type(old_live).objects.filter(pk__in=[old_live.pk, old_done.pk]).update(
        created_at=midnight - timedelta(minutes=5)
    )
    fragment = logged_in.get(reverse("calls:today"))
    html = fragment.content.decode()
    # Today's completed call and the live one from before midnight; not yesterday's.
    assert '<dd data-figure="calls">2</dd>' in html
    assert "今日の通話数" in html
    assert "今日 0:00 (Asia/Tokyo) 以降に始まった通話と、いま通話中の通話" in html
    dashboard = logged_in.get("/").content.decode()
    assert '<dd data-figure="calls">2</dd>' in dashboard
