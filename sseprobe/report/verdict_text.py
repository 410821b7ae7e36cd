"""Render a Verdict as a table a person reads at a glance, plus the overall verdict in words.

Pure: returns a string; the caller decides where it goes and whether colour is wanted
(``color=True`` only when writing to a terminal).
"""

from __future__ import annotations

import math

from ..verdict.compare import MetricResult, Verdict
from ..verdict.policy import FiredTrigger
from ..verdict.schema import DecisionDoc

__all__ = ["render_verdict", "render_sequential"]

_COLOURS = {"GREEN": "32", "YELLOW": "33", "RED": "31", "INCONCLUSIVE": "35"}
_WORDS = {
    "GREEN": "GREEN: no regression the data can see",
    "YELLOW": "YELLOW: worse, watch before the next step",
    "RED": "RED: roll back",
    "INCONCLUSIVE": "INCONCLUSIVE: too little data to tell",
}


def _paint(text: str, level: str, color: bool, bold: bool = False) -> str:
    if not color or level not in _COLOURS:
        return text
    return f"\x1b[{'1;' if bold else ''}{_COLOURS[level]}m{text}\x1b[0m"


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f} ms"
    return f"{v:.3g} ms" if v < 10 else f"{v:.1f} ms"


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f} %"


def _signed(v: float | None, scale: float, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isinf(v)):
        return "+inf" if v is None or v > 0 else "-inf"
    x = round(v * scale, digits)
    return f"{x + 0.0 if x else 0.0:+.{digits}f}"  # never "-0.00"


def _cells(m: MetricResult) -> list[str]:
    rate = m.kind == "rate"
    value = _rate if rate else _ms
    unit, scale, digits = (" pp", 100.0, 2) if rate else (" %", 100.0, 1)
    change = "-" if m.change is None else _signed(m.change, scale, digits) + unit
    lo, hi = m.ci
    if m.change is None:
        interval = "-"
    else:
        low = "-inf" if lo is None else _signed(lo, scale, digits)
        interval = f"[{low}, {_signed(hi, scale, digits)}]{unit}"
    return [m.name + ("*" if m.critical else ""), value(m.baseline), value(m.candidate), change, interval]


def _trigger_line(t: FiredTrigger, names: dict[str, str]) -> str:
    who = names.get(t.cohort, t.cohort)
    effect = "RED" if t.cohort == "candidate" else "noted"
    if t.generator_bound and t.cohort == "candidate":
        effect = "INCONCLUSIVE"
    return f"  {who}: {t.name}: {t.reason} ({effect})"


def _generator_line(verdict: Verdict) -> str:
    """The generator's saturation in one line: what it did to the latency verdicts."""
    band = f"{verdict.generator_error_ms:,.1f} ms"
    lag = f"the generator was saturated: latency intervals widened by its own lag (p99 {band})"
    bound = verdict.bound_by_generator
    return f"{lag}; generator-bound: {', '.join(bound)}" if bound else f"{lag}; every latency level held"


def render_verdict(
    verdict: Verdict, baseline_name: str = "legacy", candidate_name: str = "canonical", color: bool = False
) -> str:
    """The per-metric table, fired triggers, and the overall verdict with its reasons."""
    head = ["metric", baseline_name, candidate_name, "change", "interval", "level", "reason"]
    rows = [_cells(m) + [m.level, m.reason] for m in verdict.metrics]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(6)]

    def line(cells: list[str], level: str | None = None) -> str:
        parts = []
        for i, cell in enumerate(cells[:6]):
            padded = cell.ljust(widths[i]) if i in (0, 5) else cell.rjust(widths[i])
            parts.append(_paint(padded, level, color) if i == 5 and level else padded)
        return "  ".join(parts + [cells[6]]).rstrip()

    conf = f"{verdict.confidence * 100:g} %"
    out = [
        f"{candidate_name} (n={verdict.n_candidate:,}) vs {baseline_name} (n={verdict.n_baseline:,}), "
        f"intervals at {conf} family-wise confidence",
        "",
        line(head),
        line(["-" * w for w in widths] + ["-" * 6]),
    ]
    out += [line(r, r[5]) for r in rows]
    out.append("* critical: RED here makes the verdict RED; ms changes are relative, rate changes in percentage points")
    names = {"candidate": candidate_name, "baseline": baseline_name}
    if verdict.triggers:
        out += ["", "rollback triggers fired:"] + [_trigger_line(t, names) for t in verdict.triggers]
    if verdict.generator_error_ms > 0:
        out += ["", _generator_line(verdict)]
    out += ["", _paint(f"verdict: {_WORDS[verdict.overall]}", verdict.overall, color, bold=True)]
    out += [f"  - {r}" for r in verdict.reasons]
    return "\n".join(out) + "\n"


_STOPPED = {
    "decided": "decided",
    "generator_bound": "stopped: the generator's own lag leaves the rest undecided (see the reasons)",
    "max_sessions": "stopped undecided at --max-sessions",
    "max_duration": "stopped undecided at --max-duration",
    "interrupted": "interrupted",
}


def render_sequential(decision: DecisionDoc) -> str:
    """The verdict's ``sequential`` and ``time_to_decide`` sections in words ("" when neither)."""
    out: list[str] = []
    seq = decision.get("sequential")
    if seq:
        sessions = ", ".join(f"{name} {n:,}" for name, n in seq["sessions"].items())
        out += [
            "",
            f"until decided: {_STOPPED[seq['stopped']]} after {seq['looks']} look(s); sessions used: {sessions}",
        ]
        for m in seq["metrics"]:
            at = m["decided_at_sessions"]
            when = "not decided" if at is None else f"decided at {at:,} sessions per cohort ({m['level_then']})"
            out.append(f"  {m['name']}{'*' if m['critical'] else ''}: {when}")
    ttd = decision.get("time_to_decide")
    if ttd:
        what = "took" if ttd["basis"] == "decided" else "would need (sessions_needed)"
        rate = f"{ttd['traffic_rate']:,.1f} sessions/s in all"
        source = (
            "the service's traffic (--traffic-rate)"
            if ttd["traffic_source"] == "--traffic-rate"
            else ("this run's own rate (--traffic-rate gives the service's)")
        )
        out += [
            "",
            f"time to a decision: {what} {ttd['sessions_per_cohort']:,} sessions per cohort; at {source}, {rate}:",
        ]
        for step in ttd["steps"]:
            out.append(f"  {step['canary_share'] * 100:g} % canary: {_span(step['seconds'])}")
    return "\n".join(out) + ("\n" if out else "")


def _span(seconds: float) -> str:
    """A duration a person reads: 45 s, 12 min, 3.5 h, 2.1 days."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds < 366 * 86400:
        return f"{seconds / 86400:.1f} days"
    return "more than a year"
