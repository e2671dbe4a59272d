"""Status callbacks → attempts and contacts (F-64, F-49): order and repeats do not
matter, final statuses apply once, the retry policy decides what comes next."""

from __future__ import annotations

import itertools

import pytest

from calls.campaigns.models import Attempt, Contact, DoNotCall
from calls.campaigns.results import attempt_status_apply
from calls.models import CallSession
from calls.status import CallStatus
from calls.telephony import call_outbound_answered_twiml, call_status_callback
from tests.calls.campaigns.factories import DialerContactFactory, RunningCampaignFactory

pytestmark = pytest.mark.django_db

_sids = itertools.count()


def placed_attempt(**campaign_kwargs):
    """A contact with attempt #1 placed: its CallSession, a CallSid, state placed."""
    campaign = RunningCampaignFactory(**campaign_kwargs)
    contact = DialerContactFactory(
        campaign=campaign, status=Contact.Status.DIALING, attempts=1
    )
    call = CallSession.objects.create(
        organization=campaign.organization,
        agent=campaign.agent,
        direction=CallSession.Direction.OUTBOUND,
        status=CallStatus.INITIATED,
        from_number=campaign.from_number,
        to_number=contact.phone,
    )
    sid = f"CA{next(_sids):032x}"
    attempt = Attempt.objects.create(
        contact=contact, number=1, call=call, state=Attempt.State.PLACED, call_sid=sid
    )
    call.twilio_call_sid = sid
    call.save(update_fields=["twilio_call_sid"])
    return attempt


# (status, SequenceNumber, duration) as Twilio posts them for an answered call.
ANSWERED_CALL = [
    ("initiated", 0, ""),
    ("ringing", 1, ""),
    ("in-progress", 2, ""),
    ("completed", 3, "42"),
]
BUSY_CALL = [("initiated", 0, ""), ("busy", 1, "0")]


def deliver(attempt, callbacks):
    for status, seq, duration in callbacks:
        call_status_callback(
            call_id=attempt.call_id,
            status=status,
            call_sid=attempt.call_sid,
            duration=duration,
            sequence=str(seq),
        )


def final_state(attempt):
    attempt.refresh_from_db()
    contact = Contact.objects.get(pk=attempt.contact_id)
    return (
        attempt.state,
        attempt.result,
        attempt.duration,
        attempt.last_sequence,
        contact.status,
        contact.outcome,
    )


@pytest.mark.parametrize(
    "order",
    [
        pytest.param(lambda cbs: cbs, id="in-order"),
        pytest.param(lambda cbs: cbs + cbs, id="twice"),
        pytest.param(lambda cbs: list(reversed(cbs)), id="reversed"),
        pytest.param(lambda cbs: [cbs[-1], *cbs, cbs[-1]], id="final-first-and-again"),
    ],
)
@pytest.mark.parametrize(
    "callbacks", [ANSWERED_CALL, BUSY_CALL], ids=["answered", "busy"]
)
def test_duplicate_and_out_of_order_callbacks_give_the_same_final_state(
    order, callbacks
):
    """The same callbacks in order, twice, reversed, or with the final first and
    repeated: one final state, the one in-order delivery gives."""
    reference = placed_attempt()
    deliver(reference, callbacks)
    expected = final_state(reference)
    attempt = placed_attempt()
    deliver(attempt, order(callbacks))
    assert final_state(attempt) == expected
    assert expected[0] == Attempt.State.FINISHED


def test_lower_sequence_numbers_change_nothing():
    attempt = placed_attempt()
    deliver(attempt, [("in-progress", 5, "")])
    deliver(attempt, [("ringing", 3, "")])
    attempt.refresh_from_db()
    assert attempt.state == Attempt.State.ANSWERED and attempt.last_sequence == 5
    assert Contact.objects.get(pk=attempt.contact_id).status == Contact.Status.IN_CALL


