"""Today's figures and chart series for the dashboard (F-36): counts, handoff and
completion rates, response-latency mean / p95 / histogram, cost."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _

from calls.models import CallSession
from calls.status import LIVE, TERMINAL, CallStatus

LATENCY_BIN_MS = 250
LATENCY_BINS = 10  # the last bin holds everything from 2250 ms up


@dataclass(frozen=True, slots=True)
class Figures:
    calls: int
    answered: int
    handed_off: int
    ended: int
    completed: int
    latency_mean_ms: float | None
    latency_p95_ms: float | None
    cost_usd: Decimal

    @property
    def handoff_pct(self) -> float | None:
        """Handed-off calls per answered call, in percent."""
        return 100 * self.handed_off / self.answered if self.answered else None

    @property
    def completion_pct(self) -> float | None:
        """Completed calls per ended call, in percent."""
        return 100 * self.completed / self.ended if self.ended else None


def latency_mean_p95(
    latencies_ms: Sequence[float],
) -> tuple[float | None, float | None]:
    """Mean and 95th percentile (nearest rank) of response latencies."""
    if not latencies_ms:
        return None, None
    ordered = sorted(latencies_ms)
    rank = math.ceil(0.95 * len(ordered))
    return sum(ordered) / len(ordered), float(ordered[rank - 1])


def latency_histogram(latencies_ms: Iterable[float]) -> list[int]:
    """Counts per LATENCY_BIN_MS bin; the last bin is open-ended."""
    counts = [0] * LATENCY_BINS
    for value in latencies_ms:
        counts[min(int(max(value, 0) // LATENCY_BIN_MS), LATENCY_BINS - 1)] += 1
    return counts


def latency_bin_labels() -> list[str]:
    labels = [
        f"{i * LATENCY_BIN_MS}–{(i + 1) * LATENCY_BIN_MS}"
        for i in range(LATENCY_BINS - 1)
    ]
    return [*labels, f"{(LATENCY_BINS - 1) * LATENCY_BIN_MS}+"]


def _was_handed_off(call: CallSession) -> bool:
    return bool(call.handoff_requested_at or call.handoff_trigger) or call.status in {
        CallStatus.TRANSFERRING,
        CallStatus.HUMAN_CONNECTED,
    }


def figures_for(calls: Iterable[CallSession]) -> tuple[Figures, dict[str, Any]]:
    """Today's figures and chart series for the given calls."""
    calls = list(calls)
    latencies = [
        float(v)
        for call in calls
        for v in (call.turn_latencies_ms or [])
        if isinstance(v, int | float)
    ]
    mean, p95 = latency_mean_p95(latencies)
    per_hour = [0] * 24
    outcome = {"ai": 0, "handoff": 0, "unanswered": 0, "live": 0}
    for call in calls:
        per_hour[timezone.localtime(call.created_at).hour] += 1
        if _was_handed_off(call):
            outcome["handoff"] += 1
        elif call.status in LIVE:
            outcome["live"] += 1
        elif call.answered_at:
            outcome["ai"] += 1
        else:
            outcome["unanswered"] += 1
    figures = Figures(
        calls=len(calls),
        answered=sum(1 for c in calls if c.answered_at),
        handed_off=outcome["handoff"],
        ended=sum(1 for c in calls if c.status in TERMINAL),
        completed=sum(1 for c in calls if c.status == CallStatus.COMPLETED),
        latency_mean_ms=mean,
        latency_p95_ms=p95,
        cost_usd=sum((c.cost_usd for c in calls), Decimal(0)),
    )
    charts = {
        "perHour": {"labels": [f"{h}:00" for h in range(24)], "counts": per_hour},
        "latency": {
            "labels": latency_bin_labels(),
            "counts": latency_histogram(latencies),
        },
        "outcome": {
            "labels": [
                _("AIで完結"),
                _("担当者へ引き継ぎ"),
                _("未応答・失敗"),
                _("通話中"),
            ],
            "counts": [
                outcome["ai"],
                outcome["handoff"],
                outcome["unanswered"],
                outcome["live"],
            ],
        },
    }
    return figures, charts
