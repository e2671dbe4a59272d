"""The bridge config of a resumed stream (F-68) and of a call back from a human."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from calls.status import CallStatus
from realtime.call_setup import bridge_config_build
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db


def resumed_call(**fields):
    now = timezone.now()
    return CallSessionFactory(
        status=CallStatus.AI_RESPONDING,
        answered_at=now - timedelta(seconds=42),
        stream_lost_at=now - timedelta(seconds=1),
        **fields,
    )


def test_a_resumed_stream_reseeds_and_says_the_profile_line():
    call = resumed_call()
    assert call.agent.resume_message == "お待たせいたしました。"  # the default
    config = bridge_config_build(call=call)
    assert config.resume is True
    assert config.greeting is not None
    assert "「お待たせいたしました。」" in config.greeting
    # Its transcript goes on after what the call already said.
    assert 42_000 <= config.transcript_offset_ms < 52_000


def test_a_blank_resume_line_says_nothing():
    call = resumed_call()
    call.agent.resume_message = "  "
    call.agent.save()
    config = bridge_config_build(call=call)
    assert config.resume is True and config.greeting is None


def test_back_from_a_human_keeps_its_note():
    """The F-33/F-34 path is unchanged: the note is what the AI is told."""
    call = resumed_call(ai_resume_note="担当者は不在でした。")
    config = bridge_config_build(call=call)
    assert config.resume is True and config.greeting == "担当者は不在でした。"
    assert config.transcript_offset_ms >= 42_000


def test_a_first_stream_is_not_a_resume():
    call = CallSessionFactory(status=CallStatus.RINGING)
    config = bridge_config_build(call=call)
    assert config.resume is False and config.transcript_offset_ms == 0
