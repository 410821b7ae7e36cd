"""One self-contained HTML report from results documents: a pure function, documents in, a string out.

Why inline SVG drawn here: the file must open anywhere with no network (an attachment to a
rollout ticket, a file on a jump host), so there is no script, font or stylesheet to fetch; a
Content-Security-Policy forbids any fetch outright. The latency charts are the HdrHistogram
percentile plot people know: latency against percentile on a log "1/(1-p)" axis (0 %, 90 %,
99 %, 99.9 % ... equally spaced), one line per cohort, computed from the encoded histograms,
so the plot is exact rather than redrawn from a few percentiles.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from hdrh.histogram import HdrHistogram

from .._redact import secret_name
from ..verdict.schema import CohortDoc, MetricDoc, ResultsDocument
from ..verdict.stats import CohortStats
from .document import write_atomic
from .hgrm import hgrm_points
from .verdict_text import render_sequential

__all__ = ["render_report", "write_report", "scrub"]

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999999")
OUTCOME_COLORS = {
    "ok": "#009E73",
    "connect_error": "#000000",
    "http_error": "#D55E00",
    "bad_content_type": "#CC79A7",
    "stream_error": "#E69F00",
    "protocol_error": "#7F3C8D",
    "premature_close": "#56B4E9",
    "idle_timeout": "#0072B2",
    "timeout": "#1F3A93",
    "cancelled": "#BBBBBB",
}
LEVEL_COLORS = {
    "GREEN": "#1a7f37",
    "YELLOW": "#9a6700",
    "RED": "#cf222e",
    "INCONCLUSIVE": "#6e7781",
    "UNKNOWN": "#6e7781",
    "OK": "#1a7f37",
    "INFO": "#0969da",
    "WARN": "#9a6700",
    "FAIL": "#cf222e",
}
W, H = 760, 340
ML, MR, MT, MB = 68, 20, 20, 52

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1000px;
color:#1f2328;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.scroll{overflow-x:auto;max-width:100%;margin:8px 0}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #d0d7de;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f6f8fa;white-space:normal}td.l,th.l{text-align:left;white-space:normal;overflow-wrap:anywhere}
.badge{color:#fff;border-radius:4px;padding:1px 7px;font-weight:600}
.muted{color:#656d76}pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
svg{background:#fff;border:1px solid #d0d7de;margin:6px 0;max-width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#1f2328}
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:12px;height:12px;
vertical-align:middle;margin-right:4px}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _badge(level: str) -> str:
    return f'<span class="badge" style="background:{LEVEL_COLORS.get(level, "#6e7781")}">{_e(level)}</span>'


def _number(x: float, spec: str, nd: int) -> str:
    """``x`` formatted, but a value that rounds to zero is plain ``0.00``: never ``-0.00`` (nor ``+0.00``)."""
    if round(x, nd) == 0:
        return format(0.0, spec.replace("+", ""))
    return format(x, spec)


def _pct(x: Any, nd: int = 2) -> str:
    return "–" if not isinstance(x, (int, float)) else f"{_number(x * 100, f'.{nd}f', nd)} %"


def _ms(x: Any) -> str:
    return "–" if not isinstance(x, (int, float)) else _number(x, ",.1f", 1)


def scrub(value: Any, key: str = "") -> Any:
    """Configuration without secrets: values under secret-looking keys and header values are dropped."""
    k = key.lower()
    if secret_name(k):
        return "REDACTED"
    if isinstance(value, Mapping):
        if k == "headers":
            return {str(h): "REDACTED" for h in value}
        return {str(kk): scrub(v, str(kk)) for kk, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, key) for v in value]
    return value


# --- series ---------------------------------------------------------------------------------


class _Series:
    def __init__(self, label: str, color: str, stats: CohortStats, raw: CohortDoc) -> None:
        self.label, self.color, self.stats, self.raw = label, color, stats, raw


def _series(docs: Sequence[tuple[str, ResultsDocument]]) -> list[_Series]:
    out: list[_Series] = []
    for source, doc in docs:
        for cohort, d in doc.get("cohorts", {}).items():
            label = cohort if len(docs) == 1 else f"{Path(source).stem}: {cohort}"
            out.append(_Series(label, PALETTE[len(out) % len(PALETTE)], CohortStats.from_dict(d), d))
    return out


# --- SVG helpers ------------------------------------------------------------------------------


def _nice_max(v: float) -> float:
    if v <= 0 or not math.isfinite(v):
        return 1.0
    mag = 10.0 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if v <= m * mag:
            return m * mag
    return 10 * mag


def _frame(
    title: str,
    x_label: str,
    y_label: str,
    x_ticks: Iterable[tuple[float, str]],
    y_max: float,
    body: list[str],
    aria: str,
) -> str:
    """Axes, grid, ticks and labels around already-scaled plot elements."""
    pw, ph = W - ML - MR, H - MT - MB
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'role="img" aria-label="{_e(aria)}" class="chart">',
        f"<title>{_e(title)}</title>",
    ]
    for i in range(6):
        v = y_max * i / 5
        y = MT + ph - ph * i / 5
        parts.append(f'<line x1="{ML}" y1="{y:.1f}" x2="{ML + pw}" y2="{y:.1f}" stroke="#eaeef2"/>')
        parts.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(_fmt_tick(v))}</text>')
    for x, label in x_ticks:
        parts.append(f'<line x1="{x:.1f}" y1="{MT}" x2="{x:.1f}" y2="{MT + ph}" stroke="#eaeef2"/>')
        anchor = "end" if x >= ML + pw - 0.5 else "middle"  # the right-hand label ends at the axis: never cut off
        parts.append(f'<text x="{x:.1f}" y="{MT + ph + 16}" text-anchor="{anchor}">{_e(label)}</text>')
    parts.append(f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#8c959f"/>')
    parts += body
    parts.append(f'<text x="{ML + pw / 2:.1f}" y="{H - 10}" text-anchor="middle">{_e(x_label)}</text>')
    parts.append(
        f'<text transform="translate(16 {MT + ph / 2:.1f}) rotate(-90)" text-anchor="middle">{_e(y_label)}</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}" if v >= 1 else f"{v:.3g}"


def _legend(items: Iterable[tuple[str, str, str]]) -> str:
    spans = [
        f'<span><i class="sw" style="background:{c}"></i>{_e(label)} <span class="muted">{_e(extra)}</span></span>'
        for label, c, extra in items
    ]
    return '<div class="legend">' + "".join(spans) + "</div>"


# --- charts -----------------------------------------------------------------------------------


def percentile_chart(series: Sequence[_Series], hist: str, title: str) -> str:
    """HdrHistogram-style plot: latency (ms) against percentile on the 1/(1-p) log axis."""
    curves: list[tuple[_Series, list[tuple[float, float]], int]] = []
    for s in series:
        h: HdrHistogram | None = s.stats.histograms.get(hist)
        if h is None or h.get_total_count() == 0:
            continue
        n = h.get_total_count()
        pts, last_x = [], 0.0
        for value, p, _ in hgrm_points(h):
            x = math.log10(1.0 / (1.0 - p)) if p < 1.0 else max(last_x, math.log10(max(n, 10)))
            last_x = x
            pts.append((x, value / 1000.0))
        curves.append((s, pts, n))
    if not curves:
        return f'<p class="muted">{_e(title)}: no samples.</p>'
    x_max = min(max(1, max(math.ceil(math.log10(max(n, 10))) for _, _, n in curves)), 6)
    y_max = _nice_max(max(v for _, pts, _ in curves for _, v in pts))
    pw, ph = W - ML - MR, H - MT - MB

    def sx(x: float) -> float:
        return ML + pw * min(x, x_max) / x_max

    def sy(v: float) -> float:
        return MT + ph - ph * v / y_max

    labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
    body = []
    for s, pts, n in curves:
        d = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(v):.1f}" for i, (x, v) in enumerate(pts))
        body.append(
            f'<path d="{d}" fill="none" stroke="{s.color}" stroke-width="2">'
            f"<title>{_e(s.label)} (n={n:,})</title></path>"
        )
    chart = _frame(
        title,
        "percentile (log scale: 1/(1-p))",
        "ms",
        [(sx(i), labels[i]) for i in range(x_max + 1)],
        y_max,
        body,
        title,
    )
    legend = []
    for s, _, n in curves:
        h = s.stats.histograms[hist]
        legend.append(
            (
                s.label,
                s.color,
                f"n={n:,}, p50 {h.get_value_at_percentile(50) / 1000:,.1f} ms, "
                f"p99 {h.get_value_at_percentile(99) / 1000:,.1f} ms, "
                f"max {h.get_max_value() / 1000:,.1f} ms",
            )
        )
    return chart + _legend(legend)


def _time_chart(title: str, y_label: str, lines: list[tuple[str, str, bool, list[tuple[float, float]]]]) -> str:
    """Lines over the run's time (s): (label, color, dashed, points)."""
    lines = [ln for ln in lines if ln[3]]
    if not lines:
        return f'<p class="muted">{_e(title)}: no data.</p>'
    t_max = max(max(t for t, _ in pts) for *_, pts in lines) or 1.0
    t_max = _nice_max(t_max)
    y_max = _nice_max(max(max(v for _, v in pts) for *_, pts in lines))
    pw, ph = W - ML - MR, H - MT - MB

    def sx(t: float) -> float:
        return ML + pw * t / t_max

    def sy(v: float) -> float:
        return MT + ph - ph * v / y_max

    body = []
    for label, color, dashed, pts in lines:
        if len(pts) == 1:  # a single interval still draws: a short flat segment
            pts = [pts[0], (pts[0][0] + t_max / 100, pts[0][1])]
        d = " ".join(f"{'M' if i == 0 else 'L'}{sx(t):.1f},{sy(v):.1f}" for i, (t, v) in enumerate(pts))
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        body.append(
            f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.8"{dash}><title>{_e(label)}</title></path>'
        )
    ticks = [(sx(t_max * i / 5), _fmt_tick(t_max * i / 5)) for i in range(6)]
    return _frame(title, "seconds since start", y_label, ticks, y_max, body, title) + _legend(
        (label + (" (dashed)" if dashed else ""), color, "") for label, color, dashed, _ in lines
    )


