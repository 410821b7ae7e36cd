"""Terminal summary of one run: a pure function from stats to text (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..verdict.policy import FiredTrigger
from ..verdict.schema import GeneratorDoc, LatencySummary
from ..verdict.stats import CohortStats, summarize_ms

__all__ = ["generator_banner", "render_run"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f} %"


def _ms(x: float | int | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def _latency_row(label: str, s: LatencySummary) -> str:
    cols = [_ms(s.get(k)) for k in ("p50", "p95", "p99", "max")]
    return f"  {label:<16}" + "".join(f"{c:>11}" for c in cols) + f"   (n={s.get('count', 0)})"


def _connection_rows(stats: CohortStats) -> list[str]:
    """TCP connect and TLS handshake of the streams that opened a new connection (none when all reused)."""
    rows = []
    for hist, label in (("tcp_us", "tcp connect"), ("tls_us", "tls handshake")):
        h = stats.histograms.get(hist)
        if h is not None and h.get_total_count():
            rows.append(_latency_row(label, summarize_ms(h)))
    return rows


def _reason_rows(stats: CohortStats, n: int = 3) -> list[str]:
    """Why sessions failed, in the server's or the network's words: the most common few reasons."""
    rows = [
        f"  {'why failed' if i == 0 else '':<16} {k}  ({v})" for i, (k, v) in enumerate(stats.reasons.most_common(n))
    ]
    return rows


def render_cohort(name: str, stats: CohortStats) -> list[str]:
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items(), key=lambda kv: -kv[1]))
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(stats.http_status.items()))
    title = name if stats.flow in ("", name) else f"{name} ({stats.flow})"
    lines = [
        f"{title} {stats.url}",
        f"  sessions         {stats.sessions}  ({outcomes or 'none'})",
        *_reason_rows(stats),
        f"  HTTP status      {statuses or 'none'}",
        f"  connect success  {_pct(stats.connect_success_rate)}",
        f"  completion       {_pct(stats.completion_rate)}",
        f"  5xx rate         {_pct(stats.error_rate_5xx)}    timeout rate {_pct(stats.timeout_rate)}",
        f"  events           {stats.events:,}   bytes {stats.bytes:,}",
        f"  answers          {stats.answer_events:,} events, {stats.answer_chars:,} chars"
        f"   (empty: {stats.outcomes.get('empty', 0)} sessions)",
        f"  {'ms':<16}" + "".join(f"{c:>11}" for c in ("p50", "p95", "p99", "max")),
    ]
    for hist, label in (
        ("ttfe_us", "TTFE (answer)"),
        ("first_event_us", "first event"),
        ("completion_us", "completion"),
        ("headers_us", "headers"),
        ("lag_us", "start lag"),
    ):
        lines.append(_latency_row(label, summarize_ms(stats.histograms[hist])))
    lines += _connection_rows(stats)
    return lines


def render_run(
    cohorts: Mapping[str, CohortStats],
    triggers: Sequence[FiredTrigger],
    duration_s: float,
    interrupted: bool,
    generator: GeneratorDoc | None = None,
    bound: bool = False,
) -> str:
    """The run in text. ``bound``: a verdict metric was left undecided by the generator's own lag (the
    triggers say so themselves), which makes the saturation banner shout."""
    lines = [
        f"sseprobe: {sum(s.sessions for s in cohorts.values())} sessions in {duration_s:.1f} s"
        + ("  (INTERRUPTED: partial results)" if interrupted else "")
    ]
    for name, stats in cohorts.items():
        lines += ["", *render_cohort(name, stats)]
    lines.append("")
    if generator and generator.get("below_target"):  # a lost share (--cluster): never silent
        lines.append(f"LOAD BELOW TARGET: {generator['below_target']}; see worker_errors in the results")
    # a comparison's baseline (cohort "baseline") is the reference, not what rolls back: its triggers are noted
    noted = [t for t in triggers if t.cohort == "baseline" and not t.generator_bound]
    real = [t for t in triggers if not t.generator_bound and t.cohort != "baseline"]
    bound_t = [t for t in triggers if t.generator_bound]
    banner = generator_banner(generator, cohorts, bound or bool(bound_t))
    if banner:
        lines.append(banner)
    if real:
        lines.append("ROLLBACK TRIGGERS FIRED:")
        lines += [f"  - {t.reason or t.name}" for t in real]
    if noted:
        lines.append("TRIGGERS ON THE BASELINE (noted: the baseline is the reference, not rolled back):")
        lines += [f"  - {t.reason or t.name}" for t in noted]
    if bound_t:
        lines.append("GENERATOR-BOUND TRIGGERS (the prober's own lag, not counted against the service):")
        lines += [f"  - {t.reason or t.name}" for t in bound_t]
    if not triggers:
        lines.append("rollback triggers: none fired")
    return "\n".join(lines)


def generator_banner(generator: GeneratorDoc | None, cohorts: Mapping[str, CohortStats], bound: bool) -> str | None:
    """The saturation banner, in proportion: the error set against the latency it bounds (the smallest
    TTFE p50: 3.4 ms under 105 ms is 3 %), shouted (GENERATOR SATURATED) only when it left a verdict
    metric or a trigger undecided, one quiet line otherwise, and absent when no session connected
    (nothing was timed, so nothing can be late)."""
    if not generator or not generator.get("saturated") or not any(s.connected for s in cohorts.values()):
        return None
    error = float(generator.get("error_ms") or 0.0)
    p50s = [summarize_ms(s.histograms["ttfe_us"]).get("p50") for s in cohorts.values()]
    ttfe = min((float(v) for v in p50s if v), default=0.0)
    share = f", {error / ttfe:.0%} of TTFE p50 {ttfe:,.0f} ms" if ttfe > 0 else ""
    note = str(generator.get("note", ""))
    head, _, rest = note.partition(":")  # "generator loop lag p99 X ms: ...; why"
    why = rest.split("; ", 1)[1] if "; " in rest else ""
    said = f"timings may be late by up to {error:.1f} ms{share} ({head}{'; ' + why if why else ''})"
    if bound:
        return f"GENERATOR SATURATED: {said}; the verdict allows for it and could not decide what it could explain"
    return f"generator: saturated, {said}; no verdict or trigger depends on it"
