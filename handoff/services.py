"""Taking a live call from the AI to a human through a Twilio Conference, and back.

The order of a handoff (F-29):
1. `handoff_request` (any process; idempotent under concurrent requests: the call row
   is locked until the human's leg is dialled, and a second request gets the handoff
   already in flight, with that leg's SID): status → `transferring`,
   `handoff-initiated` broadcast with a system transcript line, the human's leg
   dialled into room `handoff-<id>` (announcement, starts and ends the room,
   recorded), and the bridge told over the channel layer (F-23).
2. The bridge (wherever the call lives) speaks the farewell, closes the model socket,
   and calls `handoff_move_caller`: the caller's call is updated into the same room
   (waits with hold music). Twilio ends the media stream itself.
3. Conference callbacks: the human joins → `human-connected`. The human leaves →
   the room ends with them, and Twilio asks the caller's `<Dial>` action what next
   (`handoff_room_ended_twiml`): back to the AI if the profile says so (F-34), else
   hang up. The participant-leave callback may come before or after that request.
4. The human's leg busy / no-answer / failed → back to the AI with a note that no one
   is free, or the AI takes a message (F-33): never silence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.phones import mask_phone
from callcenter.db import db_sync_to_async
from callcenter.errors import ApplicationError, ErrorCode
from calls import twiml as calls_twiml
from calls.inbound import stream_twiml
from calls.models import CallSession, new_stream_token
from calls.services import (
    broadcast,
    call_control_send,
    call_event_record,
    call_session_transition,
    transcript_entry_add,
)
from calls.status import CallStatus
from calls.twilio_client import (
    CALL_STATUS_EVENTS,
    twilio_call_create,
    twilio_call_update,
)
from calls.twilio_security import public_url
from handoff import twiml
from notifications.hooks import call_handoff_publish

log = logging.getLogger(__name__)

CONNECTING_LINE = "担当者に接続中..."
NO_AGENT_NOTE = (
    "担当者に電話をおつなぎできませんでした。担当者が対応できないことをお客様にお詫びし、"
    "引き続きご用件を伺ってください。"
)
TAKE_MESSAGE_NOTE = (
    "担当者に電話をおつなぎできませんでした。お客様にお詫びし、ご伝言とご連絡先を"
    "伺って、担当者から折り返すとお伝えください。"
)
# A web call (F-74) has no phone leg to move into a conference, and no supervisor
# console exists yet (F-75): the AI takes a message instead.
WEB_TAKE_MESSAGE_NOTE = (
    "Web通話のため、担当者に今すぐおつなぎすることはできません。お客様にお詫びし、"
    "お名前、ご連絡先、ご用件を伺って、担当者から折り返しご連絡するとお伝えください。"
)
WEB_MESSAGE_LINE = "担当者に代わりAIがご伝言を承ります。"
BACK_FROM_AGENT_NOTE = (
    "担当者との通話が終わり、お客様があなたとの会話に戻りました。"
    "ほかにご用件がないか伺ってください。"
)
AGENT_UNAVAILABLE = {"busy", "no-answer", "failed", "canceled"}
HANDOFF_LIVE = (CallStatus.TRANSFERRING, CallStatus.HUMAN_CONNECTED)
BRIDGE_SILENT_AFTER = timedelta(seconds=45)


@dataclass(frozen=True, slots=True)
class HandoffResult:
    call_id: int
    status: str
    agent_call_sid: str
    agent_number_masked: str
    created: bool


def _result(call: CallSession, *, created: bool) -> HandoffResult:
    return HandoffResult(
        call_id=call.pk,
        status=call.status,
        agent_call_sid=call.handoff_agent_call_sid,
        agent_number_masked=mask_phone(call.handoff_agent_number)
        if call.handoff_agent_number
        else "",
        created=created,
    )


def handoff_agent_number(*, call: CallSession, requested_by: object | None) -> str:
    """The operator's own number if they have one, else the agent profile's."""
    number = getattr(requested_by, "phone_number", "") or ""
    if not number and call.agent_id:
        number = call.agent.handoff_phone_number
    return number


def handoff_request(
    *,
    call_id: int,
    trigger: str,
    reason: str = "",
    requested_by: object | None = None,
    move_caller: bool = True,
) -> HandoffResult:
    """Start the handoff of a live AI call, or return the one already in flight.

    The human's leg is dialled while the call's row is still locked, so a concurrent
    request waits and then returns this handoff with its agent call SID. If Twilio
    refuses the leg, nothing is kept: the caller is still talking to the AI.
    `move_caller=False`: the caller's next TwiML is being answered by the caller of
    this function (a `<Connect action>`), so no REST update moves them.
    """
    dial_failed: ApplicationError | None = None
    with transaction.atomic():
        # Lock the call's row only: PostgreSQL refuses FOR UPDATE on the nullable
        # side of the outer join to the agent.
        call = (
            CallSession.objects.select_for_update(of=("self",))
            .select_related("agent")
            .get(pk=call_id)
        )
        if call.status in (CallStatus.TRANSFERRING, CallStatus.HUMAN_CONNECTED):
            return _result(call, created=False)
        if call.status != CallStatus.AI_RESPONDING:
            raise ApplicationError(
                f"Call {call_id} is not talking to the AI (status '{call.status}').",
                code=ErrorCode.CALL_NOT_LIVE,
            )
        if call.direction == CallSession.Direction.WEB:
            return _web_take_message(call=call, trigger=trigger, reason=reason)
        number = handoff_agent_number(call=call, requested_by=requested_by)
        if not number:
            raise ApplicationError(
                "No phone number to hand this call to: set one on the operator or the "
                "agent profile.",
                code=ErrorCode.NO_AGENT_NUMBER,
            )
        call.handoff_trigger = trigger
        call.handoff_reason = reason
        call.handoff_requested_by = (
            requested_by if getattr(requested_by, "pk", None) else None
        )
        call.handoff_requested_at = timezone.now()
        call.handoff_agent_number = number
        call.handoff_agent_call_sid = ""
        call.handoff_conference_name = twiml.conference_name(call.pk)
        call.save(
            update_fields=[
                "handoff_trigger",
                "handoff_reason",
                "handoff_requested_by",
                "handoff_requested_at",
                "handoff_agent_number",
                "handoff_agent_call_sid",
                "handoff_conference_name",
            ]
        )
        call_session_transition(
            call=call, to=CallStatus.TRANSFERRING, reason=f"handoff:{trigger}"
        )
        call_handoff_publish(call=call, trigger=trigger, reason=reason, mode="transfer")
        call_event_record(
            call=call,
            type="handoff-initiated",
            payload={"trigger": trigger, "reason": reason, "agent": mask_phone(number)},
        )
        transcript_entry_add(
            call=call,
            speaker="system",
            text=CONNECTING_LINE,
            offset_ms=_offset_ms(call),
        )
        transaction.on_commit(
            lambda: broadcast(
                call=call,
                message={
                    "type": "handoff.initiated",
                    "trigger": trigger,
                    "agent": mask_phone(number),
                },
            )
        )
        try:
            agent_sid = _dial_agent(call=call, number=number)
        except ApplicationError as exc:
            transaction.set_rollback(True)
            dial_failed = exc
    if dial_failed is not None:
        # The bridge was not told: the caller is still talking to the AI.
        call.refresh_from_db()
        call_event_record(
            call=call,
            type="handoff-failed",
            payload={"reason": f"agent-dial-failed: {dial_failed}"[:200]},
        )
        raise dial_failed
    call_control_send(
        call_id=call.pk,
        command="handoff",
        farewell=call.agent.handoff_farewell if call.agent_id else "",
    )
    if move_caller and not _bridge_alive(call):
        # No bridge is looking after the stream: move the caller ourselves.
        handoff_move_caller(call_id=call.pk)
    call.handoff_agent_call_sid = agent_sid
    return _result(call, created=True)


def _web_take_message(*, call: CallSession, trigger: str, reason: str) -> HandoffResult:
    """A web call's handoff: the AI stays and takes a message (no console yet)."""
    call.handoff_trigger = trigger
    call.handoff_reason = reason
    call.handoff_requested_at = timezone.now()
    call.save(
        update_fields=["handoff_trigger", "handoff_reason", "handoff_requested_at"]
    )
    call_event_record(
        call=call,
        type="handoff-message",
        payload={"trigger": trigger, "reason": reason},
    )
    transcript_entry_add(
        call=call, speaker="system", text=WEB_MESSAGE_LINE, offset_ms=_offset_ms(call)
    )
    call_handoff_publish(call=call, trigger=trigger, reason=reason, mode="message")
    transaction.on_commit(
        lambda: call_control_send(
            call_id=call.pk, command="instruct", text=WEB_TAKE_MESSAGE_NOTE
        )
    )
    return _result(call, created=True)