def _over_time(series: Sequence[_Series], docs: Sequence[tuple[str, ResultsDocument]]) -> str:
    out = []
    for source, doc in docs:
        intervals = doc.get("intervals") or []
        if not intervals:
            continue
        ttfe, outc = [], []
        for i, (cohort, raw) in enumerate(doc.get("cohorts", {}).items()):
            color = next((s.color for s in series if s.raw is raw), PALETTE[i % len(PALETTE)])
            p95 = [
                (iv["t"], iv["cohorts"][cohort]["ttfe_p95_ms"])
                for iv in intervals
                if "ttfe_p95_ms" in iv.get("cohorts", {}).get(cohort, {})
            ]
            p50 = [
                (iv["t"], iv["cohorts"][cohort]["ttfe_p50_ms"])
                for iv in intervals
                if "ttfe_p50_ms" in iv.get("cohorts", {}).get(cohort, {})
            ]
            ttfe += [(f"{cohort} TTFE p95", color, False, p95), (f"{cohort} TTFE p50", color, True, p50)]
            per = [
                (iv["t"], c.get("outcomes", {}) if (c := iv.get("cohorts", {}).get(cohort)) else {}) for iv in intervals
            ]
            done = [(t, float(sum(o.values()))) for t, o in per]
            failed = [(t, float(sum(n for k, n in o.items() if k not in ("ok", "cancelled")))) for t, o in per]
            outc += [(f"{cohort} sessions finished", color, False, done), (f"{cohort} failed", color, True, failed)]
        name = Path(source).name
        out.append(f"<h3>{_e(name)}</h3>")
        out.append(_time_chart(f"TTFE per interval ({name})", "ms", ttfe))
        out.append(_time_chart(f"Outcomes per interval ({name})", "sessions per interval", outc))
    return "\n".join(out)


