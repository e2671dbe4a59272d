from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from calls.models import CallEvent
from calls.reaper import calls_reap
from calls.status import CallStatus
from tests.calls.factories import CallSessionFactory, TranscriptEntryFactory

pytestmark = pytest.mark.django_db


def test_call_without_heartbeat_is_closed_failed_and_keeps_transcript():
    """A bridge that stopped beating leaves a failed call with its transcript intact."""
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    TranscriptEntryFactory(call=call, text="予約したいです")
    call.heartbeat_at = timezone.now() - timedelta(minutes=5)
    call.save()
    assert calls_reap() == 1
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED
    assert "heartbeat" in call.end_reason
    assert call.transcript.get().text == "予約したいです"
    assert CallEvent.objects.filter(call=call, type="reaped").exists()


def test_healthy_and_finished_calls_are_left_alone():
    alive = CallSessionFactory(
        status=CallStatus.AI_RESPONDING, heartbeat_at=timezone.now()
    )
    done = CallSessionFactory(status=CallStatus.COMPLETED)
    fresh = CallSessionFactory(status=CallStatus.RINGING)
    assert calls_reap() == 0
    for call in (alive, done, fresh):
        status = call.status
        call.refresh_from_db()
        assert call.status == status


def test_stream_that_never_came_is_reaped():
    call = CallSessionFactory(status=CallStatus.RINGING)
    later = timezone.now() + timedelta(minutes=11)
    assert calls_reap(now=later) == 1
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED


def test_command_runs_once(capsys):
    call_command("reap_calls")
    assert "reaped 0 call(s)" in capsys.readouterr().out


def test_a_lost_stream_waits_for_its_resume_then_is_reaped():
    """F-68: a call whose stream was lost stays ai-responding while the resume may
    still come, however old its last heartbeat; a heartbeat time-out after the loss
    with no claimed stream, it is closed with its own reason."""
    now = timezone.now()
    call = CallSessionFactory(
        status=CallStatus.AI_RESPONDING,
        heartbeat_at=now - timedelta(minutes=5),
        stream_lost_at=now - timedelta(seconds=5),
    )
    assert calls_reap(now=now) == 0
    call.refresh_from_db()
    assert call.status == CallStatus.AI_RESPONDING
    assert calls_reap(now=now + timedelta(minutes=2)) == 1
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED
    assert call.end_reason == "reaped: the stream was lost and never resumed"
    assert CallEvent.objects.filter(call=call, type="reaped").count() == 1