async def ahandoff_request(
    *, call_id: int, trigger: str, reason: str = "", requested_by: object | None = None
) -> HandoffResult:
    """See handoff_request()."""
    return await db_sync_to_async(handoff_request)(
        call_id=call_id, trigger=trigger, reason=reason, requested_by=requested_by
    )


def _bridge_alive(call: CallSession) -> bool:
    """A bridge holds the stream: it heartbeated, or claimed the stream, lately.

    The first heartbeat comes a second after the stream starts; a handoff before it
    is still the bridge's to finish (farewell, then move).
    """
    row = CallSession.objects.filter(pk=call.pk)
    seen = row.values_list("heartbeat_at", "stream_token_used_at").get()
    latest = max((t for t in seen if t is not None), default=None)
    return latest is not None and timezone.now() - latest < BRIDGE_SILENT_AFTER


def _offset_ms(call: CallSession) -> int:
    start = call.answered_at or call.created_at
    return int((timezone.now() - start).total_seconds() * 1000) if start else 0


def _dial_agent(*, call: CallSession, number: str) -> str:
    """Ring the human into the room; their leg is recorded (F-29)."""
    agent_twiml = twiml.agent_leg(
        call_id=call.pk,
        conference_status_url=public_url(f"/api/twilio/conference/status/{call.pk}"),
        recording_status_url=public_url(f"/api/twilio/recording/status/{call.pk}"),
    )
    sid = twilio_call_create(
        to=number,
        from_=settings.TWILIO_FROM_NUMBER or call.to_number,
        twiml=agent_twiml,
        status_callback=public_url(f"/api/twilio/handoff/agent-status/{call.pk}"),
        status_callback_event=CALL_STATUS_EVENTS,
        timeout=30,
    )
    CallSession.objects.filter(pk=call.pk).update(handoff_agent_call_sid=sid)
    call_event_record(
        call=call,
        type="handoff-agent-dialled",
        payload={
            "agent_call_sid": sid,
            "agent": mask_phone(number),
            "twiml": agent_twiml,
        },
    )
    return sid