def _outcome_bars(series: Sequence[_Series]) -> str:
    """One horizontal stacked bar per cohort, its label above it (a long label is never cut off on the left)."""
    label_h, bar_h, gap, left = 16, 22, 10, MR
    row = label_h + bar_h + gap
    height = MT + len(series) * row
    width = W
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="outcome breakdown" class="chart">',
        "<title>Outcome breakdown</title>",
    ]
    seen: dict[str, str] = {}
    for i, s in enumerate(series):
        y = MT + i * row + label_h
        label = s.label if len(s.label) <= 100 else s.label[:99] + "…"
        parts.append(f'<text x="{left}" y="{y - 4}">{_e(label)}</text>')
        total = sum(s.stats.outcomes.values())
        x = float(left)
        span = width - left - MR
        for outcome, n in sorted(s.stats.outcomes.items(), key=lambda kv: (kv[0] != "ok", -kv[1])):
            if not total or not n:
                continue
            w = span * n / total
            color = OUTCOME_COLORS.get(outcome, "#888888")
            seen[outcome] = color
            parts.append(
                f'<path d="M{x:.1f},{y} h{w:.1f} v{bar_h} h{-w:.1f} Z" fill="{color}">'
                f"<title>{_e(s.label)}: {_e(outcome)} {n:,} ({n / total * 100:.1f} %)</title></path>"
            )
            x += w
    parts.append("</svg>")
    return "\n".join(parts) + _legend((o, c, "") for o, c in seen.items())


