"""One turn of the legacy path: what the caller said → the text model → TwiML (F-72).

`legacy_turn_twiml` runs on the event loop: a trip to a DB thread to read what the
turn needs (the call, the conversation, the rendered prompt), the text model and the
tools (the Realtime path's `realtime.tools.tool_run`), then the reply. What the turn
saves (the caller's line, the AI's line, tool events, usage and cost, the turn's
latency) is written behind the reply (`calls.legacy.writes`), in order; a handoff
or a failing model, which decide the reply from the database, are saved first.
Whatever goes wrong, the caller hears a sentence and Twilio gets TwiML.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents.models import AgentProfile
from callcenter.db import db_sync_to_async
from calls import twiml as calls_twiml
from calls.legacy import twiml as legacy_twiml
from calls.legacy.entry import (
    legacy_call_prompts,
    legacy_entry_twiml,
    legacy_turn_url,
)
from calls.legacy.text_model import (
    TextModelError,
    TextUsage,
    ToolCall,
    text_respond,
)
from calls.legacy.writes import write_behind, writes_settled
from calls.models import CallSession, TranscriptEntry
from calls.services import (
    call_event_record,
    call_session_end,
    transcript_entry_add,
)
from calls.status import TERMINAL, CallStatus
from realtime.call_tools import CallTools, providers_for
from realtime.tools import ToolContext

log = logging.getLogger(__name__)

MAX_ROUNDS = 4  # model calls in one turn (tool calls in between)
MAX_HISTORY = 60  # transcript lines sent to the model
NO_SPEECH_LIMIT = 3  # turns in a row without speech → goodbye
MODEL_FAILURE_LIMIT = 2  # failed turns in a row → the profile's model-failure path
TOOL_TIMEOUT_S = 5.0
LEGACY_MCP_WAIT_S = 1.0  # a turn waits this long at most for MCP tool lists
GOODBYE_LINE = "お電話ありがとうございました。失礼いたします。"
ROLES = {"customer": "user", "ai": "assistant"}


def legacy_line_save(
    *, call: CallSession, speaker: str, text: str, offset_ms: int | None = None
) -> None:
    """A transcript line at `offset_ms` (default: now), broadcast to monitors."""
    from realtime.call_setup import transcript_offset_ms

    transcript_entry_add(
        call=call,
        speaker=speaker,
        text=text,
        offset_ms=transcript_offset_ms(call) if offset_ms is None else offset_ms,
    )


@dataclass(slots=True)
class TurnPrep:
    call: CallSession
    agent: AgentProfile
    instructions: str
    input_items: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    enabled: tuple[str, ...]
    ctx: ToolContext
    heard: str = ""  # the caller's words ("" on a resume)
    confidence: str = ""
    note: str = ""  # back from a human: the note for the AI
    offset_ms: int = 0  # when the caller's words came in


@dataclass(slots=True)
class Conversation:
    texts: list[str] = field(default_factory=list)
    usage: TextUsage = field(default_factory=TextUsage)
    model_ms: int = 0
    rounds: int = 0
    tool_events: list[dict[str, Any]] = field(default_factory=list)
    handoff_reason: str | None = None
    end_call: bool = False
    error: TextModelError | None = None


def _gather(call: CallSession, agent: AgentProfile | None, text: str) -> str:
    return legacy_twiml.say_and_gather(
        agent=agent,
        text=text,
        action_url=legacy_turn_url(call.pk),
        silence_url=legacy_turn_url(call.pk, "silence"),
    )


def _history(call: CallSession) -> list[dict[str, Any]]:
    lines = list(
        TranscriptEntry.objects.filter(call=call)
        .order_by("-offset_ms", "-id")
        .values_list("speaker", "text")[:MAX_HISTORY]
    )
    items: list[dict[str, Any]] = []
    for speaker, text in reversed(lines):
        role = ROLES.get(speaker, "developer")
        content = text if role != "developer" else f"[{speaker}] {text}"
        items.append({"role": role, "content": content})
    return items


def _no_speech(call: CallSession, event: str) -> str:
    """Nothing was heard: ask again, or say goodbye after NO_SPEECH_LIMIT turns."""
    agent = call.agent
    CallSession.objects.filter(pk=call.pk).update(
        legacy_misses=F("legacy_misses") + 1, heartbeat_at=timezone.now()
    )
    call.refresh_from_db(fields=["legacy_misses"])
    call_event_record(
        call=call,
        type="legacy-no-speech",
        payload={"event": event, "in_a_row": call.legacy_misses},
    )
    if call.legacy_misses >= NO_SPEECH_LIMIT:
        legacy_line_save(call=call, speaker="ai", text=legacy_twiml.NO_ONE_THERE_LINE)
        call_session_end(call=call, reason="legacy-no-speech")
        return legacy_twiml.say_and_hang_up(
            agent=agent, text=legacy_twiml.NO_ONE_THERE_LINE
        )
    legacy_line_save(call=call, speaker="ai", text=legacy_twiml.NOT_HEARD_LINE)
    return _gather(call, agent, legacy_twiml.NOT_HEARD_LINE)


def legacy_turn_prepare(
    *, call_id: int, event: str, speech: str, confidence: str
) -> TurnPrep | str:
    """Read what the model needs (the caller's words not saved yet); or the TwiML
    that answers the turn without the model (call not with the AI, nothing heard)."""
    from handoff.services import caller_leg_twiml
    from realtime.call_setup import transcript_offset_ms

    call = CallSession.objects.select_related(
        "agent__organization", "organization"
    ).get(pk=call_id)
    agent = call.agent
    if call.status in TERMINAL:
        return legacy_twiml.say_and_hang_up(agent=agent, text="")
    if call.status in (CallStatus.TRANSFERRING, CallStatus.HUMAN_CONNECTED):
        return caller_leg_twiml(call=call)
    if call.status != CallStatus.AI_RESPONDING or agent is None:
        return legacy_entry_twiml(call=call)
    note = call.ai_resume_note if event == "resume" else ""
    if not note and not speech.strip():
        with transaction.atomic():
            return _no_speech(call, event)
    # Reads only: what the turn saves is written behind the reply.
    prompts, tools = legacy_call_prompts(call=call)
    items = _history(call)
    heard = "" if note else speech.strip()
    items.append(
        {"role": "developer", "content": note}
        if note
        else {"role": "user", "content": heard}
    )
    return TurnPrep(
        call=call,
        agent=agent,
        instructions=prompts.instructions,
        input_items=items,
        tools=tools,
        enabled=prompts.enabled_tools,
        ctx=ToolContext(
            call_id=call.pk,
            organization_id=call.organization_id,
            caller_number=prompts.caller_number,
        ),
        heard=heard,
        confidence=confidence,
        note=note,
        offset_ms=transcript_offset_ms(call),
    )


def _save_heard(prep: TurnPrep) -> None:
    """The caller's line and the call's heartbeat (behind the reply)."""
    call = prep.call
    with transaction.atomic():
        fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
        if prep.note:
            fields["ai_resume_note"] = ""
        CallSession.objects.filter(pk=call.pk).update(**fields)
        if prep.heard:
            legacy_line_save(
                call=call, speaker="customer", text=prep.heard, offset_ms=prep.offset_ms
            )
            call_event_record(
                call=call,
                type="legacy-speech",
                payload={"confidence": prep.confidence, "chars": len(prep.heard)},
            )


async def legacy_converse(prep: TurnPrep, *, deadline: float) -> Conversation:
    """The text model and its tool calls, until it has said something or the
    turn's time is up. Never raises: a failure is in `Conversation.error`."""
    talk = Conversation()
    items = list(prep.input_items)
    # The profile's MCP servers: their tools if the pool has them (or gets them)
    # within LEGACY_MCP_WAIT_S of this turn; a slower server is there next turn.
    tools = CallTools(
        enabled=prep.enabled,
        providers=providers_for(
            mcp_servers=prep.agent.mcp_servers or [],
            http_tools=prep.agent.http_tools or [],
            allow_private=settings.ALLOW_PRIVATE_URLS,
        ),
        builtin_timeout_s=TOOL_TIMEOUT_S,
    )
    offered = list(prep.tools)
    budget = min(LEGACY_MCP_WAIT_S, max(deadline - time.perf_counter() - 1.0, 0.0))
    offered += [
        {**t.schema(), "strict": False} for t in await tools.ask_once(within_s=budget)
    ]
    try:
        while talk.rounds < MAX_ROUNDS:
            talk.rounds += 1
            reply = await text_respond(
                model=prep.agent.legacy_text_model,
                instructions=prep.instructions,
                input_items=items,
                tools=offered,
                timeout_s=deadline - time.perf_counter(),
            )
            talk.usage = talk.usage + reply.usage
            talk.model_ms += reply.ms
            if reply.text:
                talk.texts.append(reply.text)
            if not reply.tool_calls:
                break
            items.extend(reply.call_items)
            for call in reply.tool_calls:
                items.append(await _run_tool(prep, tools, talk, call, deadline))
            if talk.handoff_reason is not None:
                break  # the profile's farewell follows; the model is done
            if talk.end_call and talk.texts:
                break
    except TextModelError as exc:
        talk.error = exc
    return talk


async def _run_tool(
    prep: TurnPrep,
    tools: CallTools,
    talk: Conversation,
    call: ToolCall,
    deadline: float,
) -> dict[str, Any]:
    started = time.perf_counter()
    outcome = await tools.run(
        call.name,
        call.arguments,
        prep.ctx,
        timeout_s=max(min(TOOL_TIMEOUT_S, deadline - started), 0.1),
    )
    result = outcome.result
    talk.tool_events.append(outcome.event(call.name, call.arguments))
    if result.handoff_reason is not None:
        talk.handoff_reason = result.handoff_reason
    if result.hang_up_after_playback:
        talk.end_call = True
    return {
        "type": "function_call_output",
        "call_id": call.call_id,
        "output": outcome.output_json,
    }


def _turn_cost(agent: AgentProfile, usage: TextUsage) -> Decimal:
    prices = settings.TEXT_PRICES.get(agent.legacy_text_model) or next(
        iter(settings.TEXT_PRICES.values())
    )
    uncached = max(usage.input_tokens - usage.cached_tokens, 0)
    total = (
        uncached * prices["text_in"]
        + usage.cached_tokens * prices["text_cached"]
        + usage.output_tokens * prices["text_out"]
    ) / 1_000_000
    return Decimal(str(round(total, 6)))


def _usage_changes(agent: AgentProfile, usage: TextUsage) -> dict[str, Any]:
    return {
        "input_text_tokens": F("input_text_tokens") + usage.input_tokens,
        "input_cached_tokens": F("input_cached_tokens") + usage.cached_tokens,
        "output_text_tokens": F("output_text_tokens") + usage.output_tokens,
        "cost_usd": F("cost_usd") + _turn_cost(agent, usage),
    }


def _save_turn(
    prep: TurnPrep,
    talk: Conversation,
    *,
    text: str,
    total_ms: int,
    offset_ms: int,
    event: str,
) -> None:
    """The turn's line, tool events, usage, cost and latency, in one transaction."""
    call = prep.call
    with transaction.atomic():
        for payload in talk.tool_events:
            call_event_record(call=call, type="tool-call", payload=payload)
        latencies = (
            CallSession.objects.filter(pk=call.pk)
            .values_list("turn_latencies_ms", flat=True)
            .get()
        )
        CallSession.objects.filter(pk=call.pk).update(
            **_usage_changes(prep.agent, talk.usage),
            legacy_misses=0,
            turn_latencies_ms=[*(latencies or []), total_ms],
        )
        if text:
            legacy_line_save(call=call, speaker="ai", text=text, offset_ms=offset_ms)
        call_event_record(
            call=call,
            type="legacy-turn",
            payload={
                "event": event,
                "ms": total_ms,
                "model_ms": talk.model_ms,
                "own_ms": max(total_ms - talk.model_ms, 0),
                "rounds": talk.rounds,
                "tokens": talk.usage.input_tokens + talk.usage.output_tokens,
            },
        )
        if talk.end_call and talk.handoff_reason is None:
            call_session_end(call=call, reason="ai-end-call")


def legacy_turn_decide(
    *, prep: TurnPrep, talk: Conversation, received: float, event: str
) -> str:
    """A turn whose reply depends on the database (a handoff, a failed model):
    saved before the reply, in one transaction."""
    from realtime.call_setup import transcript_offset_ms

    with transaction.atomic():
        if talk.error is not None:
            for payload in talk.tool_events:
                call_event_record(call=prep.call, type="tool-call", payload=payload)
            CallSession.objects.filter(pk=prep.call.pk).update(
                **_usage_changes(prep.agent, talk.usage)
            )
            return _model_failed(prep, talk)
        assert talk.handoff_reason is not None
        text = " ".join(talk.texts).strip()
        reply = _handoff(prep, talk.handoff_reason, text)
        total_ms = int((time.perf_counter() - received) * 1000)
        _save_turn(
            prep,
            talk,
            text=text,
            total_ms=total_ms,
            offset_ms=transcript_offset_ms(prep.call),
            event=event,
        )
        return reply


def _handoff(prep: TurnPrep, reason: str, text: str, trigger: str = "ai-tool") -> str:
    """Into the same Conference flow as a Realtime call (F-29): the human's leg is
    dialled, and this reply says the farewell and puts the caller in the room."""
    from callcenter.errors import ApplicationError
    from handoff.services import caller_leg_twiml, handoff_request

    call, agent = prep.call, prep.agent
    try:
        handoff_request(
            call_id=call.pk, trigger=trigger, reason=reason, move_caller=False
        )
    except ApplicationError as exc:
        call_event_record(
            call=call, type="handoff-refused", payload={"detail": str(exc)[:300]}
        )
        line = f"{text} {legacy_twiml.HANDOFF_REFUSED_LINE}".strip()
        return _gather(call, agent, line)
    call.refresh_from_db()
    farewell = agent.handoff_farewell or calls_twiml.HANDOFF_MESSAGE
    return caller_leg_twiml(
        call=call,
        say=f"{text} {farewell}".strip() if text and text != farewell else farewell,
        voice=legacy_twiml.say_voice(agent),
    )


def _model_failed(prep: TurnPrep, talk: Conversation) -> str:
    """The model timed out, failed or answered nonsense: ask again; the second time
    in a row, the profile's model-failure path (a human, or an apology). If it had
    already ended the call (end_call) the goodbye is said; if a tool of this turn
    did its work (a booking), the caller is not asked to repeat it."""
    from realtime.call_setup import APOLOGY_LINE

    call, agent = prep.call, prep.agent
    error = talk.error
    assert error is not None
    if talk.end_call:
        call_event_record(
            call=call,
            type="legacy-model-failed",
            payload={"kind": error.kind, "detail": error.detail, "after": "end_call"},
        )
        legacy_line_save(call=call, speaker="ai", text=GOODBYE_LINE)
        call_session_end(call=call, reason="ai-end-call")
        return legacy_twiml.say_and_hang_up(agent=agent, text=GOODBYE_LINE)
    CallSession.objects.filter(pk=call.pk).update(legacy_misses=F("legacy_misses") + 1)
    call.refresh_from_db(fields=["legacy_misses"])
    call_event_record(
        call=call,
        type="legacy-model-failed",
        payload={
            "kind": error.kind,
            "detail": error.detail,
            "in_a_row": call.legacy_misses,
        },
    )
    if call.legacy_misses < MODEL_FAILURE_LIMIT:
        if any(t["ok"] for t in talk.tool_events):
            line = legacy_twiml.NOTHING_SAID_LINE
        elif error.kind == "timeout":
            line = legacy_twiml.SLOW_MODEL_LINE
        else:
            line = legacy_twiml.MODEL_ERROR_LINE
        legacy_line_save(call=call, speaker="ai", text=line)
        return _gather(call, agent, line)
    if agent.on_model_failure == "handoff" and agent.handoff_phone_number:
        return _handoff(prep, f"text model: {error.kind}", "", trigger="model-failure")
    legacy_line_save(call=call, speaker="ai", text=APOLOGY_LINE)
    call_session_end(call=call, reason=f"model-failure: {error.kind}", failed=True)
    return legacy_twiml.say_and_hang_up(agent=agent, text=APOLOGY_LINE)


alegacy_turn_prepare = db_sync_to_async(legacy_turn_prepare, lane="setup")
alegacy_turn_decide = db_sync_to_async(legacy_turn_decide, lane="setup")


async def legacy_turn_twiml(
    *, call_id: int, event: str, speech: str, confidence: str, received: float
) -> str:
    """Answer one `<Gather>` action (or its silence redirect, or a resume)."""
    from realtime.call_setup import transcript_offset_ms

    deadline = received + settings.LEGACY_TEXT_TIMEOUT_S
    await writes_settled(call_id)  # the last turn's lines, before reading them
    prep = await alegacy_turn_prepare(
        call_id=call_id, event=event, speech=speech, confidence=confidence
    )
    if isinstance(prep, str):
        return prep
    write_behind(call_id, functools.partial(_save_heard, prep), "caller line")
    talk = await legacy_converse(prep, deadline=deadline)
    if talk.error is not None or talk.handoff_reason is not None:
        await writes_settled(call_id)
        return await alegacy_turn_decide(
            prep=prep, talk=talk, received=received, event=event
        )
    text = " ".join(talk.texts).strip()
    if talk.end_call:
        text = text or GOODBYE_LINE
        reply = legacy_twiml.say_and_hang_up(agent=prep.agent, text=text)
    else:
        text = text or legacy_twiml.NOTHING_SAID_LINE
        reply = _gather(prep.call, prep.agent, text)
    total_ms = int((time.perf_counter() - received) * 1000)
    write_behind(
        call_id,
        functools.partial(
            _save_turn,
            prep,
            talk,
            text=text,
            total_ms=total_ms,
            offset_ms=transcript_offset_ms(prep.call),
            event=event,
        ),
        "turn",
    )
    return reply
