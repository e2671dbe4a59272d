"""What one benchmark run measured, and the targets it is held to (issue 3)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

TARGET_P99_MS = {50: 6.0, 100: 10.0}  # added per-frame latency, p99
TARGET_CPU_S_PER_CALL_MIN = 0.5  # at N = 50
TARGET_RSS_KIB_PER_CALL = 256  # at N = 50
TARGET_STOP_CLOSE_MS = 100.0  # every call


@dataclass(slots=True)
class Spread:
    """p50 / p99 / max of some milliseconds."""

    count: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(0, math.nan, math.nan, math.nan)
        ordered = sorted(values)

        def rank(p: float) -> float:
            return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

        return cls(len(ordered), rank(0.50), rank(0.99), ordered[-1])


@dataclass(slots=True)
class RunResult:
    """The figures of one run (one loop kind, one N)."""

    loop: str  # "direct", "daphne" or "uvicorn"
    n: int
    window_s: float
    ramp_s: float
    frames_sent: int
    frames_echoed: int
    latency_ms: Spread
    not_held_ms: Spread
    """Probes the bridge did not hold back for its 40 ms re-chunking."""
    generator_cpu_s_per_s: float
    """CPU of this process (callers, fake model or direct echo) per second."""
    others_cpu_s_per_s: float
    """CPU of every other process on the machine per second (noise)."""
    caller_violations: int
    server_cpu_s: float | None = None
    cpu_s_per_call_min: float | None = None
    rss_before_kib: int | None = None
    rss_peak_kib: int | None = None
    rss_kib_per_call: float | None = None
    connect_to_model_ms: Spread | None = None
    start_to_model_ms: Spread | None = None
    stop_to_closed_ms: Spread | None = None
    unclosed_model_sockets: int = 0
    attempts: int = 1
    server_idle_after: bool | None = None
    """Whether every call had ended in the server before it was stopped."""
    fake_problems: list[str] = field(default_factory=list)

    @property
    def frames_lost(self) -> int:
        return self.frames_sent - self.frames_echoed


def added(bridged: Spread, direct: Spread) -> Spread:
    """Bridged minus direct, percentile by percentile (independent samples)."""
    return Spread(
        bridged.count,
        bridged.p50 - direct.p50,
        bridged.p99 - direct.p99,
        bridged.max - direct.max,
    )
