"""Services driven by Twilio's callbacks: call status and recordings (F-12, F-13)."""

from __future__ import annotations

import logging

from django.db import transaction

from calls.models import CallSession, Recording
from calls.services import call_control_send, call_event_record, call_session_transition
from calls.status import TERMINAL, CallStatus

log = logging.getLogger(__name__)

# Twilio call-resource statuses → ours. in-progress is not a status change by itself:
# the bridge moves the call to ai-responding when the stream starts.
_FINAL = {
    "completed": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "no-answer": CallStatus.NO_ANSWER,
    "failed": CallStatus.FAILED,
    "canceled": CallStatus.CANCELED,
}


def call_status_callback(
    *,
    call_id: int,
    status: str,
    call_sid: str = "",
    duration: str = "",
    answered_by: str = "",
    dial_status: str = "",
    sequence: str = "",
) -> CallSession:
    """Apply Twilio's view of the call; a final status ends the bridge if still open.

    A campaign call's attempt and contact follow too (`SequenceNumber`-ordered,
    see `calls.campaigns.results`).
    """
    from calls.campaigns.results import attempt_status_apply

    call = _call_status_apply(
        call_id=call_id,
        status=status,
        call_sid=call_sid,
        duration=duration,
        answered_by=answered_by,
        dial_status=dial_status,
    )
    attempt_status_apply(
        call_id=call_id,
        status=status,
        call_sid=call_sid,
        sequence=sequence,
        answered_by=answered_by,
        duration=duration,
    )
    return call


def _call_status_apply(
    *,
    call_id: int,
    status: str,
    call_sid: str,
    duration: str,
    answered_by: str,
    dial_status: str,
) -> CallSession:
    with transaction.atomic():
        call = CallSession.objects.select_for_update().get(pk=call_id)
        call_event_record(
            call=call,
            type="twilio-status",
            payload={
                "status": status,
                "call_sid": call_sid,
                "duration": duration,
                "answered_by": answered_by,
                "dial_status": dial_status,
            },
        )
        if answered_by and not call.answered_by:
            call.answered_by = answered_by
            call.save(update_fields=["answered_by"])
        if call.status in TERMINAL:
            return call
        if status == "ringing" and call.status == CallStatus.INITIATED:
            call_session_transition(call=call, to=CallStatus.RINGING)
        target = _FINAL.get(status)
        if target is None:
            return call
        if target != CallStatus.COMPLETED and call.status not in (
            CallStatus.INITIATED,
            CallStatus.RINGING,
        ):
            # Busy/no-answer after the call was live means it ended: treat as completed.
            target = CallStatus.COMPLETED
        call_session_transition(call=call, to=target, reason=f"twilio:{status}")
    # Outside the transaction: the bridge (any process) closes the model socket now.
    call_control_send(call_id=call.pk, command="end", reason=f"twilio:{status}")
    return call


def call_recording_status(
    *,
    call_id: int,
    recording_sid: str,
    status: str,
    url: str = "",
    duration: str = "",
    conference_sid: str = "",
) -> Recording:
    """Create or update the Recording row for this RecordingSid."""
    call = CallSession.objects.get(pk=call_id)
    source = (
        Recording.Source.CONFERENCE if conference_sid else Recording.Source.TWILIO_CALL
    )
    valid_statuses = {choice.value for choice in Recording.Status}
    recording, _ = Recording.objects.update_or_create(
        recording_sid=recording_sid,
        defaults={
            "call": call,
            "source": source,
            "status": status if status in valid_statuses else Recording.Status.FAILED,
            "url": url,
            "duration_s": int(duration) if duration.isdigit() else None,
        },
    )
    call_event_record(
        call=call,
        type="recording",
        payload={"recording_sid": recording_sid, "status": status, "source": source},
    )
    return recording


def call_stream_ended_twiml(*, call_id: int, dial_status: str = "") -> str:
    """What the caller hears after the media stream ended (`<Connect action>`).

    Transferring, or the human already in the room → the handoff room (the bridge
    could not move the caller itself);
    still with the AI → our side did not end it (a process died or handed the stream
    over, the socket broke): resume it on a fresh stream (F-68, `calls.resume`); so
    too a call whose first stream a draining process refused (F-69);
    a failed call → an apology from Twilio's voice, since the model could not speak;
    anything else (the call ended) → hang up.

    With `dial_status` this is the action of the caller's `<Dial>` into the handoff
    room, which ended: the handoff decides (back to the AI, or hang up).
    """
    from calls import twiml
    from calls.resume import call_stream_lost_twiml, stream_expected_again
    from handoff.services import caller_leg_twiml, handoff_room_ended_twiml
    from realtime.call_setup import APOLOGY_LINE

    if dial_status:
        return handoff_room_ended_twiml(call_id=call_id, dial_status=dial_status)
    call = CallSession.objects.get(pk=call_id)
    call_event_record(call=call, type="stream-ended", payload={"status": call.status})
    if call.status in (CallStatus.TRANSFERRING, CallStatus.HUMAN_CONNECTED):
        return caller_leg_twiml(call=call)
    if call.path == CallSession.Path.LEGACY and call.status == CallStatus.AI_RESPONDING:
        # The bridge let go because Realtime refused the session (F-71): on with
        # the legacy path (F-72).
        from calls.inbound import stream_twiml

        return stream_twiml(call=call)
    if stream_expected_again(call):
        reply = call_stream_lost_twiml(call_id=call.pk)
        if reply is not None:
            return reply
        call.refresh_from_db()  # ended meanwhile
    if call.status == CallStatus.FAILED:
        return twiml.say_and_hang_up(APOLOGY_LINE)
    return twiml.hang_up()


