"""Inbound calls: route the number, admit or refuse, and build the reply (F-10)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents.phones import normalize_phone
from agents.selectors import customer_find, phone_number_route
from calls import twiml
from calls.legacy.entry import (
    call_path_set_legacy,
    legacy_entry_twiml,
    legacy_reason,
)
from calls.models import CallSession
from calls.services import call_event_record, call_session_transition
from calls.status import CallStatus
from calls.twilio_security import public_url, stream_url

log = logging.getLogger(__name__)

# A call that was answered with stream TwiML but whose stream never came is stale after
# this long and stops counting against the admission cap (the reaper closes it).
PENDING_STREAM_GRACE = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class InboundReply:
    twiml: str
    call: CallSession | None


def in_rollout(*, call_sid: str, percentage: int) -> bool:
    """Stable per call: the same CallSid always lands on the same side."""
    if percentage >= 100:
        return True
    bucket = int(hashlib.sha256(call_sid.encode()).hexdigest(), 16) % 100
    return bucket < percentage


def live_ai_call_count() -> int:
    """Calls holding (or about to hold) a bridge, across every process."""
    recent = timezone.now() - PENDING_STREAM_GRACE
    # One query (the webhook is on every call's setup path). Legacy calls (F-72)
    # hold no bridge and do not count.
    return (
        CallSession.objects.filter(path=CallSession.Path.REALTIME)
        .filter(
            Q(status=CallStatus.AI_RESPONDING)
            | Q(
                status__in=[CallStatus.INITIATED, CallStatus.RINGING],
                created_at__gte=recent,
                stream_token_used_at__isnull=True,
                handoff_trigger="",
            )
        )
        .count()
    )


def stream_twiml(*, call: CallSession, pause_s: int = 0) -> str:
    """The `<Connect><Stream>` reply carrying the call id and its one-time token
    (after `pause_s` seconds of `<Pause>` when asked); for a call on the legacy
    path (F-72), its `<Gather>` TwiML instead."""
    if call.path == CallSession.Path.LEGACY:
        from calls.legacy.entry import legacy_entry_twiml

        return legacy_entry_twiml(call=call)
    return twiml.stream(
        url=stream_url(f"/api/twilio/media-stream/{call.pk}"),
        parameters={"call_id": str(call.pk), "stream_token": call.stream_token},
        action=public_url(f"/api/twilio/stream-ended/{call.pk}"),
        pause_s=pause_s,
    )


def _fallback_to_human(
    *,
    call: CallSession,
    reason: str,
    apology: str = twiml.SORRY_MESSAGE,
    preamble: str = "",
) -> str:
    agent = call.agent
    number = agent.handoff_phone_number if agent else ""
    call_event_record(call=call, type="routed-to-human", payload={"reason": reason})
    if number:
        call.handoff_trigger = reason
        call.handoff_agent_number = number
        call.save(update_fields=["handoff_trigger", "handoff_agent_number"])
        call_session_transition(call=call, to=CallStatus.TRANSFERRING, reason=reason)
        return twiml.dial_number(
            message=preamble + twiml.HANDOFF_MESSAGE,
            number=number,
            caller_id=call.to_number,
            action=public_url(f"/api/twilio/status/{call.pk}"),
        )
    call_session_transition(call=call, to=CallStatus.COMPLETED, reason=reason)
    return twiml.say_and_hang_up(apology)


@transaction.atomic
def call_inbound_route(
    *, call_sid: str, from_number: str, to_number: str
) -> InboundReply:
    """Answer Twilio's inbound webhook.

    Unknown number → a polite message and hang-up (no call row). The AI switched
    off (USE_OPENAI_REALTIME) or over the live-call cap → a human if the profile has
    a number, else an apology. Realtime off for the profile, outside its rollout or
    refusing new sessions (F-71) → the legacy Gather path (F-72). Otherwise a
    CallSession and stream TwiML. A retried webhook (same CallSid) gets the same
    answer and creates nothing new.
    """
    existing = CallSession.objects.filter(twilio_call_sid=call_sid).first()
    if existing is not None:
        if existing.status in (CallStatus.INITIATED, CallStatus.RINGING) or (
            existing.path == CallSession.Path.LEGACY
            and existing.status == CallStatus.AI_RESPONDING
        ):
            return InboundReply(stream_twiml(call=existing), existing)
        return InboundReply(twiml.say_and_hang_up(twiml.SORRY_MESSAGE), existing)

    try:
        to_e164 = normalize_phone(to_number)
    except ValidationError:
        to_e164 = ""
    route = phone_number_route(number=to_e164) if to_e164 else None
    if route is None or route.agent is None:
        log.info("inbound call to unknown number %s refused", to_number)
        return InboundReply(twiml.say_and_hang_up(twiml.UNKNOWN_NUMBER_MESSAGE), None)

    agent = route.agent
    # Withheld or foreign-format caller ids ("anonymous", …) are kept as given.
    try:
        from_e164 = normalize_phone(from_number)
        customer = customer_find(
            organization_id=route.organization_id, phone_number=from_e164
        )
    except ValidationError:
        from_e164, customer = from_number[:32], None
    call = CallSession.objects.create(
        organization=route.organization,
        agent=agent,
        phone_number=route,
        customer=customer,
        direction=CallSession.Direction.INBOUND,
        from_number=from_e164,
        to_number=to_e164,
        twilio_call_sid=call_sid,
        contact_variables=(
            {"customer_name": customer.name} if customer and customer.name else {}
        ),
    )
    call_event_record(
        call=call,
        type="webhook",
        payload={"kind": "voice-incoming", "call_sid": call_sid},
    )

    if not settings.USE_OPENAI_REALTIME:
        return InboundReply(_fallback_to_human(call=call, reason="ai-off"), call)
    why_legacy = legacy_reason(agent=agent, call_sid=call_sid)
    if why_legacy is not None:
        call_path_set_legacy(call=call, reason=why_legacy)
        return InboundReply(legacy_entry_twiml(call=call), call)
    # Count after creating our row (it counts itself) so the cap is exact.
    if live_ai_call_count() > settings.MAX_LIVE_CALLS:
        call_event_record(
            call=call, type="overflow", payload={"cap": settings.MAX_LIVE_CALLS}
        )
        reply = _fallback_to_human(
            call=call,
            reason="overflow",
            apology=twiml.OVERFLOW_MESSAGE + twiml.SORRY_MESSAGE,
            preamble=twiml.OVERFLOW_MESSAGE,
        )
        return InboundReply(reply, call)
    call_session_transition(call=call, to=CallStatus.RINGING, reason="stream-pending")
    return InboundReply(stream_twiml(call=call), call)
