"""Which path a call takes, and the legacy path's first TwiML (F-71, F-72).

The split is the profile's `rollout_percentage` (the Realtime share), deterministic
per CallSid (`calls.inbound.in_rollout`). A profile with Realtime off, and every new
call for `LEGACY_REALTIME_BACKOFF_S` after OpenAI Realtime refused a new session,
take the legacy path too.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

from agents.models import AgentProfile
from calls.legacy import twiml as legacy_twiml
from calls.models import CallEvent, CallSession, TranscriptEntry
from calls.services import call_event_record, call_session_transition
from calls.status import CallStatus
from calls.twilio_security import public_url

if TYPE_CHECKING:
    from realtime.call_setup import CallPrompts

REALTIME_REFUSED_EVENT = "realtime-refused"
# Rendered once per call, like a Realtime session's instructions: (prompts, tools).
PROMPTS_KEPT = 2000
_prompts: OrderedDict[tuple[int, str], tuple[CallPrompts, list[dict[str, Any]]]] = (
    OrderedDict()
)
_prompts_lock = threading.Lock()


def legacy_call_prompts(
    *, call: CallSession
) -> tuple[CallPrompts, list[dict[str, Any]]]:
    """The call's rendered prompt and its tools as the Responses API takes them,
    rendered on the call's first turn in this process and kept (LRU) after it."""
    from realtime.call_setup import call_prompts
    from realtime.tools import tools_for

    key = (call.pk, call.created_at.isoformat() if call.created_at else "")
    with _prompts_lock:
        kept = _prompts.get(key)
        if kept is not None:
            _prompts.move_to_end(key)
            return kept
    prompts = call_prompts(call=call)
    tools = [
        {**t.schema(), "strict": False} for t in tools_for(list(prompts.enabled_tools))
    ]
    with _prompts_lock:
        _prompts[key] = (prompts, tools)
        while len(_prompts) > PROMPTS_KEPT:
            _prompts.popitem(last=False)
    return prompts, tools


def legacy_turn_url(call_id: int, event: str = "gather") -> str:
    """Where the `<Gather>` posts its result (and its `<Redirect>` the silence)."""
    suffix = "" if event == "gather" else f"?event={event}"
    return public_url(f"/api/twilio/legacy/{call_id}/turn{suffix}")


def realtime_refusing() -> bool:
    """Whether OpenAI Realtime refused a new session lately (any process saw it)."""
    since = timezone.now() - timedelta(seconds=settings.LEGACY_REALTIME_BACKOFF_S)
    return CallEvent.objects.filter(
        type=REALTIME_REFUSED_EVENT, created_at__gte=since
    ).exists()


def legacy_reason(*, agent: AgentProfile, call_sid: str) -> str | None:
    """Why a new call takes the legacy path, or None for Realtime."""
    from calls.inbound import in_rollout

    if not agent.realtime_enabled:
        return "realtime-off"
    if not in_rollout(call_sid=call_sid, percentage=agent.rollout_percentage):
        return "outside-rollout"
    if realtime_refusing():
        return "realtime-unavailable"
    return None


def call_path_set_legacy(*, call: CallSession, reason: str) -> None:
    call.path = CallSession.Path.LEGACY
    call.save(update_fields=["path"])
    call_event_record(call=call, type="path", payload={"path": "legacy", "why": reason})


def legacy_entry_twiml(*, call: CallSession) -> str:
    """The first TwiML of a call on the legacy path, or of its return to the AI.

    New call: the greeting (when the AI speaks first), then a `<Gather>`. Back from
    a human (a note for the AI): a turn of the model with the note. Back after a
    broken stream (F-71 fallback mid-call): the profile's resume line.
    """
    started = time.perf_counter()
    call = CallSession.objects.select_related("agent").get(pk=call.pk)
    agent = call.agent
    if call.status in (CallStatus.INITIATED, CallStatus.RINGING):
        call_session_transition(
            call=call, to=CallStatus.AI_RESPONDING, reason="legacy-start"
        )
    if call.ai_resume_note:
        return legacy_twiml.redirect(legacy_turn_url(call.pk, "resume"))
    said_before = TranscriptEntry.objects.filter(
        call=call, speaker=TranscriptEntry.Speaker.AI
    ).exists()
    if said_before:
        text = agent.resume_message if agent else ""
    else:
        from realtime.call_setup import call_prompts

        prompts = call_prompts(call=call)
        text = prompts.greeting if prompts.speaks_first else ""
    reply = legacy_twiml.say_and_gather(
        agent=agent,
        text=text,
        action_url=legacy_turn_url(call.pk),
        silence_url=legacy_turn_url(call.pk, "silence"),
    )
    from calls.legacy.turns import legacy_line_save

    ms = int((time.perf_counter() - started) * 1000)
    if text:
        legacy_line_save(call=call, speaker="ai", text=text)
    updates = {"heartbeat_at": timezone.now()}
    if not said_before and call.first_audio_ms is None:
        updates["first_audio_ms"] = ms  # type: ignore[assignment]
    CallSession.objects.filter(pk=call.pk).update(**updates)
    call_event_record(
        call=call,
        type="legacy-start",
        payload={"said": text[:300], "ms": ms, "again": said_before},
    )
    return reply
