"""`stream-ended` for a call still on the AI: resume, count failures, fall back (F-68).

The stream ends without our side ending the call: the reply is a fresh stream with a
new one-time token; two resumes in a row whose stream never came → the fallback
chain. The whole path on real sockets is in tests/realtime/flow/test_resume.py.
"""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from calls.models import CallEvent, CallSession
from calls.status import CallStatus
from calls.telephony import call_stream_ended_twiml
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def public_base(settings):
    settings.PUBLIC_BASE_URL = "https://cc.example.com"
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }


def token_in(body: str) -> str:
    found = re.search(r'<Parameter name="stream_token" value="([^"]+)"', body)
    assert found, body
    return found.group(1)


def lost_call(**fields) -> CallSession:
    """A call on the AI whose stream was claimed, then ended without us."""
    return CallSessionFactory(
        status=CallStatus.AI_RESPONDING,
        stream_sid="MZ-first",
        stream_token_used_at=timezone.now(),
        answered_at=timezone.now(),
        **fields,
    )


def claim(call: CallSession, sid: str) -> None:
    """What the new bridge's claim does to the row (realtime.store)."""
    CallSession.objects.filter(pk=call.pk).update(
        stream_token_used_at=timezone.now(),
        stream_sid=sid,
        stream_lost_at=None,
        stream_resume_failures=0,
    )


def test_a_lost_stream_gets_a_fresh_stream_with_a_new_token():
    call = lost_call()
    old_token = call.stream_token
    body = call_stream_ended_twiml(call_id=call.pk)
    call.refresh_from_db()
    assert f"/api/twilio/media-stream/{call.pk}" in body
    assert f'action="https://cc.example.com/api/twilio/stream-ended/{call.pk}"' in body
    assert token_in(body) == call.stream_token != old_token
    assert call.status == CallStatus.AI_RESPONDING
    assert call.stream_token_used_at is None
    assert call.stream_lost_at is not None
    assert call.stream_resume_failures == 0
    lost = CallEvent.objects.get(call=call, type="stream-lost")
    assert lost.payload["stream_sid"] == "MZ-first"
    assert lost.payload["failed_resumes"] == 0


def test_the_second_failed_resume_in_a_row_apologises(settings):
    """Resume 1 never claimed → resume 2; never claimed either → the apology."""
    call = lost_call()
    call.agent.on_model_failure = "hang-up"
    call.agent.save()
    first = call_stream_ended_twiml(call_id=call.pk)
    call.refresh_from_db()
    lost_at = call.stream_lost_at
    second = call_stream_ended_twiml(call_id=call.pk)
    call.refresh_from_db()
    assert token_in(second) != token_in(first)
    assert call.stream_resume_failures == 1
    assert call.stream_lost_at == lost_at  # the gap counts from the first loss
    third = call_stream_ended_twiml(call_id=call.pk)
    call.refresh_from_db()
    assert "<Say" in third and "<Hangup />" in third and "<Stream" not in third
    assert call.status == CallStatus.FAILED
    assert call.stream_resume_failures == 2
    types = list(
        CallEvent.objects.filter(call=call)
        .order_by("id")
        .values_list("type", flat=True)
    )
    assert types.count("stream-lost") == 2
    assert "stream-resume-failed" in types and "apology" in types


def test_a_claim_in_between_resets_the_count():
    """Each stream that was claimed before it was lost starts the count afresh."""
    call = lost_call()
    for n in range(4):
        body = call_stream_ended_twiml(call_id=call.pk)
        assert "<Stream" in body, body
        claim(call, f"MZ-{n}")
    call.refresh_from_db()
    assert call.status == CallStatus.AI_RESPONDING
    assert call.stream_resume_failures == 0


def test_two_failed_resumes_hand_off_when_the_profile_says_so(monkeypatch):
    """on_model_failure=handoff and a number: the agent is dialled and this reply
    takes the caller into the room (no REST move on top of it)."""
    dialled: list[str] = []
    moved: list[int] = []
    monkeypatch.setattr(
        "handoff.services.twilio_call_create",
        lambda **kwargs: dialled.append(kwargs["to"]) or "CA-agent",
    )
    monkeypatch.setattr(
        "handoff.services.handoff_move_caller",
        lambda *, call_id: moved.append(call_id),
    )
    call = lost_call()
    call.agent.on_model_failure = "handoff"
    call.agent.handoff_phone_number = "+818070239355"
    call.agent.save()
    for _ in range(2):
        assert "<Stream" in call_stream_ended_twiml(call_id=call.pk)
    body = call_stream_ended_twiml(call_id=call.pk)
    call.refresh_from_db()
    assert f">handoff-{call.pk}</Conference>" in body
    assert call.status == CallStatus.TRANSFERRING
    assert call.handoff_trigger == "stream-lost"
    assert dialled == ["+818070239355"] and moved == []


def test_handoff_fallback_without_a_number_apologises():
    call = lost_call()
    call.agent.on_model_failure = "handoff"
    call.agent.handoff_phone_number = ""
    call.agent.save()
    for _ in range(2):
        call_stream_ended_twiml(call_id=call.pk)
    body = call_stream_ended_twiml(call_id=call.pk)
    call.refresh_from_db()
    assert "<Say" in body and "<Hangup />" in body
    assert call.status == CallStatus.FAILED
    assert CallEvent.objects.filter(call=call, type="handoff-refused").exists()


@pytest.mark.parametrize(
    ("status", "says"), [(CallStatus.COMPLETED, False), (CallStatus.FAILED, True)]
)
def test_a_call_that_ended_is_not_resumed(status, says):
    call = CallSessionFactory(status=status, stream_token_used_at=timezone.now())
    token = call.stream_token
    body = call_stream_ended_twiml(call_id=call.pk)
    call.refresh_from_db()
    assert "<Stream" not in body and "<Hangup />" in body
    assert ("<Say" in body) is says
    assert call.stream_token == token and call.status == status
    assert not CallEvent.objects.filter(call=call, type="stream-lost").exists()