def test_completed_call_takes_the_outcome_saved_by_the_agent():
    attempt = placed_attempt()
    deliver(attempt, ANSWERED_CALL[:3])
    CallSession.objects.filter(pk=attempt.call_id).update(outcome="資料送付")
    deliver(attempt, ANSWERED_CALL[3:])
    attempt.refresh_from_db()
    assert (attempt.result, attempt.outcome, attempt.duration) == (
        "completed",
        "資料送付",
        42,
    )
    contact = Contact.objects.get(pk=attempt.contact_id)
    assert (contact.status, contact.outcome) == (Contact.Status.DONE, "資料送付")


def test_busy_is_retried_after_the_delay_until_attempts_run_out():
    """busy in retry_on: retry-wait with next_attempt_at = now + delay; at
    max_attempts the contact is exhausted."""
    attempt = placed_attempt(max_attempts=2, retry_delay_seconds=600)
    deliver(attempt, BUSY_CALL)
    attempt.refresh_from_db()
    contact = Contact.objects.get(pk=attempt.contact_id)
    assert contact.status == Contact.Status.RETRY_WAIT
    assert (contact.next_attempt_at - attempt.ended_at).total_seconds() == 600
    second = Attempt.objects.create(
        contact=contact,
        number=2,
        call=CallSession.objects.create(
            organization=contact.campaign.organization,
            direction=CallSession.Direction.OUTBOUND,
            to_number=contact.phone,
        ),
        state=Attempt.State.PLACED,
        call_sid="CA" + "f" * 32,
    )
    deliver(second, BUSY_CALL)
    contact.refresh_from_db()
    assert contact.status == Contact.Status.EXHAUSTED


def test_a_result_not_retried_fails_the_contact():
    attempt = placed_attempt(retry_on=["busy"])
    deliver(attempt, [("no-answer", 2, "0")])
    assert Contact.objects.get(pk=attempt.contact_id).status == Contact.Status.FAILED


@pytest.mark.parametrize(
    ("action", "voicemail", "said"),
    [
        ("hangup", "またお電話します。", False),
        ("voicemail", "またお電話します。", True),
    ],
)
def test_machine_answer_follows_the_campaign_machine_action(action, voicemail, said):
    """AnsweredBy machine_start: hang up, or the profile's voicemail message, as the
    campaign says; the attempt ends `machine` (done unless machine is retried)."""
    attempt = placed_attempt(machine_action=action)
    agent = attempt.contact.campaign.agent
    agent.voicemail_message = voicemail
    agent.save(update_fields=["voicemail_message"])
    twiml = call_outbound_answered_twiml(
        call_id=attempt.call_id, answered_by="machine_start"
    )
    assert ("<Say" in twiml) is said
    deliver(attempt, [("completed", 4, "3")])
    attempt.refresh_from_db()
    assert (attempt.result, attempt.answered_by) == ("machine", "machine_start")
    assert Contact.objects.get(pk=attempt.contact_id).status == Contact.Status.DONE


def test_machine_retried_when_the_policy_says_so():
    attempt = placed_attempt(retry_on=["machine"])
    attempt_status_apply(
        call_id=attempt.call_id, status="completed", answered_by="machine_start"
    )
    assert (
        Contact.objects.get(pk=attempt.contact_id).status == Contact.Status.RETRY_WAIT
    )


def test_a_refusal_during_the_call_ends_the_contact_opted_out():
    attempt = placed_attempt(retry_on=["busy", "no-answer"])
    contact = attempt.contact
    DoNotCall.objects.create(
        organization=contact.campaign.organization,
        phone=contact.phone,
        source=DoNotCall.Source.CALL,
        call=attempt.call,
    )
    deliver(attempt, ANSWERED_CALL)
    contact = Contact.objects.get(pk=contact.pk)
    assert contact.status == Contact.Status.OPTED_OUT
    # The refusal is the call's outcome, kept when the call ends after it.
    assert contact.outcome == "opted-out"
    assert Attempt.objects.get(pk=attempt.pk).outcome == "opted-out"


def test_callbacks_of_other_calls_leave_campaigns_alone():
    call = CallSession.objects.create(
        organization=RunningCampaignFactory().organization,
        direction=CallSession.Direction.OUTBOUND,
    )
    assert attempt_status_apply(call_id=call.pk, status="completed") is None
