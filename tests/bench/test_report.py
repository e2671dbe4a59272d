"""The benchmark's report against the floor, and the callers' frame phases."""

from __future__ import annotations

import math

from bench.callers import frame_phase
from bench.figures import RunResult, Spread
from bench.report import against_floor, report


def _run(loop: str, n: int, p99: float, cpu: float | None = None) -> RunResult:
    result = RunResult(
        loop=loop,
        n=n,
        window_s=15.0,
        ramp_s=1.0,
        frames_sent=100,
        frames_echoed=100,
        latency_ms=Spread(100, 1.0, p99, p99 + 1),
        not_held_ms=Spread(100, 1.0, p99, p99 + 1),
        generator_cpu_s_per_s=0.5,
        others_cpu_s_per_s=0.0,
        caller_violations=0,
    )
    result.cpu_s_per_call_min = cpu
    return result


DIRECT = {50: _run("direct", 50, 2.0)}


def test_each_server_is_divided_by_the_floor_of_the_same_n() -> None:
    servers = {"uvicorn": {50: _run("uvicorn", 50, 7.0, 0.6)}}
    floor = {50: _run("bare", 50, 3.0, 0.4)}
    line = against_floor(servers, DIRECT, floor)
    # CPU 0.6 / 0.4; added p99 is each round trip's p99 minus the direct loop's.
    assert line == (
        "  uvicorn N=50   CPU s/call-min 0.600 vs floor 0.400 (× 1.50);"
        " added p99 5.0 ms vs floor 1.0 ms"
    )


def test_no_ratio_without_both_figures() -> None:
    servers = {"uvicorn": {50: _run("uvicorn", 50, 7.0, 0.6), 10: _run("u", 10, 1.0)}}
    floor = {50: _run("bare", 50, 3.0, None)}
    line = against_floor(servers, DIRECT, floor)
    assert "(× -)" in line and "N=10" not in line  # no floor at N=10
    assert against_floor(servers, DIRECT, {}) == "  no N run on both"


def test_the_floor_is_reported_only_when_it_ran() -> None:
    servers = {"uvicorn": {50: _run("uvicorn", 50, 7.0, 0.6)}}
    with_floor = report(servers, DIRECT, {50: _run("bare", 50, 3.0, 0.4)})
    assert "Floor: bench/bare_relay.py" in with_floor
    assert "Against the floor (same run)" in with_floor
    without = report(servers, DIRECT)
    assert "Floor:" not in without and "Against the floor" not in without


def test_frame_phases_are_fixed_per_call_and_spread_over_the_period() -> None:
    phases = [frame_phase(i) for i in range(100)]
    assert phases == [frame_phase(i) for i in range(100)]  # every loop the same
    assert all(0.0 <= p < 1.0 for p in phases)
    # No fifth of the period is empty, none holds half of the calls.
    fifths = [sum(1 for p in phases if k / 5 <= p < (k + 1) / 5) for k in range(5)]
    assert min(fifths) > 0 and max(fifths) < 50
    assert not math.isclose(phases[0], phases[1])
