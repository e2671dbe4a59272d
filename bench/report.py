"""The benchmark's printed report: tables, PASS/FAIL per target, Daphne vs uvicorn,
and each server against the bare-relay floor."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from bench.figures import (
    TARGET_CPU_S_PER_CALL_MIN,
    TARGET_P99_MS,
    TARGET_RSS_KIB_PER_CALL,
    TARGET_STOP_CLOSE_MS,
    RunResult,
    Spread,
    added,
)

Results = Mapping[int, RunResult]


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def spread(s: Spread | None, *, p99: bool = True) -> str:
    """`p50 / p99 / max` (or `p50 / max`)."""
    if s is None:
        return "-"
    parts = (s.p50, s.p99, s.max) if p99 else (s.p50, s.max)
    return " / ".join(_f(v) for v in parts)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table, also valid Markdown."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) for c, w in zip(cells, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def direct_table(direct: Results) -> str:
    rows = [
        [
            str(n),
            spread(r.latency_ms),
            f"{r.frames_lost}/{r.frames_sent}",
            _f(r.generator_cpu_s_per_s, 2),
            _f(r.others_cpu_s_per_s, 2),
        ]
        for n, r in sorted(direct.items())
    ]
    header = [
        "N",
        "round trip ms p50 / p99 / max",
        "lost/sent",
        "bench CPU s/s",
        "others CPU s/s",
    ]
    return table(header, rows)


def latency_table(results: Results, direct: Results) -> str:
    rows = [
        [
            str(n),
            spread(r.latency_ms),
            spread(added(r.latency_ms, direct[n].latency_ms)),
            spread(added(r.not_held_ms, direct[n].latency_ms)),
            f"{r.frames_lost}/{r.frames_sent}",
        ]
        for n, r in sorted(results.items())
    ]
    header = [
        "N",
        "round trip ms p50 / p99 / max",
        "added ms p50 / p99 / max",
        "added, not held ms",
        "lost/sent",
    ]
    return table(header, rows)


def resources_table(results: Results) -> str:
    rows = [
        [
            str(n),
            _f(r.cpu_s_per_call_min, 3),
            _f(r.rss_kib_per_call, 0),
            spread(r.start_to_model_ms, p99=False),
            spread(r.stop_to_closed_ms, p99=False),
            _f(r.ramp_s, 1),
            _f(r.generator_cpu_s_per_s, 2),
            _f(r.others_cpu_s_per_s, 2),
        ]
        for n, r in sorted(results.items())
    ]
    header = [
        "N",
        "server CPU s/call-min",
        "RSS KiB/call",
        "start→model ms p50 / max",
        "stop→closed ms p50 / max",
        "ramp s",
        "bench CPU s/s",
        "others CPU s/s",
    ]
    return table(header, rows)


def verdicts(results: Results, direct: Results) -> list[tuple[str, str, bool | None]]:
    """(target, measured, passed) for every target; passed is None when not run."""
    out: list[tuple[str, str, bool | None]] = []
    for n, limit in TARGET_P99_MS.items():
        r = results.get(n)
        if r is None:
            out.append((f"N={n} added p99 ≤ {limit:g} ms", "not run", None))
            continue
        every = added(r.latency_ms, direct[n].latency_ms).p99
        relay = added(r.not_held_ms, direct[n].latency_ms).p99
        out.append(
            (f"N={n} added p99 ≤ {limit:g} ms", f"{every:.1f} ms", every <= limit)
        )
        out.append(
            (
                f"N={n} added p99 ≤ {limit:g} ms, probes not held by the re-chunking",
                f"{relay:.1f} ms",
                relay <= limit,
            )
        )
    r50 = results.get(50)
    if r50 is None:
        out.append(("N=50 CPU and RSS per call", "not run", None))
    else:
        cpu, rss = r50.cpu_s_per_call_min or 0.0, r50.rss_kib_per_call or 0.0
        out.append(
            (
                f"N=50 ≤ {TARGET_CPU_S_PER_CALL_MIN} CPU-s per call-minute",
                f"{cpu:.3f}",
                cpu <= TARGET_CPU_S_PER_CALL_MIN,
            )
        )
        out.append(
            (
                f"N=50 ≤ {TARGET_RSS_KIB_PER_CALL} KiB per call",
                f"{rss:.0f} KiB",
                rss <= TARGET_RSS_KIB_PER_CALL,
            )
        )
    lost = {n: r.frames_lost for n, r in sorted(results.items())}
    out.append(
        (
            "zero frames lost at every N",
            ", ".join(f"N={n}: {v}" for n, v in lost.items()),
            all(v == 0 for v in lost.values()),
        )
    )
    worst = max(
        (r.stop_to_closed_ms.max for r in results.values() if r.stop_to_closed_ms),
        default=math.nan,
    )
    unclosed = sum(r.unclosed_model_sockets for r in results.values())
    out.append(
        (
            f"model socket closed ≤ {TARGET_STOP_CLOSE_MS:g} ms after stop",
            f"worst {worst:.1f} ms, {unclosed} left open",
            unclosed == 0 and worst <= TARGET_STOP_CLOSE_MS,
        )
    )
    return out


def _added_p99(result: RunResult, direct: Results) -> float:
    return added(result.latency_ms, direct[result.n].latency_ms).p99


def comparison(by_server: Mapping[str, Results], direct: Results) -> str:
    """Daphne against uvicorn on the same workload, and which one is faster."""
    (a, ra_all), (b, rb_all) = list(by_server.items())[:2]
    common = sorted(set(ra_all) & set(rb_all))
    if not common:
        return "  no N run on both servers"
    lines = []
    for n in common:
        ra, rb = ra_all[n], rb_all[n]
        pa, pb = _added_p99(ra, direct), _added_p99(rb, direct)
        lines.append(
            f"  N={n:<4} added p99: {a} {pa:.1f} ms, {b} {pb:.1f} ms;"
            f" server CPU s/call-min: {a} {_f(ra.cpu_s_per_call_min, 3)},"
            f" {b} {_f(rb.cpu_s_per_call_min, 3)}"
        )
    n = common[-1]
    ra, rb = ra_all[n], rb_all[n]
    pa, pb = ra.latency_ms.p99, rb.latency_ms.p99
    ca, cb = ra.cpu_s_per_call_min or 0.0, rb.cpu_s_per_call_min or 0.0
    quicker = a if pa <= pb else b
    cheaper = a if ca <= cb else b
    # Clearly: at least 20 % apart (and 1 ms for latency).
    quick_clear = abs(pa - pb) >= max(1.0, 0.2 * max(pa, pb))
    cheap_clear = abs(ca - cb) >= 0.2 * max(ca, cb)
    lines.append(
        f"  at N={n}: lower round-trip p99: {quicker} ({a} {pa:.1f} ms, {b} {pb:.1f}"
        f" ms, {'clearly' if quick_clear else 'within noise'}); less CPU: {cheaper}"
        f" ({a} {ca:.3f}, {b} {cb:.3f} CPU-s/call-min,"
        f" {'clearly' if cheap_clear else 'within noise'})"
    )
    if quicker == cheaper and quick_clear and cheap_clear:
        lines.append(f"  faster: {quicker}, clearly")
    elif quicker == cheaper:
        lines.append(f"  faster: {quicker}, but not clearly")
    else:
        lines.append("  faster: neither on both counts")
    return "\n".join(lines)


def against_floor(
    by_server: Mapping[str, Results], direct: Results, floor: Results
) -> str:
    """Each server over the bare relay of the same N: what the service's features
    and layers cost on top of the stack they run on."""
    lines = []
    for kind, results in by_server.items():
        for n in sorted(set(results) & set(floor)):
            r, f = results[n], floor[n]
            cpu, cpu_floor = r.cpu_s_per_call_min, f.cpu_s_per_call_min
            ratio = cpu / cpu_floor if cpu and cpu_floor else math.nan
            lines.append(
                f"  {kind:<7} N={n:<4} CPU s/call-min {_f(cpu, 3)} vs floor"
                f" {_f(cpu_floor, 3)} (× {_f(ratio, 2)}); added p99"
                f" {_f(_added_p99(r, direct))} ms vs floor"
                f" {_f(_added_p99(f, direct))} ms"
            )
    return "\n".join(lines) if lines else "  no N run on both"


def report(
    by_server: Mapping[str, Results], direct: Results, floor: Results | None = None
) -> str:
    """The whole printed report."""
    parts = [
        "Direct loop (callers → echo → callers, no bridge)",
        direct_table(direct),
    ]
    if floor:
        parts += [
            "",
            "Floor: bench/bare_relay.py on uvicorn (same stack, none of the service)",
            latency_table(floor, direct),
            resources_table(floor),
        ]
    for kind, results in by_server.items():
        parts += [
            "",
            f"{kind}: per-frame latency through the bridge",
            latency_table(results, direct),
            "",
            f"{kind}: cost and lifecycle",
            resources_table(results),
            "",
        ]
        for target, measured, passed in verdicts(results, direct):
            mark = "n/a " if passed is None else ("PASS" if passed else "FAIL")
            parts.append(f"  {mark}  {target}: {measured}")
        parts += [
            f"  !     N={n}: {r.caller_violations} caller violations,"
            f" {len(r.fake_problems)} fake-model problems {r.fake_problems[:3]}"
            for n, r in sorted(results.items())
            if r.caller_violations or r.fake_problems
        ]
        parts += [
            f"  !     N={n}: calls still bridged 15 s after the hang-up"
            for n, r in sorted(results.items())
            if r.server_idle_after is False
        ]
    if len(by_server) > 1:
        parts += ["", "Daphne vs uvicorn", comparison(by_server, direct)]
    if floor:
        parts += [
            "",
            "Against the floor (same run)",
            against_floor(by_server, direct, floor),
        ]
    return "\n".join(parts)
