"""Policy: what is compared, how much worse is too much, and the absolute rollback triggers.

Defaults come from the rollout checklist (PROTOCOLS.md, "What good means"); a TOML file
overrides them key by key (``load_policy``). Pure: the only I/O is ``load_policy`` reading
its one file.

How "x % worse" is measured
---------------------------
* Latency quantiles (``kind = "quantile"``): relative change ``candidate / baseline - 1``;
  ``yellow`` / ``red`` are relative (0.05 = 5 % slower).
* Rates (``kind = "rate"``): always judged on the *bad-event* rate ``f`` (failures for the
  success-type rates ``connect_success_rate`` / ``completion_rate``, the rate itself for
  ``error_rate_5xx`` / ``timeout_rate``). The candidate is ``x`` worse when ``f`` rises by more
  than ``x * max(f_baseline, rate_floor)`` (absolute). With the default ``rate_floor = 0.20``
  this is +1 percentage point for YELLOW and +2 pp for RED while failures are rarer than 20 %,
  and plain relative change above that. Why: the relative change of a small failure rate
  (0.1 % -> 0.2 % = "+100 %") says nothing an SRE acts on, and the relative change of a success
  rate (99 % -> 94 % = "5 % worse") is far too lenient next to a 95 % rollback trigger. The
  pp ladder lines up with the checklist: connect 99 % target -> 98 % YELLOW -> 97 % RED ->
  95 % trigger; 5xx < 1 % target -> +1 pp YELLOW -> +2 pp RED -> 5 % trigger.

Triggers
--------
Absolute, on one cohort: the checklist calls them "immediate rollback". Each fires only when
its own exact confidence bound is past the limit (``check_triggers``), not on the raw value.
5xx uses the table's > 5 %, not the alert line's "5xx > 1 %": 1 % is
the table's *target*, the policy's rollback trigger is 5 %, and at 1 % a 40-session canary would be
RED on a single 5xx (1/40 = 2.5 %). A policy file can set 0.01. "Chat failures > 10/hour"
needs a run duration, which CohortStats does not hold, so it is not a trigger here. A cohort
where no session connected at all (for instance the canonical flag off: every answer 501) is a
built-in critical error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TypedDict, cast

from .._errors import SseprobeError
from .._toml import StrictReader, read_toml
from .bounds import clopper_pearson, hist_quantile, quantile_bounds
from .schema import JSONObject, TriggerDoc
from .stats import HISTOGRAMS, CohortStats, histogram_arrays

__all__ = [
    "unreachable",
    "judge_completion",
    "PolicyError",
    "MetricRule",
    "Trigger",
    "FiredTrigger",
    "CENSORED",
    "censored_count",
    "trigger_alpha",
    "Policy",
    "DEFAULT_POLICY",
    "RATE_SOURCES",
    "load_policy",
    "check_triggers",
    "mark_generator_bound",
    "metric_value",
    "hist_quantile",
    "format_metric",
    "judge_completion",
]


class PolicyError(SseprobeError, ValueError):
    """A policy file is unreadable or wrong; the message names the file, the key and what was expected."""


# --- what can be measured --------------------------------------------------------------------

# rate name -> (bad-event count, higher_is_better). The denominator is always `attempts`
# (a cancelled session is no attempt), as in CohortStats.
RATE_SOURCES: dict[str, tuple[Callable[[CohortStats], int], bool]] = {
    "connect_success_rate": (lambda s: s.attempts - s.connected, True),
    "completion_rate": (lambda s: s.attempts - s.ok, True),
    "error_rate_5xx": (lambda s: s.status_5xx, False),
    "timeout_rate": (lambda s: s.timeouts, False),
}

_QUANTILE_NAME = re.compile(r"^(?P<h>[a-z_]+?)_p(?P<p>\d+(?:\.\d+)?)_ms$")  # ttfe_p95_ms


def bad_count(stats: CohortStats, rate: str) -> tuple[int, int]:
    """(bad events, attempts) for a rate, clamped to [0, attempts] so odd counters never break maths."""
    n = max(int(stats.attempts), 0)
    bad = int(RATE_SOURCES[rate][0](stats))
    return min(max(bad, 0), n), n


# Histograms where a session that timed out without a value counts as "never" (+inf): time to
# first answer (and to the first event). Without this a regression that turns slow sessions into
# timeouts would make the p95 look better. Failures that are no wait (a 5xx, a refused
# connection) are not counted: the rates judge them, and counting them would tie a latency to
# every failure (3 % 5xx in the baseline left its p95 unbounded above at 600 sessions).
CENSORED = frozenset({"ttfe_us", "first_event_us"})


def censored_count(stats: CohortStats, source: str) -> int:
    """Sessions counted at +inf in a CENSORED histogram (0 for the others): the timeouts, as many as
    there are attempts without a value (a timeout after the first answer has its value). An empty
    histogram censors nothing: a source that does not measure it is no latency evidence."""
    h = stats.histograms.get(source)
    if source not in CENSORED or h is None or not h.get_total_count():
        return 0
    return max(min(int(stats.timeouts), int(stats.attempts) - int(h.get_total_count())), 0)


def parse_quantile_name(metric: str) -> tuple[str, float] | None:
    """'ttfe_p95_ms' -> ('ttfe_us', 95.0); None when it is not a quantile name."""
    m = _QUANTILE_NAME.match(metric)
    if not m or f"{m['h']}_us" not in HISTOGRAMS:
        return None
    p = float(m["p"])
    return (f"{m['h']}_us", p) if 0.0 < p < 100.0 else None


def metric_value(stats: CohortStats, metric: str) -> float | None:
    """Observed value of a trigger metric: a rate (fraction) or '<hist>_p<pct>_ms' (ms); None if unknown."""
    if metric in RATE_SOURCES:
        bad, n = bad_count(stats, metric)
        if n == 0:
            return None
        return 1.0 - bad / n if RATE_SOURCES[metric][1] else bad / n
    q = parse_quantile_name(metric)
    if q is None:
        raise ValueError(f"unknown metric {metric!r}")
    h = stats.histograms.get(q[0])
    if h is None:
        return None
    v = hist_quantile(*histogram_arrays(h), q[1], censored_count(stats, q[0]))
    return None if v is None else v / 1000.0


# --- policy objects ---------------------------------------------------------------------------

Kind = Literal["quantile", "rate"]
Op = Literal["<", "<=", ">", ">="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class MetricRule:
    """One compared metric. ``source`` is a histogram name (quantile) or a rate name (rate)."""

    name: str
    kind: Kind
    source: str
    percentile: float | None = None
    higher_is_better: bool = False
    critical: bool = False
    yellow: float = 0.05
    red: float = 0.10
    rate_floor: float = 0.20

    def __post_init__(self) -> None:
        if self.kind == "quantile":
            if self.source not in HISTOGRAMS:
                raise ValueError(f"histogram must be one of {sorted(HISTOGRAMS)}, got {self.source!r}")
            if self.percentile is None or not 0.0 < self.percentile < 100.0:
                raise ValueError(f"percentile must be in (0, 100), got {self.percentile!r}")
        elif self.kind == "rate":
            if self.source not in RATE_SOURCES:
                raise ValueError(f"rate must be one of {sorted(RATE_SOURCES)}, got {self.source!r}")
            if self.higher_is_better != RATE_SOURCES[self.source][1]:
                raise ValueError(f"higher_is_better of {self.source} is {RATE_SOURCES[self.source][1]}")
        else:
            raise ValueError(f"kind must be 'quantile' or 'rate', got {self.kind!r}")
        if not 0.0 < self.yellow < self.red:
            raise ValueError(f"need 0 < yellow < red, got yellow={self.yellow}, red={self.red}")
        if self.kind == "quantile" and self.higher_is_better and self.red >= 1.0:
            raise ValueError("red must be < 1 for a higher-is-better quantile")
        if not 0.0 < self.rate_floor <= 1.0:
            raise ValueError(f"rate_floor must be in (0, 1], got {self.rate_floor}")


@dataclass(frozen=True)
class Trigger:
    """Absolute rollback trigger: fires when ``metric op threshold`` holds for a cohort."""

    name: str
    metric: str
    op: Op
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"op must be one of {sorted(_OPS)}, got {self.op!r}")
        if self.metric not in RATE_SOURCES and parse_quantile_name(self.metric) is None:
            raise ValueError(
                f"metric must be a rate ({', '.join(sorted(RATE_SOURCES))}) or like 'ttfe_p95_ms', got {self.metric!r}"
            )


@dataclass(frozen=True)
class Policy:
    """Metrics, triggers and the statistical settings.

    ``confidence`` is family-wise: the chance that *any* metric is flagged worse than GREEN
    when nothing regressed is at most ``1 - confidence`` (critical metrics share most of it,
    see _compare). The default 0.99: a 40-session canary at 0.95 flagged noise in 1.9 % of
    runs. ``power``: a metric is GREEN once its change is below the RED limit with this
    (one-sided) confidence, so a regression exactly at the RED limit is called GREEN at most
    ``1 - power`` of the time. ``min_sessions``: below this many attempts in either cohort
    nothing is compared.
    """

    metrics: tuple[MetricRule, ...]
    triggers: tuple[Trigger, ...]
    confidence: float = 0.99
    power: float = 0.80
    min_sessions: int = 20

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if not 0.5 <= self.power < 1.0:
            raise ValueError(f"power must be in [0.5, 1), got {self.power}")
        if self.min_sessions < 1:
            raise ValueError(f"min_sessions must be >= 1, got {self.min_sessions}")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError("metric names must be unique")

    def metric(self, name: str) -> MetricRule:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)


def _q(name: str, hist: str, p: float, critical: bool) -> MetricRule:
    return MetricRule(name=name, kind="quantile", source=hist, percentile=p, critical=critical)


def _r(name: str, critical: bool) -> MetricRule:
    return MetricRule(name=name, kind="rate", source=name, higher_is_better=RATE_SOURCES[name][1], critical=critical)


# Critical = what the checklist names (connection success, response latency p95, error rate,
# chat completion) plus timeouts (an immediate-rollback alert). p50/p99 and completion time are
# shown and can make the verdict YELLOW, never RED: p99 from 2,000 sessions rests on ~20 of them.
# Non-critical metrics share a fixed 10 % of the false-alarm budget, so another one is one line
# here and never widens a critical metric's interval.
DEFAULT_POLICY = Policy(
    metrics=(
        _r("connect_success_rate", True),
        _q("ttfe_p50_ms", "ttfe_us", 50.0, False),
        _q("ttfe_p95_ms", "ttfe_us", 95.0, True),
        _q("ttfe_p99_ms", "ttfe_us", 99.0, False),
        _q("first_event_p95_ms", "first_event_us", 95.0, False),
        _q("completion_p95_ms", "completion_us", 95.0, False),
        _r("completion_rate", True),
        _r("error_rate_5xx", True),
        _r("timeout_rate", True),
    ),
    triggers=(
        Trigger("connect_success", "connect_success_rate", "<", 0.95),
        Trigger("error_rate_5xx", "error_rate_5xx", ">", 0.05),
        Trigger("ttfe_p95", "ttfe_p95_ms", ">", 5000.0),
        Trigger("timeout_rate", "timeout_rate", ">", 0.10),
        Trigger("completion_rate", "completion_rate", "<", 0.95),
    ),
)


# --- triggers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FiredTrigger:
    """A rollback trigger that fired on one cohort: its rule, the observed ``value``, and the
    confidence ``bound`` that is past the limit (what made it fire). ``cohort``: whose it is,
    once a comparison tags it; ``generator_bound``: a latency trigger a saturated generator's
    own lag could explain (the prober's error, not evidence about the service)."""

    name: str
    metric: str
    op: str
    threshold: float
    value: float
    reason: str
    bound: float | None = None
    cohort: str = ""
    generator_bound: bool = False

    def to_dict(self) -> TriggerDoc:
        """The results document's trigger entry."""
        d: TriggerDoc = {
            "name": self.name,
            "metric": self.metric,
            "op": self.op,
            "threshold": self.threshold,
            "value": _finite(self.value),
            "reason": self.reason,
        }
        if self.bound is not None:
            d["bound"] = _finite(self.bound)
        if self.cohort:
            d["cohort"] = self.cohort
        if self.generator_bound:
            d["generator_bound"] = True
        return d


def _finite(x: float) -> float | None:
    """A number for the document: "never" (+inf, a p95 among sessions that never answered) is null."""
    return round(x, 6) if math.isfinite(x) else None


def _critical_error(stats: CohortStats) -> FiredTrigger | None:
    """No session connected at all: nothing else in the comparison means anything."""
    n = stats.attempts
    if n <= 0 or stats.connected > 0:
        return None
    if stats.http_status.get("501", 0) >= n:
        why = f"all {n} attempts answered 501: canonical streaming flag is off (ENABLE_ADK_CANONICAL_STREAM)"
    else:
        top = ", ".join(f"{k} {v}" for k, v in stats.outcomes.most_common(3))
        why = f"none of {n} attempts connected ({top})"
    return FiredTrigger("critical_error", "connect_success_rate", "==", 0.0, 0.0, why)


def trigger_alpha(policy: Policy) -> float:
    """One trigger's one-sided level: the policy's 1 - confidence shared by its triggers
    (Bonferroni), so when every trigger's true value is within its limit, any firing is at most
    that likely (1 % by default)."""
    return (1.0 - policy.confidence) / max(len(policy.triggers), 1)


def _bounds_of(stats: CohortStats, metric: str, alpha: float) -> tuple[float, float] | None:
    """(lower, upper) one-sided ``alpha`` bounds of a trigger metric's true value, or None.

    Rates: exact Clopper-Pearson on the bad-event count. Quantiles: the exact order-statistic
    interval, sessions that never answered counted at +inf (ms)."""
    if metric in RATE_SOURCES:
        bad, n = bad_count(stats, metric)
        if n == 0:
            return None
        lo, hi = clopper_pearson(bad, n, alpha)
        return (1.0 - hi, 1.0 - lo) if RATE_SOURCES[metric][1] else (lo, hi)
    q = parse_quantile_name(metric)
    h = None if q is None else stats.histograms.get(q[0])
    if q is None or h is None:
        return None
    values, counts = histogram_arrays(h)
    _, lo, hi, n = quantile_bounds(values, counts, q[1] / 100.0, alpha, censored=censored_count(stats, q[0]))
    return (lo / 1000.0, hi / 1000.0) if n else None


def check_triggers(stats: CohortStats, policy: Policy, alpha: float | None = None) -> list[FiredTrigger]:
    """Rollback triggers that fire on one cohort: a trigger fires only when its own confidence
    bound is past the limit (for ``> limit`` the lower bound, for ``< limit`` the upper), at the
    one-sided level ``alpha`` (default ``trigger_alpha(policy)``; a sequential look passes its
    own). Three failures in a 40-session canary of a service failing 1 % read 92.5 % ("< 95 %")
    but do not fire. Empty cohort: none."""
    a = trigger_alpha(policy) if alpha is None else alpha
    fired: list[FiredTrigger] = []
    crit = _critical_error(stats)
    if crit:
        fired.append(crit)
    for t in policy.triggers:
        value = metric_value(stats, t.metric)
        bounds = _bounds_of(stats, t.metric, a)
        if value is None or bounds is None:
            continue
        bound = bounds[0] if t.op in (">", ">=") else bounds[1]
        if not _OPS[t.op](bound, t.threshold):
            continue
        side = "lower" if t.op in (">", ">=") else "upper"
        conf = f"{(1.0 - a) * 100:.4g} %"
        fired.append(
            FiredTrigger(
                t.name,
                t.metric,
                t.op,
                t.threshold,
                round(value, 6),
                f"{t.metric} {format_metric(t.metric, value)} {t.op} {format_metric(t.metric, t.threshold)} "
                f"({conf} {side} bound {format_metric(t.metric, bound)})",
                bound,
            )
        )
    return fired


def mark_generator_bound(fired: list[FiredTrigger], band_ms: float) -> list[FiredTrigger]:
    """The fired triggers, those on a latency whose bound would not be past the limit lowered by
    the generator's error band marked ``generator_bound`` (a saturated prober's late clock, not
    evidence about the service). Rate triggers are never marked; a band of 0 marks nothing."""
    if band_ms <= 0:
        return fired
    marked = []
    for t in fired:
        op = _OPS.get(t.op)
        at = t.bound if t.bound is not None else t.value
        if t.metric.endswith("_ms") and op is not None and not op(at - band_ms, t.threshold):
            lag = format_metric(t.metric, band_ms)
            why = f"{t.reason}, but the generator's own lag (p99 {lag}) could explain it: generator-bound"
            t = replace(t, generator_bound=True, reason=why)
        marked.append(t)
    return marked


def format_metric(metric: str, v: float | None) -> str:
    """Rates as percentages, latencies in ms: how the checklist writes them (every output uses this)."""
    if v is None:
        return "-"
    if metric.endswith("_ms"):
        return "never" if v == math.inf else f"{v:,.1f} ms"  # a quantile among sessions that never answered
    return f"{v * 100:.2f} %"


# --- loading ----------------------------------------------------------------------------------

_TOP_KEYS = {"confidence", "power", "min_sessions", "yellow", "red", "rate_floor", "metrics", "triggers"}
_METRIC_KEYS = {"kind", "histogram", "percentile", "rate", "critical", "yellow", "red", "rate_floor", "enabled"}
_TRIGGER_KEYS = {"metric", "op", "threshold", "enabled"}


class _Limits(TypedDict, total=False):
    """A metric's limits set by a policy file (each one left out keeps the metric's own)."""

    yellow: float
    red: float
    rate_floor: float


_LIMITS: tuple[Literal["yellow", "red", "rate_floor"], ...] = ("yellow", "red", "rate_floor")


def load_policy(path: str | Path) -> Policy:
    """DEFAULT_POLICY overridden by a TOML file. Strict: unknown keys or wrong types raise PolicyError.

    Top level: ``confidence``, ``power``, ``min_sessions``, and ``yellow`` / ``red`` /
    ``rate_floor`` applied to every metric before per-metric tables. ``[metrics.NAME]``
    overrides a default metric or adds one (then ``kind`` and ``histogram`` + ``percentile`` or
    ``rate`` are required); ``enabled = false`` drops it. ``[triggers.NAME]`` likewise.
    """
    p = Path(path)
    L = StrictReader(p, PolicyError)
    doc = read_toml(p, PolicyError, "policy")
    L.known("", doc, _TOP_KEYS)

    d = DEFAULT_POLICY
    confidence = (
        L.number("confidence", doc["confidence"], 0.5, 0.999999, "a number in [0.5, 1)")
        if "confidence" in doc
        else d.confidence
    )
    power = L.number("power", doc["power"], 0.5, 0.999999, "a number in [0.5, 1)") if "power" in doc else d.power
    min_sessions = d.min_sessions
    if "min_sessions" in doc:
        v = doc["min_sessions"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise L.fail("min_sessions", "an integer >= 1", v)
        min_sessions = v
    common: _Limits = {}  # checked numbers; MetricRule checks the rest
    for k in _LIMITS:
        if k in doc:
            common[k] = L.number(k, doc[k], 1e-9, 1e9, "a positive number")

    try:
        metrics = {m.name: replace(m, **common) if common else m for m in d.metrics}
    except ValueError as e:
        raise PolicyError(f"{p}: {'/'.join(common)}: {e}") from None
    for name, raw in L.table("metrics", doc.get("metrics", {})).items():
        key = f"metrics.{name}"
        tbl = L.table(key, raw)
        L.known(f"{key}.", tbl, _METRIC_KEYS)
        if "enabled" in tbl and not L.flag(f"{key}.enabled", tbl["enabled"]):
            metrics.pop(name, None)
            continue
        metrics[name] = _metric_from_table(L, key, name, tbl, metrics.get(name), common)

    triggers = {t.name: t for t in d.triggers}
    for name, raw in L.table("triggers", doc.get("triggers", {})).items():
        key = f"triggers.{name}"
        tbl = L.table(key, raw)
        L.known(f"{key}.", tbl, _TRIGGER_KEYS)
        if "enabled" in tbl and not L.flag(f"{key}.enabled", tbl["enabled"]):
            triggers.pop(name, None)
            continue
        triggers[name] = _trigger_from_table(L, key, name, tbl, triggers.get(name))

    try:
        return Policy(
            metrics=tuple(metrics.values()),
            triggers=tuple(triggers.values()),
            confidence=confidence,
            power=power,
            min_sessions=min_sessions,
        )
    except ValueError as e:
        raise PolicyError(f"{p}: {e}") from None


def _trigger_from_table(L: StrictReader, key: str, name: str, tbl: JSONObject, base: Trigger | None) -> Trigger:
    if base is None and not {"metric", "op", "threshold"} <= tbl.keys():
        raise L.fail(key, "metric, op and threshold for a new trigger", sorted(tbl))
    metric = L.text(f"{key}.metric", tbl["metric"]) if "metric" in tbl else base.metric  # type: ignore[union-attr]
    # an Op: L.text has checked it is one of _OPS' keys
    op = cast(Op, L.text(f"{key}.op", tbl["op"], sorted(_OPS))) if "op" in tbl else base.op  # type: ignore[union-attr]
    threshold = (
        L.number(f"{key}.threshold", tbl["threshold"], -1e18, 1e18, "a number")
        if "threshold" in tbl
        else base.threshold  # type: ignore[union-attr]
    )
    try:
        return Trigger(name=name, metric=metric, op=op, threshold=threshold)
    except ValueError as e:
        raise PolicyError(f"{L.path}: {key}: {e}") from None


def _metric_from_table(
    L: StrictReader, key: str, name: str, tbl: JSONObject, base: MetricRule | None, common: _Limits
) -> MetricRule:
    text = L.text(f"{key}.kind", tbl["kind"], ["quantile", "rate"]) if "kind" in tbl else None
    if base is None and text is None:
        raise L.fail(f"{key}.kind", "'quantile' or 'rate' for a new metric")
    kind: Kind = "quantile" if (text or base.kind) == "quantile" else "rate"  # type: ignore[union-attr]
    percentile: float | None = None
    if kind == "quantile":
        if "rate" in tbl:
            raise L.fail(f"{key}.rate", "no 'rate' key in a quantile metric")
        same = base is not None and base.kind == "quantile"
        if "histogram" in tbl:
            source = L.text(f"{key}.histogram", tbl["histogram"], sorted(HISTOGRAMS))
        elif same:
            source = base.source  # type: ignore[union-attr]
        else:
            raise L.fail(f"{key}.histogram", f"one of {sorted(HISTOGRAMS)}")
        if "percentile" in tbl:
            percentile = L.number(f"{key}.percentile", tbl["percentile"], 1e-9, 100 - 1e-9, "a number in (0, 100)")
        elif same:
            percentile = base.percentile  # type: ignore[union-attr]
        else:
            raise L.fail(f"{key}.percentile", "a number in (0, 100)")
        higher_is_better = False
    else:
        for bad in ("histogram", "percentile"):
            if bad in tbl:
                raise L.fail(f"{key}.{bad}", "no histogram/percentile key in a rate metric")
        if "rate" in tbl:
            source = L.text(f"{key}.rate", tbl["rate"], sorted(RATE_SOURCES))
        elif base is not None and base.kind == "rate":
            source = base.source
        else:
            raise L.fail(f"{key}.rate", f"one of {sorted(RATE_SOURCES)}")
        higher_is_better = RATE_SOURCES[source][1]
    critical = L.flag(f"{key}.critical", tbl["critical"]) if "critical" in tbl else (base.critical if base else False)
    limits: _Limits = {}
    for k in _LIMITS:
        if k in tbl:
            limits[k] = L.number(f"{key}.{k}", tbl[k], 1e-9, 1e9, "a positive number")
        elif base is not None:
            limits[k] = getattr(base, k)
        elif k in common:
            limits[k] = common[k]
    try:
        return MetricRule(name, kind, source, percentile, higher_is_better, critical, **limits)
    except ValueError as e:
        raise PolicyError(f"{L.path}: {key}: {e}") from None


def unreachable(cohorts: Mapping[str, CohortStats]) -> str | None:
    """Why nothing could be measured, when every attempt failed to connect at all."""
    for name, stats in cohorts.items():
        if stats.attempts and stats.outcomes.get("connect_error", 0) == stats.attempts:
            first = next((r for r, _ in stats.reasons.most_common(1)), "").removeprefix("connect_error: ")
            why = f" ({first})" if first else ""
            return f"cannot reach {stats.url} ({name}): every session failed to connect{why}"
    return None


def judge_completion(stats: CohortStats, fired: list[FiredTrigger]) -> list[FiredTrigger]:
    """The policy's triggers, plus one that no policy can switch off: a run where no session
    completed with an answer is RED, whatever the policy file says (all stream errors, all
    premature closes, all empty...)."""
    if stats.attempts and not stats.ok and not any(t.metric == "completion_rate" for t in fired):
        top = ", ".join(f"{k} {v}" for k, v in stats.outcomes.most_common(3))
        reason = f"no session of {stats.attempts} completed with an answer ({top})"
        fired = [*fired, FiredTrigger("no_completion", "completion_rate", "==", 0.0, 0.0, reason)]
    return fired
