"""Figures per speech path, side by side, so an operator can judge the rollout
(F-72, seed 002): calls, mean and p95 turn latency, completion, handoff rate and
cost per call, for the Realtime path and the legacy Gather path.

Turn latency is what each path can measure of a turn: Realtime, from the end of
the caller's speech to the AI's first audio; legacy, from Twilio's `<Gather>`
action in to our TwiML out (the text model included; Twilio's own recognition
and speech synthesis are not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet

from calls.models import CallSession
from calls.status import TERMINAL, CallStatus

FIELDS = (
    "path",
    "status",
    "answered_at",
    "turn_latencies_ms",
    "cost_usd",
    "handoff_trigger",
    "handoff_requested_at",
)


@dataclass(frozen=True, slots=True)
class PathFigures:
    path: str
    label: str
    calls: int
    answered: int
    ended: int
    completed: int
    handed_off: int
    turns: int
    latency_mean_ms: float | None
    latency_p95_ms: float | None
    cost_usd: Decimal

    @property
    def completion_pct(self) -> float | None:
        return 100 * self.completed / self.ended if self.ended else None

    @property
    def handoff_pct(self) -> float | None:
        return 100 * self.handed_off / self.answered if self.answered else None

    @property
    def cost_per_call_usd(self) -> Decimal | None:
        return (
            (self.cost_usd / self.calls).quantize(Decimal("0.0001"))
            if self.calls
            else None
        )


def _handed_off(call: CallSession) -> bool:
    return bool(call.handoff_requested_at or call.handoff_trigger) or call.status in (
        CallStatus.TRANSFERRING,
        CallStatus.HUMAN_CONNECTED,
    )


def _figures(path: str, label: str, calls: list[CallSession]) -> PathFigures:
    latencies = sorted(
        float(v)
        for call in calls
        for v in (call.turn_latencies_ms or [])
        if isinstance(v, int | float)
    )
    mean = p95 = None
    if latencies:
        mean = sum(latencies) / len(latencies)
        p95 = latencies[math.ceil(0.95 * len(latencies)) - 1]
    return PathFigures(
        path=path,
        label=label,
        calls=len(calls),
        answered=sum(1 for c in calls if c.answered_at),
        ended=sum(1 for c in calls if c.status in TERMINAL),
        completed=sum(1 for c in calls if c.status == CallStatus.COMPLETED),
        handed_off=sum(1 for c in calls if _handed_off(c)),
        turns=len(latencies),
        latency_mean_ms=mean,
        latency_p95_ms=p95,
        cost_usd=sum((c.cost_usd for c in calls), Decimal(0)),
    )


def path_figures(
    calls: QuerySet[CallSession] | Iterable[CallSession],
) -> list[PathFigures]:
    """One row per path (Realtime first), from one query of the calls given."""
    if isinstance(calls, QuerySet):
        calls = calls.select_related(None).only(*FIELDS)
    by_path: dict[str, list[CallSession]] = {p: [] for p in CallSession.Path.values}
    for call in calls:
        by_path.setdefault(call.path, []).append(call)
    return [
        _figures(path, str(label), by_path[path])
        for path, label in CallSession.Path.choices
    ]
