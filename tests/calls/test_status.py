from __future__ import annotations

import itertools

import pytest

from calls.models import CallEvent
from calls.services import call_session_end, call_session_transition
from calls.status import TERMINAL, TRANSITIONS, CallStatus, IllegalTransition
from tests.calls.factories import CallSessionFactory

LEGAL = [(a, b) for a, targets in TRANSITIONS.items() for b in sorted(targets)]
ILLEGAL = [
    (a, b)
    for a, b in itertools.product(CallStatus, CallStatus)
    if a != b and b not in TRANSITIONS[a]
]

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_legal_transition_changes_status_and_records_event(current, target):
    """Every legal transition is applied, timestamped and written to the timeline."""
    call = CallSessionFactory(status=current)
    call_session_transition(call=call, to=target, reason="test")
    call.refresh_from_db()
    assert call.status == target
    event = CallEvent.objects.get(call=call, type="status")
    assert event.payload == {"from": current, "to": target, "reason": "test"}
    if target in TERMINAL:
        assert call.ended_at is not None
        assert call.end_reason == "test"


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_illegal_transition_raises_and_changes_nothing(current, target):
    """An illegal transition raises a clear error naming both states; nothing changes."""
    call = CallSessionFactory(status=current)
    with pytest.raises(IllegalTransition) as excinfo:
        call_session_transition(call=call, to=target)
    assert f"'{current}'" in str(excinfo.value)
    assert f"'{target}'" in str(excinfo.value)
    call.refresh_from_db()
    assert call.status == current
    assert not CallEvent.objects.filter(call=call).exists()


def test_every_pair_is_classified():
    """The table covers all 100 ordered pairs: legal, illegal or a repeat."""
    assert len(LEGAL) + len(ILLEGAL) + len(CallStatus) == len(CallStatus) ** 2


@pytest.mark.parametrize("status", list(CallStatus))
def test_repeating_the_current_status_is_a_no_op(status):
    """Twilio resends callbacks: the same status twice changes nothing and logs nothing."""
    call = CallSessionFactory(status=status)
    call_session_transition(call=call, to=status)
    assert not CallEvent.objects.filter(call=call).exists()


def test_final_states_allow_nothing():
    """A finished call stays finished."""
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()


def test_answered_at_set_once_when_ai_starts():
    call = CallSessionFactory(status=CallStatus.RINGING)
    call_session_transition(call=call, to=CallStatus.AI_RESPONDING)
    call.refresh_from_db()
    first = call.answered_at
    assert first is not None
    call_session_transition(call=call, to=CallStatus.TRANSFERRING)
    call_session_transition(call=call, to=CallStatus.AI_RESPONDING)
    call.refresh_from_db()
    assert call.answered_at == first


def test_end_is_idempotent():
    """Ending an already finished call returns it unchanged instead of raising."""
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    call_session_end(call=call, reason="caller hung up")
    call_session_end(call=call, reason="again")
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "caller hung up"


def test_unknown_status_is_rejected():
    call = CallSessionFactory()
    with pytest.raises(ValueError):
        call_session_transition(call=call, to="on-hold")


def test_a_long_end_reason_is_cut_to_fit_not_refused():
    """A Twilio error text can be longer than the column: it is kept, shortened."""
    call = CallSessionFactory(status=CallStatus.INITIATED)
    call_session_transition(
        call=call, to=CallStatus.FAILED, reason="dial failed: " + "x" * 400
    )
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED
    assert len(call.end_reason) == 200 and call.end_reason.startswith("dial failed")
