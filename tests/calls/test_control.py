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


def test_a_control_message_to_a_hanging_layer_fails_fast(twilio_updates, monkeypatch):
    """F-71: a channel layer (Redis) that does not answer is given
    CONTROL_SEND_TIMEOUT_S, then the client is told to try again (502)."""
    import asyncio

    from channels.layers import get_channel_layer

    from calls import services
    from calls.control import ApplicationError

    monkeypatch.setattr(services, "CONTROL_SEND_TIMEOUT_S", 0.2)
    layer = get_channel_layer()

    async def hangs(group, message):
        await asyncio.sleep(60)

    monkeypatch.setattr(layer, "group_send", hangs)
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    with pytest.raises(ApplicationError) as refused:
        call_hangup_request(call=call)
    assert refused.value.http_status == 502


def test_monitor_broadcasts_are_bounded_and_paused_while_the_layer_hangs(
    monkeypatch, caplog
):
    """F-71: a hanging layer costs a broadcast SEND_TIMEOUT_S once, then broadcasts
    are skipped for a moment; the failure and the recovery are logged once each."""
    import asyncio
    import time

    from channels.layers import get_channel_layer

    from calls import layer as layer_guard
    from calls.services import broadcast

    monkeypatch.setattr(layer_guard, "SEND_TIMEOUT_S", 0.1)
    monkeypatch.setattr(layer_guard, "PAUSE_AFTER_FAILURE_S", 0.3)
    monkeypatch.setattr(layer_guard, "health", layer_guard._LayerHealth())
    layer = get_channel_layer()
    sent = []
    hanging = True

    async def group_send(group, message):
        if hanging:
            await asyncio.sleep(60)
        sent.append(group)

    monkeypatch.setattr(layer, "group_send", group_send)
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    started = time.monotonic()
    for _ in range(5):
        broadcast(call=call, message={"type": "call.event"})
    assert time.monotonic() - started < 0.5  # one time-out, then skipped
    assert layer_guard.health.skipped == 4
    hanging = False
    time.sleep(0.35)
    broadcast(call=call, message={"type": "call.event"})
    assert len(sent) == 2  # the call's and the organisation's groups
    assert caplog.text.count("channel layer unreachable") == 1
    assert "channel layer back after" in caplog.text