def caller_leg_twiml(*, call: CallSession, say: str = "", voice: str = "") -> str:
    """The caller's `<Dial><Conference>`; its action asks us what next when it ends.
    `say`: a line spoken first, in `voice` (the legacy path's farewell)."""
    return twiml.caller_leg(
        call_id=call.pk,
        conference_status_url=public_url(f"/api/twilio/conference/status/{call.pk}"),
        action_url=public_url(f"/api/twilio/stream-ended/{call.pk}"),
        say=say,
        voice=voice,
    )


def handoff_move_caller(*, call_id: int) -> None:
    """Move the caller's call into the handoff room (called once the farewell played)."""
    call = CallSession.objects.get(pk=call_id)
    # The human may answer and join while the farewell still plays: still move.
    if call.status not in HANDOFF_LIVE or not call.twilio_call_sid:
        return
    caller_twiml = caller_leg_twiml(call=call)
    twilio_call_update(call_sid=call.twilio_call_sid, twiml=caller_twiml)
    call_event_record(
        call=call, type="handoff-caller-moved", payload={"twiml": caller_twiml}
    )


ahandoff_move_caller = db_sync_to_async(handoff_move_caller)


def _unavailable_note(call: CallSession) -> str:
    if call.agent_id and call.agent.on_agent_unavailable == "take-message":
        return TAKE_MESSAGE_NOTE
    return NO_AGENT_NOTE


