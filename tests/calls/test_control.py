from __future__ import annotations

import pytest

from calls.control import CallNotLive, call_hangup_request
from calls.status import CallStatus
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def twilio_updates(monkeypatch):
    updates: list[dict] = []
    monkeypatch.setattr(
        "calls.control.twilio_call_update", lambda **kw: updates.append(kw)
    )
    return updates


def test_hanging_up_a_call_with_a_human_ends_both_legs_at_twilio(twilio_updates):
    """No bridge holds a handed-off call: Twilio completes the caller's and the human's legs."""
    call = CallSessionFactory(
        status=CallStatus.HUMAN_CONNECTED, handoff_agent_call_sid="CA" + "b" * 32
    )
    call_hangup_request(call=call)
    assert twilio_updates == [
        {"call_sid": call.twilio_call_sid, "status": "completed"},
        {"call_sid": "CA" + "b" * 32, "status": "completed"},
    ]


def test_hanging_up_a_ringing_call_cancels_it(twilio_updates):
    call = CallSessionFactory(status=CallStatus.RINGING, direction="outbound")
    call_hangup_request(call=call)
    assert twilio_updates == [{"call_sid": call.twilio_call_sid, "status": "canceled"}]


def test_hanging_up_an_ai_call_goes_to_its_bridge(twilio_updates, monkeypatch):
    sent = []
    monkeypatch.setattr("calls.control.call_control_send", lambda **kw: sent.append(kw))
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    call_hangup_request(call=call)
    assert sent == [{"call_id": call.pk, "command": "hangup"}]
    assert twilio_updates == []


def test_a_finished_call_cannot_be_hung_up(twilio_updates):
    call = CallSessionFactory(status=CallStatus.COMPLETED)
    with pytest.raises(CallNotLive):
        call_hangup_request(call=call)
    assert twilio_updates == []