# --- tables -----------------------------------------------------------------------------------


def _summary_table(series: Sequence[_Series]) -> str:
    head = (
        "cohort",
        "flow",
        "sessions",
        "connect success",
        "completion",
        "5xx",
        "timeouts",
        "TTFE p50",
        "TTFE p95",
        "TTFE p99",
        "TTFE max",
        "first event p95",
        "completion p50",
        "completion p95",
    )
    rows = []
    for s in series:
        d = s.raw
        t, c = d.get("ttfe_ms") or {}, d.get("completion_ms") or {}
        cells = [
            _e(s.label),
            _e(d.get("flow", "")),
            f"{d.get('sessions', 0):,}",
            _pct(d.get("connect_success_rate")),
            _pct(d.get("completion_rate")),
            _pct(d.get("error_rate_5xx")),
            _pct(d.get("timeout_rate")),
            _ms(t.get("p50")),
            _ms(t.get("p95")),
            _ms(t.get("p99")),
            _ms(t.get("max")),
            _ms((d.get("first_event_ms") or {}).get("p95")),
            _ms(c.get("p50")),
            _ms(c.get("p95")),
        ]
        rows.append(
            "<tr>" + "".join(f'<td class="{"l" if i < 2 else ""}">{x}</td>' for i, x in enumerate(cells)) + "</tr>"
        )
    table = (
        "<table><tr>"
        + "".join(f'<th class="{"l" if i < 2 else ""}">{_e(h)}</th>' for i, h in enumerate(head))
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )
    return _scroll(table) + '<p class="muted">Latencies in ms; rates are shares of attempts.</p>'


def _outcome_table(series: Sequence[_Series]) -> str:
    outcomes = sorted({o for s in series for o in s.stats.outcomes}, key=lambda o: (o != "ok", o))
    head = (
        '<tr><th class="l">cohort</th>' + "".join(f"<th>{_e(o)}</th>" for o in outcomes) + "<th>HTTP status</th></tr>"
    )
    rows = []
    for s in series:
        total = sum(s.stats.outcomes.values()) or 1
        cells = "".join(
            f'<td>{s.stats.outcomes.get(o, 0):,} <span class="muted">'
            f"({s.stats.outcomes.get(o, 0) / total * 100:.1f} %)</span></td>"
            for o in outcomes
        )
        status = ", ".join(f"{k}: {v:,}" for k, v in sorted(s.stats.http_status.items()))
        rows.append(f'<tr><td class="l">{_e(s.label)}</td>{cells}<td class="l">{_e(status)}</td></tr>')
    return _scroll(f"<table>{head}{''.join(rows)}</table>")