def _back_to_ai(
    *, call: CallSession, note: str, reason: str, move_caller: bool = True
) -> None:
    """Return the caller to a fresh AI stream that knows what happened (F-33, F-34).

    With `move_caller=False` the call is only made ready for a new stream (fresh
    token, the note, status): Twilio is about to ask for the caller's next TwiML
    itself (`handoff_room_ended_twiml`).
    """
    with transaction.atomic():
        locked = CallSession.objects.select_for_update().get(pk=call.pk)
        if locked.status not in (CallStatus.TRANSFERRING, CallStatus.HUMAN_CONNECTED):
            return
        locked.stream_token = new_stream_token()
        locked.stream_token_used_at = None
        locked.ai_resume_note = note
        locked.save(
            update_fields=["stream_token", "stream_token_used_at", "ai_resume_note"]
        )
        call_session_transition(call=locked, to=CallStatus.AI_RESPONDING, reason=reason)
        call_event_record(call=locked, type="back-to-ai", payload={"reason": reason})
        transcript_entry_add(
            call=locked,
            speaker="system",
            text="AIとの会話に戻りました。",
            offset_ms=_offset_ms(locked),
        )
    if move_caller and locked.twilio_call_sid:
        twilio_call_update(
            call_sid=locked.twilio_call_sid, twiml=stream_twiml(call=locked)
        )


def handoff_agent_status(*, call_id: int, status: str, agent_call_sid: str) -> None:
    """The human's leg reported a status; if nobody came, back to the AI (F-33).

    Nobody came: the leg was busy, not answered, failed, or it ended (`completed`)
    while the call was still transferring, i.e. the human hung up before joining.
    """
    call = CallSession.objects.select_related("agent").get(pk=call_id)
    call_event_record(
        call=call,
        type="handoff-agent-status",
        payload={"status": status, "agent_call_sid": agent_call_sid},
    )
    if call.status == CallStatus.TRANSFERRING and (
        status in AGENT_UNAVAILABLE or status == "completed"
    ):
        _back_to_ai(call=call, note=_unavailable_note(call), reason=f"agent-{status}")


def handoff_conference_event(*, call_id: int, event: str, participant_sid: str) -> None:
    """Conference callbacks drive the handoff states (F-14)."""
    call = CallSession.objects.select_related("agent").get(pk=call_id)
    call_event_record(
        call=call,
        type=f"conference-{event}",
        payload={"participant": participant_sid},
    )
    is_agent = bool(participant_sid) and participant_sid == call.handoff_agent_call_sid
    if (
        event == "participant-join"
        and is_agent
        and call.status == CallStatus.TRANSFERRING
    ):
        call_session_transition(
            call=call, to=CallStatus.HUMAN_CONNECTED, reason="agent-joined"
        )
        broadcast(call=call, message={"type": "handoff.connected"})
    elif (
        event == "participant-leave"
        and is_agent
        and call.status == CallStatus.HUMAN_CONNECTED
    ):
        if call.agent_id and call.agent.return_to_ai_after_agent:
            # The room ended with the human: the caller's <Dial> action brings them
            # back (Twilio goes on with the caller's TwiML, not waiting for us).
            _back_to_ai(
                call=call,
                note=BACK_FROM_AGENT_NOTE,
                reason="agent-left",
                move_caller=False,
            )
        else:
            call_session_transition(
                call=call, to=CallStatus.COMPLETED, reason="agent-left"
            )


def handoff_room_ended_twiml(*, call_id: int, dial_status: str) -> str:
    """What the caller hears when their `<Dial>` into the room ends (F-34).

    Twilio asks as soon as the room ends, whether or not the participant-leave
    callback has reached us yet: the human connected and the profile allows it →
    back to the AI (the note says the human left); already made ready for the AI by
    that callback → the new stream; anything else → hang up.
    """
    call = CallSession.objects.select_related("agent").get(pk=call_id)
    call_event_record(
        call=call,
        type="handoff-room-left",
        payload={"status": call.status, "dial_status": dial_status},
    )
    if (
        call.status == CallStatus.HUMAN_CONNECTED
        and call.agent_id
        and call.agent.return_to_ai_after_agent
    ):
        _back_to_ai(
            call=call, note=BACK_FROM_AGENT_NOTE, reason="agent-left", move_caller=False
        )
        call.refresh_from_db()
    if call.status == CallStatus.AI_RESPONDING and call.stream_token_used_at is None:
        return stream_twiml(call=call)
    return calls_twiml.hang_up()
