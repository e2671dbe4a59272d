"""What `simulate_call` prints about a call once it is over, read from the database."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from calls.models import CallEvent
from calls.status import CallStatus

if TYPE_CHECKING:
    from realtime.simulation.driver import Simulation

SPEAKERS = {"ai": "AI", "customer": "caller", "system": "system", "human": "human"}


def clock(offset_ms: int) -> str:
    """mm:ss.s of an offset into the call."""
    seconds = offset_ms / 1000
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def event_line(event: CallEvent) -> str:
    """One line for a call event (TwiML bodies left out)."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    if event.type == "status":
        reason = f" ({payload['reason']})" if payload.get("reason") else ""
        return f"status {payload.get('from')} → {payload.get('to')}{reason}"
    if event.type == "tool-call":
        where = f" @{payload['server']}" if payload.get("server") else ""
        source = f" ({payload['source']})" if payload.get("source") else ""
        verdict = "ok" if payload.get("ok") else f"error: {payload.get('error', '')}"
        size = f", {payload['output_bytes']} B" if "output_bytes" in payload else ""
        return (
            f"tool-call {payload.get('name')}{where}{source} {verdict}"
            f" {payload.get('ms')} ms{size}"
        )[:160]
    if event.type == "tools-added":
        servers = ", ".join(payload.get("servers") or ())
        return f"tools-added {servers}: {', '.join(payload.get('tools') or ())}"[:160]
    brief = ", ".join(
        f"{k}={v}" for k, v in payload.items() if k != "twiml" and v not in ("", None)
    )
    if len(brief) > 100:
        brief = brief[:99] + "…"
    return f"{event.type} {brief}".rstrip()


def print_report(simulation: Simulation) -> None:
    """Print the call as the database holds it now: transcript, timeline, figures."""
    call = simulation.call
    assert call is not None
    call.refresh_from_db()
    w = simulation.write
    w("")
    w(f"=== Call #{call.pk} {call.twilio_call_sid} ===")
    w(
        f"{call.from_number} → {call.to_number}  status {call.status}"
        f"  ({call.end_reason or '-'})  agent {call.agent or '-'}"
    )
    legacy = call.path == call.Path.LEGACY
    w(
        "path: legacy (Twilio <Gather> → text model → <Say>)"
        if legacy
        else "path: realtime (Media Stream ↔ OpenAI Realtime)"
    )
    w("")
    w("Transcript")
    entries = list(call.transcript.order_by("offset_ms", "pk"))
    if not entries:
        w("  (empty)")
    for entry in entries:
        cut = "  [interrupted]" if entry.interrupted else ""
        who = SPEAKERS.get(entry.speaker, entry.speaker)
        w(f"  {clock(entry.offset_ms)}  {who:<7} {entry.text}{cut}")
    w("")
    w("Status timeline")
    start = call.created_at
    for event in call.events.order_by("created_at", "pk"):
        at = (event.created_at - start).total_seconds()
        w(f"  +{at:6.2f}s  {event_line(event)}")
    w("")
    w("Usage and cost")
    w(
        f"  input tokens: text {call.input_text_tokens}, audio "
        f"{call.input_audio_tokens}, cached {call.input_cached_tokens}; output "
        f"tokens: text {call.output_text_tokens}, audio {call.output_audio_tokens}"
    )
    w(f"  cost: ${call.cost_usd:.6f}   model session: {call.openai_session_id or '-'}")
    w("")
    w("Latency")
    first = f"{call.first_audio_ms} ms" if call.first_audio_ms is not None else "-"
    if legacy:
        w(f"  first TwiML (voice webhook → greeting <Say>): {first}")
    else:
        w(f"  first audio (stream start → first AI audio): {first}")
    turns = [int(v) for v in call.turn_latencies_ms or []]
    span = (
        "<Gather> result in → TwiML out"
        if legacy
        else "speech stopped → first answer audio"
    )
    if turns:
        w(
            f"  turn latencies ({span}): {turns} ms  "
            f"(median {statistics.median(turns):.0f}, max {max(turns)})"
        )
        if legacy:
            own = [
                int(e.payload.get("own_ms", 0))
                for e in call.events.filter(type="legacy-turn")
            ]
            w(f"  our own share of each turn (without the text model): {own} ms")
    else:
        w("  turn latencies: none measured")
    if not legacy:
        w(f"  barge-ins: {call.barge_in_count}")
        w(f"  audio the caller heard: {simulation.heard_ms / 1000:.1f} s")
    if simulation.handoff_after is not None:
        w("")
        w("Handoff")
        w(f"  requested through: {simulation.handoff_via or 'not requested'}")
        moved = "yes" if simulation.caller_joined_room else "NO"
        w(f"  caller moved into the room: {moved}")
        w(
            f"  trigger {call.handoff_trigger or '-'}; human's leg "
            f"{call.handoff_agent_call_sid or '-'}; room "
            f"{call.handoff_conference_name or '-'}; connected at "
            f"{call.handoff_connected_at or '-'}"
        )
        recordings = list(call.recordings.values_list("status", "url"))
        w(f"  recordings: {recordings or '-'}")
    if simulation.problems:
        w("")
        w("Problems")
        for problem in simulation.problems:
            w(f"  {problem}")


def verdict(simulation: Simulation) -> str | None:
    """Why the call counts as failed, or None."""
    call = simulation.call
    assert call is not None
    if call.status != CallStatus.COMPLETED:
        return f"the call ended as {call.status}, not completed"
    if not call.transcript.filter(speaker="ai").exists():
        return "the AI said nothing"
    if simulation.handoff_after is not None:
        if call.handoff_connected_at is None:
            return "the human was never connected"
        if not simulation.caller_joined_room:
            return "the caller was never moved into the conference room"
    if simulation.problems:
        return simulation.problems[0]
    return None