def _scroll(table: str) -> str:
    """A table kept inside the page column: it scrolls on its own when too wide, the page never does."""
    return f'<div class="scroll">{table}</div>'


def _connection_table(series: Sequence[_Series]) -> str:
    """New connections per cohort: TCP connect and TLS handshake times (reused ones cost neither)."""
    rows = []
    for s in series:
        cells = []
        for hist in ("tcp_us", "tls_us"):
            h = s.stats.histograms.get(hist)
            n = h.get_total_count() if h is not None else 0
            cells += [f"{n:,}"] + [
                _ms(h.get_value_at_percentile(p) / 1000 if n and h is not None else None) for p in (50, 99)
            ]
        rows.append(f'<tr><td class="l">{_e(s.label)}</td>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = (
        '<tr><th class="l">cohort</th><th>new TCP</th><th>TCP p50</th><th>TCP p99</th>'
        "<th>TLS handshakes</th><th>TLS p50</th><th>TLS p99</th></tr>"
    )
    return f'<table>{head}{"".join(rows)}</table><p class="muted">Only streams that opened a connection; ms.</p>'


def _value(x: Any, rate: bool) -> str:
    return _pct(x) if rate else _ms(x)


def _change(x: Any, rate: bool) -> str:
    """Rates change in percentage points, latencies in per cent."""
    if not isinstance(x, (int, float)):
        return "–"
    return f"{_number(x * 100, '+.2f', 2)} pp" if rate else f"{_number(x * 100, '+.1f', 1)} %"