MACHINE_ANSWERS = {
    "machine_start",
    "machine_end_beep",
    "machine_end_silence",
    "machine_end_other",
    "fax",
}


def call_outbound_answered_twiml(
    *, call_id: int, answered_by: str = "", call_sid: str = ""
) -> str:
    """TwiML for an outbound call the callee's side picked up (F-11).

    A person (or AMD unsure) gets the AI: on a media stream, or on the legacy
    Gather path when the profile's split (per `call_sid`) says so (F-72); a machine
    gets the profile's voicemail message, or a hang-up when there is none.
    """
    from calls import twiml
    from calls.inbound import stream_twiml

    call = CallSession.objects.select_related("agent").get(pk=call_id)
    if answered_by:
        call.answered_by = answered_by
        call.save(update_fields=["answered_by"])
    call_event_record(
        call=call,
        type="webhook",
        payload={"kind": "voice-outbound", "answered_by": answered_by},
    )
    if call.status in TERMINAL:
        return twiml.hang_up()
    if answered_by in MACHINE_ANSWERS:
        message = _machine_message(call=call, answered_by=answered_by)
        call_session_transition(
            call=call,
            to=CallStatus.COMPLETED,
            reason=f"answering-machine:{answered_by}",
        )
        if message:
            call_event_record(call=call, type="voicemail", payload={"message": message})
            return twiml.say_and_hang_up(message)
        return twiml.hang_up()
    if call.path == CallSession.Path.REALTIME and call.agent_id:
        # The same split as inbound calls (F-72), per CallSid.
        from calls.legacy.entry import call_path_set_legacy, legacy_reason

        # The webhook's CallSid: the row may not have it yet (saved after the dial).
        sid = call_sid or call.twilio_call_sid or ""
        why = legacy_reason(agent=call.agent, call_sid=sid)
        if why is not None:
            call_path_set_legacy(call=call, reason=why)
    return stream_twiml(call=call)


def call_amd_result(*, call_id: int, answered_by: str, call_sid: str = "") -> None:
    """Asynchronous AMD's verdict on an outbound call (campaign calls, F-11, F-64).

    The call is already on the AI. A machine (or fax) gets the voicemail message,
    when the campaign leaves one and the profile has one, or a hang-up: the call's
    TwiML is replaced, which ends the media stream. A person changes nothing.
    """
    from calls import twiml
    from calls.campaigns.results import attempt_answered_by
    from calls.twilio_client import TwilioError, twilio_call_update

    call = CallSession.objects.select_related("agent").get(pk=call_id)
    if answered_by and not call.answered_by:
        call.answered_by = answered_by
        call.save(update_fields=["answered_by"])
    call_event_record(call=call, type="amd", payload={"answered_by": answered_by})
    if answered_by not in MACHINE_ANSWERS or call.status in TERMINAL:
        attempt_answered_by(call_id=call.pk, answered_by=answered_by)
        return
    message = _machine_message(call=call, answered_by=answered_by)
    sid = call.twilio_call_sid or call_sid
    if message:
        call_event_record(call=call, type="voicemail", payload={"message": message})
    try:
        twilio_call_update(
            call_sid=sid,
            twiml=twiml.say_and_hang_up(message) if message else twiml.hang_up(),
        )
    except TwilioError as exc:
        call_event_record(
            call=call, type="error", payload={"step": "amd", "message": exc.message}
        )


def _machine_message(*, call: CallSession, answered_by: str) -> str:
    """What a machine hears: the profile's voicemail message, or nothing (hang up)
    when the call's campaign says so. Records AMD's verdict on the campaign attempt.
    """
    from calls.campaigns.results import attempt_answered_by

    message = call.agent.voicemail_message if call.agent_id else ""
    campaign = attempt_answered_by(call_id=call.pk, answered_by=answered_by)
    if campaign is not None and campaign.machine_action != "voicemail":
        return ""  # the campaign hangs up on machines
    return message