def _bounded(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _interval(ci: Any, rate: bool) -> str:
    """A confidence interval; an open end is said in words (a missing or infinite bound)."""
    lo, hi = (list(ci) + [None, None])[:2] if isinstance(ci, (list, tuple)) else (None, None)
    if not _bounded(lo) and not _bounded(hi):
        return "no bounds"
    if not _bounded(hi):
        return f"from {_change(lo, rate)}, no upper bound"
    if not _bounded(lo):
        return f"no lower bound, up to {_change(hi, rate)}"
    return f"[{_change(lo, rate)}, {_change(hi, rate)}]"


def _verdict_section(source: str, doc: ResultsDocument) -> str:
    out = []
    mon = doc.get("monitor")
    if isinstance(mon, Mapping):
        out.append(
            f"<h3>Monitor pass: {_badge(str(mon.get('overall', '')))}</h3>"
            '<div class="scroll"><table>'
            '<tr><th class="l">part</th><th class="l">level</th><th class="l">why</th></tr>'
        )
        for p in mon.get("parts", []):
            out.append(
                f'<tr><td class="l">{_e(p.get("part", ""))}</td><td class="l">{_badge(str(p.get("level", "")))}'
                f'</td><td class="l">{_e(p.get("detail", ""))}</td></tr>'
            )
        out.append("</table></div>")
        for p in mon.get("parts", []):  # a comparison part shows the rows that decided it
            if p.get("metrics") and p.get("level") != "GREEN":
                out.append(f"<h4>{_e(p.get('part', ''))}: {_badge(str(p.get('level', '')))}</h4>")
                out.append(_metric_table(p["metrics"]))
    gen = doc.get("generator")
    if isinstance(gen, Mapping) and gen.get("saturated"):
        out.append(
            f"<p><b>Generator saturated</b>: timings may be late by up to {_ms(gen.get('error_ms'))}; "
            f"{_e(gen.get('note') or '')}</p>"
        )
    v = doc.get("verdict")
    if not isinstance(v, Mapping):
        return "\n".join(out)
    out.append(f"<h3>{_e(Path(source).name)}: {_badge(str(v.get('overall', '')))}</h3>")
    for r in v.get("reasons", []):
        out.append(f"<p>{_e(r)}</p>")
    if decision := render_sequential(v).strip():  # --until-decided and the time to a decision
        out.append(f"<pre>{_e(decision)}</pre>")
    out.append(_metric_table(v.get("metrics", [])))
    trig = v.get("triggers") or []
    if trig:
        out.append(
            "<p><b>Rollback triggers fired:</b></p><ul>"
            + "".join(f"<li>{_e(t.get('cohort', ''))} {_e(t.get('reason') or t.get('name'))}</li>" for t in trig)
            + "</ul>"
        )
    return "\n".join(out)


def _metric_table(metrics: Iterable[MetricDoc]) -> str:
    """A verdict's metric rows: baseline, candidate, change, its interval, level and why."""
    out = [
        '<div class="scroll"><table><tr><th class="l">metric</th><th>baseline</th><th>candidate</th><th>change</th>'
        '<th>interval</th><th class="l">level</th><th class="l">why</th></tr>'
    ]
    for m in metrics:
        rate = not str(m.get("name", "")).endswith("_ms")
        out.append(
            f'<tr><td class="l">{_e(m.get("name", ""))}</td><td>{_value(m.get("baseline"), rate)}</td>'
            f"<td>{_value(m.get('candidate'), rate)}</td><td>{_change(m.get('change'), rate)}</td>"
            f"<td>{_interval(m.get('ci'), rate)}</td>"
            f'<td class="l">{_badge(str(m.get("level", "")))}</td>'
            f'<td class="l">{_e(m.get("reason", ""))}</td></tr>'
        )
    out.append("</table></div>")
    return "".join(out)


def _config_section(docs: Sequence[tuple[str, ResultsDocument]]) -> str:
    out = []
    for source, doc in docs:
        meta = {
            "file": Path(source).name,
            "started": doc.get("started"),
            "duration_s": doc.get("duration_s"),
            "interrupted": doc.get("interrupted"),
            "stop_reason": doc.get("stop_reason"),
        }
        if gen := doc.get("generator"):
            meta["generator"] = gen.get("note")
        body = {"run": meta, "config": scrub(doc.get("config", {}))}
        text = orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
        out.append(f"<pre>{_e(text)}</pre>")
    return "\n".join(out)


# --- the page ---------------------------------------------------------------------------------


def render_report(docs: Sequence[tuple[str, ResultsDocument]], title: str = "sseprobe report") -> str:
    """The whole report page for (file name, results document) pairs."""
    series = _series(docs)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    verdicts = (
        "\n".join(_verdict_section(src, doc) for src, doc in docs)
        or '<p class="muted">No verdict in these documents.</p>'
    )
    over_time = _over_time(series, docs)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">Generated {now} from {", ".join(_e(Path(s).name) for s, _ in docs)}.</p>',
        '<h2 id="verdict">Verdict</h2>',
        verdicts,
        '<h2 id="summary">Cohorts</h2>',
        _summary_table(series),
        '<h2 id="ttfe">Time to first answer (TTFE): percentile distribution</h2>',
        percentile_chart(series, "ttfe_us", "TTFE by percentile"),
        '<h2 id="completion">Completion time: percentile distribution</h2>',
        percentile_chart(series, "completion_us", "Completion time by percentile"),
    ]
    if over_time:
        parts += ['<h2 id="over-time">Over time</h2>', over_time]
    parts += [
        '<h2 id="outcomes">Outcomes</h2>',
        _outcome_bars(series),
        _outcome_table(series),
        '<h2 id="connections">Connections</h2>',
        _connection_table(series),
        '<h2 id="config">Run configuration</h2>',
        _config_section(docs),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(docs: Sequence[tuple[str, ResultsDocument]], path: str | Path, title: str = "sseprobe report") -> Path:
    """Render and write atomically (a viewer never opens half a page)."""
    return write_atomic(path, render_report(docs, title).encode("utf-8"))
