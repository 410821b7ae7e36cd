"""compare(baseline, candidate, policy) -> Verdict: GREEN / YELLOW / RED / INCONCLUSIVE with evidence.

Pure functions of two CohortStats and a Policy: no I/O, no clock, no randomness.

Intervals (one per metric, for the change candidate vs baseline)
----------------------------------------------------------------
* Quantiles (latency p50/p95/p99 from the HDR histograms): per cohort, the exact
  distribution-free order-statistic interval [X_(l), X_(u)], ranks from Binomial(n, q) (how
  many sessions fall below the true quantile); nothing is assumed about the shape. The two are
  combined on the log scale by MOVER (Zou & Donner 2008; Price & Bonett 2002 for medians) into
  an interval for log(candidate / baseline). Deterministic, vectorised, and honest at small n:
  40 sessions cannot bound a p95 from above at this confidence, so the upper end is +inf and
  the metric is INCONCLUSIVE, where a bootstrap of 40 values would invent a finite tail.
* Rates, judged on the bad-event rate (see _policy): exact Clopper-Pearson bounds per cohort,
  combined by the same MOVER construction (Newcombe's method, with exact bounds in place of
  Wilson: at the small per-metric alpha below, Wilson's lower bound for 2 events in 40 is 0.8 %
  where the exact one is 0.13 %, and a 40-session canary with two unlucky timeouts went RED).

Family-wise control
-------------------
Each side of each interval is a one-sided bound at alpha / m (alpha = 1 - confidence, m = number
of metrics; Bonferroni). A level worse than GREEN needs the interval's lower end of the
regression above 0, so the chance that *any* metric is flagged when nothing regressed is at most
alpha for the whole verdict. (Holm would not help: "any alarm" is decided at Holm's first step,
which is Bonferroni.) The default confidence is 0.99: the A/A bar "GREEN >= 99 %" is a
family-wise false-alarm rate of 1 %. At 0.95 A/A still passed (99.25 %), but a 40-session
canary then flagged noise in 1.9 % of runs and a 2 % regression was YELLOW in 5 %.

Levels (regression scale: positive = worse; y, r = the policy's YELLOW / RED limits)
----------------------------------------------------------------------------------------
* RED: lower end > 0 (evidence of a regression) and the point estimate > r.
* YELLOW: lower end > 0 and the point estimate > y.
* GREEN: otherwise, if the upper end <= r (a RED-size regression is ruled out), or if the
  comparison is *precise*: a regression of exactly r would have been flagged with probability
  ``power``, i.e. expected half-width * (z_alpha + z_power) / z_alpha <= r.
* INCONCLUSIVE: otherwise, with sessions_needed, the per-cohort size (both cohorts) at which the
  comparison becomes precise, from the observed spread.

Why the band comes from the point estimate and not from "the whole interval past r": at 2,000
sessions per cohort and lognormal sigma 0.3 the p95 log-ratio has a standard error of ~2.1 %,
so "lower end > 10 %" would catch a true 15 % regression in ~18 % of runs (95 % would need
~9,500 per cohort). Evidence of a regression plus the estimate's band meets every bar
(measured, tests/test_compare.py): A/A GREEN 99.9 %, 15 % -> RED 98.5 %, 7 % -> p95 YELLOW or
worse 58 % (overall 95 %, p50 sees it too), 2 % -> GREEN 98 %, 40 vs 760 A/A: 0.45 % RED or
YELLOW (the family-wise 1 %), otherwise INCONCLUSIVE with ~1,300 sessions per cohort at sigma
0.3 and ~14,000 at sigma 1.0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from ._policy import (
    DEFAULT_POLICY,
    MetricRule,
    Policy,
    bad_count,
    check_triggers,
    hist_quantile,
)
from ._stats import CohortStats, histogram_arrays

__all__ = [
    "compare",
    "Verdict",
    "MetricResult",
    "EXIT_CODES",
    "order_stat_ranks",
    "quantile_bounds",
    "quantile_log_ratio_ci",
    "wilson_interval",
    "clopper_pearson",
    "rate_diff_ci",
    "judge",
    "quantile_unit_variance",
]

Level = Literal["GREEN", "YELLOW", "RED", "INCONCLUSIVE"]
EXIT_CODES: dict[str, int] = {"GREEN": 0, "YELLOW": 1, "RED": 2, "INCONCLUSIVE": 3}
_N = NormalDist()
_BIG = 10**9  # cap for sessions_needed searches


# --- exact quantile intervals -----------------------------------------------------------------


@lru_cache(maxsize=8192)
def order_stat_ranks(n: int, q: float, alpha: float) -> tuple[int, int]:
    """1-based ranks (lo, hi) of the exact interval [X_(lo), X_(hi)] for the q-quantile.

    P(X_(lo) > true quantile) <= alpha and P(X_(hi) < true quantile) <= alpha, from
    B ~ Binomial(n, q), the number of sessions below the true quantile. lo = 0 means no finite
    lower bound, hi = n + 1 no finite upper bound (too few sessions for this confidence).
    """
    if n <= 0:
        return 0, 1
    lq, l1q = math.log(q), math.log1p(-q)
    if n <= 20_000:
        k0, k1 = 0, n
    else:  # the pmf outside mean +- 20 sd is far below any alpha we use
        sd = math.sqrt(n * q * (1.0 - q))
        k0, k1 = max(0, math.floor(n * q - 20 * sd)), min(n, math.ceil(n * q + 20 * sd))
    k = np.arange(k0, k1 + 1, dtype=np.float64)
    first = math.lgamma(n + 1) - math.lgamma(k0 + 1) - math.lgamma(n - k0 + 1) + k0 * lq + (n - k0) * l1q
    steps = np.log(n - k[:-1]) - np.log(k[:-1] + 1.0) + (lq - l1q)
    logpmf = first + np.concatenate(([0.0], np.cumsum(steps)))
    cdf = np.cumsum(np.exp(logpmf))  # CDF(k) for k in [k0, k1]
    lo = k0 + int(np.searchsorted(cdf, alpha, side="right"))  # largest l with CDF(l - 1) <= alpha
    idx = int(np.searchsorted(cdf, 1.0 - alpha, side="left"))  # first k with CDF(k) >= 1 - alpha
    hi = min(k0 + idx + 1, n + 1)
    return lo, hi


def quantile_bounds(values: np.ndarray, counts: np.ndarray, q: float, alpha: float) -> tuple[float, float, float, int]:
    """(estimate, lower, upper, n) of the q-quantile from bucketed (values, counts).

    Estimate uses HDR's rank convention so it equals the report's percentile. lower = 0.0 and
    upper = inf when the sample cannot bound the quantile on that side.
    """
    n = int(counts.sum())
    if n == 0:
        return math.nan, 0.0, math.inf, 0
    cum = np.cumsum(counts)
    lo_r, hi_r = order_stat_ranks(n, float(q), float(alpha))
    est = hist_quantile(values, counts, q * 100.0)
    lo = float(values[int(np.searchsorted(cum, lo_r))]) if lo_r >= 1 else 0.0
    hi = float(values[int(np.searchsorted(cum, hi_r))]) if hi_r <= n else math.inf
    return float(est), lo, hi, n  # type: ignore[arg-type]


def _log(x: float) -> float:
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def quantile_log_ratio_ci(
    base: tuple[float, float, float], cand: tuple[float, float, float]
) -> tuple[float, float, float]:
    """MOVER interval for log(candidate / baseline) from per-cohort (estimate, lower, upper)."""
    tb, lb, ub = (_log(v) for v in base)
    tc, lc, uc = (_log(v) for v in cand)
    d = tc - tb
    return d, d - math.hypot(tc - lc, ub - tb), d + math.hypot(uc - tc, tb - lb)


# --- rate intervals ---------------------------------------------------------------------------


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), summed in log space over the window that holds the mass."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    w = int(40.0 * math.sqrt(n * p * (1.0 - p))) + 50
    if k > n * p + w:  # the mass above k is beyond 40 sd
        return 1.0
    j0 = max(0, min(k, int(n * p)) - w)
    lp, l1p = math.log(p), math.log1p(-p)
    first = math.lgamma(n + 1) - math.lgamma(j0 + 1) - math.lgamma(n - j0 + 1) + j0 * lp + (n - j0) * l1p
    j = np.arange(j0, k, dtype=np.float64)
    logpmf = first + np.concatenate(([0.0], np.cumsum(np.log(n - j) - np.log(j + 1.0) + (lp - l1p))))
    return float(min(np.exp(logpmf).sum(), 1.0))


@lru_cache(maxsize=65536)
def clopper_pearson(x: int, n: int, alpha: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) bounds for x/n, each side one-sided ``alpha``; n = 0 gives (0, 1).

    Exact rather than Wilson on purpose: at the small per-metric alpha a family-wise policy
    uses, Wilson's lower bound for 2 events in 40 is 0.8 % where the exact one is 0.13 %, and a
    canary with two unlucky timeouts would be RED.
    """
    if n <= 0:
        return 0.0, 1.0

    def solve(f: Any, lo: float, hi: float) -> float:  # f increasing in p, root of f(p) = 0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if f(mid) > 0:
                hi = mid
            else:
                lo = mid
        return 0.5 * (lo + hi)

    p_hat = x / n
    lower = 0.0 if x <= 0 else solve(lambda p: (1.0 - _binom_cdf(x - 1, n, p)) - alpha, 0.0, p_hat)
    upper = 1.0 if x >= n else solve(lambda p: alpha - _binom_cdf(x, n, p), p_hat, 1.0)
    return lower, upper


def rate_diff_ci(xb: int, nb: int, xc: int, nc: int, alpha: float) -> tuple[float, float, float]:
    """(d, lower, upper) for d = xc/nc - xb/nb: exact per-cohort bounds combined by MOVER
    (Newcombe's construction, with Clopper-Pearson in place of Wilson)."""
    pb = xb / nb if nb else 0.0
    pc = xc / nc if nc else 0.0
    lb, ub = clopper_pearson(int(xb), int(nb), alpha)
    lc, uc = clopper_pearson(int(xc), int(nc), alpha)
    d = pc - pb
    return d, d - math.hypot(pc - lc, ub - pb), d + math.hypot(uc - pc, pb - lb)


def wilson_interval(x: Any, n: Any, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for x/n (vectorised, real-valued x allowed); n = 0 gives [0, 1].

    Used only to plan sessions_needed over many hypothetical sizes at once.
    """
    x = np.asarray(x, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / n
        z2 = z * z
        denom = 1.0 + z2 / n
        centre = (p + z2 / (2 * n)) / denom
        half = z * np.sqrt(np.maximum(p * (1 - p), 0.0) / n + z2 / (4 * n * n)) / denom
        lo = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
        hi = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return lo, hi


# --- levels -----------------------------------------------------------------------------------


def judge(est: float, lo: float, hi: float, yellow: float, red: float, precise: bool) -> tuple[Level, str]:
    """Level from a regression interval (positive = worse) and thresholds on the same scale.

    ``precise``: the comparison is sharp enough that a regression of exactly ``red`` would have
    been flagged with the policy's power (the caller decides how to tell). Returns (level, code);
    the code says which rule decided, for the reason text.
    """
    if not math.isfinite(est):
        return "INCONCLUSIVE", "no_estimate"
    if lo > 0 and est > red:
        return "RED", "red" if lo > yellow else "red_est"
    if lo > 0 and est > yellow:
        return "YELLOW", "yellow"
    if hi <= red:
        return "GREEN", "small_real" if lo > 0 else "excluded"
    if precise:
        return "GREEN", "small_real" if lo > 0 else "precise"
    return "INCONCLUSIVE", "wide"


# --- results ----------------------------------------------------------------------------------


def _r(x: float | None, nd: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(x, nd)


@dataclass
class MetricResult:
    """One row of the verdict. Units: *_ms metrics in ms with relative change (cand/base - 1);
    *_rate metrics as fractions with absolute change (cand - base)."""

    name: str
    kind: str
    critical: bool
    level: Level
    reason: str
    baseline: float | None = None
    candidate: float | None = None
    change: float | None = None
    ci: tuple[float | None, float | None] = (None, None)
    sessions_needed: int | None = None
    n_baseline: int = 0
    n_candidate: int = 0

    def to_dict(self) -> dict[str, Any]:
        nd = 3 if self.kind == "quantile" else 6
        d: dict[str, Any] = {
            "name": self.name,
            "baseline": _r(self.baseline, nd),
            "candidate": _r(self.candidate, nd),
            "change": _r(self.change),
            "ci": [_r(self.ci[0]), _r(self.ci[1])],
            "level": self.level,
            "reason": self.reason,
        }
        if self.level == "INCONCLUSIVE":
            d["sessions_needed"] = self.sessions_needed
        return d


@dataclass
class Verdict:
    """The comparison's answer: overall level, per-metric rows, fired triggers, and why."""

    overall: Level
    metrics: list[MetricResult]
    triggers: list[dict[str, Any]]
    reasons: list[str]
    confidence: float = DEFAULT_POLICY.confidence
    n_baseline: int = 0
    n_candidate: int = 0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.overall]

    def to_dict(self) -> dict[str, Any]:
        """DESIGN.md's results-document "verdict" section."""
        return {
            "overall": self.overall,
            "metrics": [m.to_dict() for m in self.metrics],
            "triggers": [dict(t) for t in self.triggers],
        }


# --- formatting for reasons -------------------------------------------------------------------


def _pct(x: float) -> str:
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return f"{round(x * 100, 1) or 0.0:+.1f} %"  # `or 0.0`: never "-0.0"


def _pp(x: float) -> str:
    return f"{round(x * 100, 2) or 0.0:+.2f} pp"


@dataclass(frozen=True)
class _Ctx:
    alpha: float  # one-sided, per metric
    z: float
    precision: float
    z_sum: float
    policy: Policy


# --- per metric -------------------------------------------------------------------------------


def _quantile_metric(rule: MetricRule, b: CohortStats, c: CohortStats, ctx: _Ctx) -> MetricResult:
    q = float(rule.percentile) / 100.0  # type: ignore[arg-type]
    res = MetricResult(rule.name, rule.kind, rule.critical, "INCONCLUSIVE", "")
    hb, hc = b.histograms.get(rule.source), c.histograms.get(rule.source)
    if hb is None or hc is None:
        res.reason = f"no {rule.source} histogram"
        return res
    (bv, bc), (cv, cc) = histogram_arrays(hb), histogram_arrays(hc)
    bv, cv = np.maximum(bv, 1.0), np.maximum(cv, 1.0)  # a 0 µs bucket would break the log scale
    eb, lb, ub, nb = quantile_bounds(bv, bc, q, ctx.alpha)
    ec, lc, uc, nc = quantile_bounds(cv, cc, q, ctx.alpha)
    res.n_baseline, res.n_candidate = nb, nc
    res.baseline = eb / 1000.0 if nb else None
    res.candidate = ec / 1000.0 if nc else None
    if nb == 0 or nc == 0:
        who = "baseline" if nb == 0 else "candidate"
        res.reason = f"no {rule.source[:-3]} samples in the {who}"
        return res
    d, lo_d, hi_d = quantile_log_ratio_ci((eb, lb, ub), (ec, lc, uc))
    res.change = math.expm1(d)
    res.ci = (math.expm1(lo_d), math.expm1(hi_d) if hi_d < math.inf else None)
    if rule.higher_is_better:  # regression = candidate smaller
        est, lo, hi = -d, -hi_d, -lo_d
        y, r = -math.log1p(-rule.yellow), -math.log1p(-rule.red)
    else:
        est, lo, hi = d, lo_d, hi_d
        y, r = math.log1p(rule.yellow), math.log1p(rule.red)
    unit = quantile_unit_variance(*_pooled(bv, bc, cv, cc), q, ctx.alpha)
    half = ctx.z * math.sqrt(unit * (1.0 / nb + 1.0 / nc))  # expected half-width, log scale
    level, code = judge(est, lo, hi, y, r, math.isfinite(hi) and half * ctx.precision <= r)
    res.level = level
    if level == "INCONCLUSIVE":
        need = 2.0 * unit * (ctx.z_sum / r) ** 2  # equal cohorts: z_sum * sqrt(2 unit / n) <= r
        ranks = math.log(ctx.alpha) / math.log(max(q, 1.0 - q))  # q^n <= alpha: an upper rank exists
        res.sessions_needed = _needed(max(need, ranks), nb, nc, ctx)
    res.reason = _reason(code, rule, res, _pct, rule.yellow, rule.red)
    return res


def _pooled(bv: np.ndarray, bc: np.ndarray, cv: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both cohorts' buckets merged: twice the sessions for estimating the spread."""
    v, inv = np.unique(np.concatenate((bv, cv)), return_inverse=True)
    return v, np.bincount(inv, weights=np.concatenate((bc, cc))).astype(np.int64)


def quantile_unit_variance(values: np.ndarray, counts: np.ndarray, q: float, alpha: float) -> float:
    """Per-session variance of the log q-quantile (n * se^2), so se at size m is sqrt(unit / m).

    Planning only (precision rule, sessions_needed); the intervals themselves stay exact.
    From the local slope of log-latency against normal scores across [q - w, q + w]
    (w = 0.04, narrower near the tails): exact for a lognormal whatever its sigma, local
    otherwise, and half as noisy as reading it off the exact interval, whose ~60 ranks would
    make the GREEN/INCONCLUSIVE line flicker near the design size. Small samples fall back to
    the exact interval's own width, then to a robust lognormal sigma (16th-84th percentiles).
    """
    n = int(counts.sum())
    zq = _N.inv_cdf(q)
    f = _N.pdf(zq)
    w = min(0.04, 0.8 * (1.0 - q), 0.8 * q)
    if n * w >= 20 and n * (1.0 - q - w) >= 5 and n * (q - w) >= 5:
        hi_v = hist_quantile(values, counts, (q + w) * 100.0)
        lo_v = hist_quantile(values, counts, (q - w) * 100.0)
        slope = (math.log(hi_v) - math.log(lo_v)) / (_N.inv_cdf(q + w) - _N.inv_cdf(q - w))  # type: ignore[arg-type]
        return q * (1.0 - q) * (slope / f) ** 2
    z = _N.inv_cdf(1.0 - alpha)
    _, lo, hi, n = quantile_bounds(values, counts, q, alpha)
    if n > 0 and lo > 0 and math.isfinite(hi):
        se = (math.log(hi) - math.log(lo)) / (2.0 * z)
        return n * se * se
    q16, q84 = hist_quantile(values, counts, 15.87), hist_quantile(values, counts, 84.13)
    sigma = (math.log(q84) - math.log(q16)) / 2.0 if q16 and q84 and q84 > q16 else 1.0
    return q * (1.0 - q) * sigma * sigma / f**2


def _needed(n: float, nb: int, nc: int, ctx: _Ctx) -> int:
    """A per-cohort size above what this run had (it did not decide) and the policy minimum."""
    return int(min(_BIG, max(math.ceil(n), min(nb, nc) + 1, ctx.policy.min_sessions)))


def _rate_metric(rule: MetricRule, b: CohortStats, c: CohortStats, ctx: _Ctx) -> MetricResult:
    xb, nb = bad_count(b, rule.source)
    xc, nc = bad_count(c, rule.source)
    res = MetricResult(rule.name, rule.kind, rule.critical, "INCONCLUSIVE", "", n_baseline=nb, n_candidate=nc)
    fb, fc = xb / nb, xc / nc
    d, lo, hi = rate_diff_ci(xb, nb, xc, nc, ctx.alpha)
    sign = -1.0 if rule.higher_is_better else 1.0  # displayed rate = 1 - f for success rates
    res.baseline = 1.0 - fb if rule.higher_is_better else fb
    res.candidate = 1.0 - fc if rule.higher_is_better else fc
    res.change = sign * d
    res.ci = (min(sign * lo, sign * hi), max(sign * lo, sign * hi))
    scale = max(fb, rule.rate_floor)
    y, r = rule.yellow * scale, rule.red * scale
    level, code = judge(d, lo, hi, y, r, (hi - d) * ctx.precision <= r)
    res.level = level
    if level == "INCONCLUSIVE":
        res.sessions_needed = _needed(_rate_needed((xb + xc) / (nb + nc), rule, ctx), nb, nc, ctx)
    res.reason = _reason(code, rule, res, _pp, y, r)
    return res


def _rate_needed(f: float, rule: MetricRule, ctx: _Ctx) -> int:
    """Smallest equal cohort size (to ~2 %) whose expected interval meets the precision rule.

    Planning only: Wilson half-widths at the pooled rate over a log grid of sizes, one numpy pass.
    """
    r = rule.red * max(f, rule.rate_floor)
    n = np.unique(np.ceil(np.logspace(0.0, math.log10(_BIG), 1200)))
    lo, hi = wilson_interval(f * n, n, ctx.z)
    half = np.hypot(hi - f, f - lo)  # MOVER half-width with equal cohorts, either side
    ok = np.flatnonzero(half * ctx.precision <= r)
    return int(n[ok[0]]) if ok.size else _BIG


def _reason(code: str, rule: MetricRule, res: MetricResult, fmt: Any, y: float, r: float) -> str:
    """One line in words: what was seen, against which limit, on what evidence."""
    if rule.kind == "rate":
        what = "failures" if rule.higher_is_better else rule.source.replace("_", " ")
        seen = f"{what} {fmt(-res.change if rule.higher_is_better else res.change)}"  # type: ignore[operator]
        ylim, rlim = fmt(y), fmt(r)
    else:
        slower = res.change is not None and res.change > 0 and not rule.higher_is_better
        seen = f"{fmt(res.change)}{' slower' if slower else ''}"
        ylim, rlim = f"+{rule.yellow * 100:g} %", f"+{rule.red * 100:g} %"
    if code == "red":
        return f"{seen}, past the RED limit {rlim}; even the interval's low end is past YELLOW"
    if code == "red_est":
        return f"{seen}, past the RED limit {rlim}; the interval shows a regression but allows less than {ylim}"
    if code == "yellow":
        return f"{seen}, past the YELLOW limit {ylim}; the interval excludes no change"
    if code == "small_real":
        return f"{seen}: a real change, but within the YELLOW limit {ylim}"
    if code == "excluded":
        return f"{seen}: the interval rules out the RED limit {rlim}"
    if code == "precise":
        return f"{seen}, not significant; precise enough to catch {rlim}"
    if code == "no_estimate":
        return "no estimate"
    n = res.sessions_needed
    smaller = min(res.n_baseline, res.n_candidate)
    need = f"~{n:,} sessions per cohort would decide" if n and n < _BIG else "far more sessions needed"
    return f"{seen}, but at {smaller:,} sessions the interval cannot rule out {rlim}; {need}"


# --- the comparison ---------------------------------------------------------------------------


def _context(policy: Policy) -> _Ctx:
    m = max(len(policy.metrics), 1)
    alpha = (1.0 - policy.confidence) / m
    z = _N.inv_cdf(1.0 - alpha)
    zp = _N.inv_cdf(policy.power)
    return _Ctx(alpha=alpha, z=z, precision=(z + zp) / z, z_sum=z + zp, policy=policy)


def _tag(triggers: list[dict[str, Any]], cohort: str) -> list[dict[str, Any]]:
    return [{**t, "cohort": cohort} for t in triggers]


# Time to the first event of two different flows times each flow's own bookkeeping (legacy's
# agent_status on the POST, ADK's state event before the model runs): not compared, only shown
# in each cohort's summary. Between two runs of one flow it is compared (never critical).
_FIRST_EVENT_NOTE = "note: first events are not compared between {} and {}: each sends its own bookkeeping first"


def _evident(trigger: dict[str, Any], stats: CohortStats, policy: Policy) -> bool:
    """Is the completion trigger on the candidate more than a small sample's noise? It counts in a
    comparison only when the exact bound at the policy's confidence is past the limit too: 3
    failures in a 40-session canary of a service failing 1 % of sessions read 92.5 % ("< 95 %"),
    and would make an A/A comparison RED in ~1 % of runs on their own. A run judges it as observed."""
    if trigger["metric"] != "completion_rate":
        return True
    bad, n = bad_count(stats, "completion_rate")
    lower_bad = clopper_pearson(bad, n, 1.0 - policy.confidence)[0]
    return 1.0 - lower_bad < float(trigger["threshold"])


def compare(
    baseline: CohortStats, candidate: CohortStats, policy: Policy = DEFAULT_POLICY, *, rng_seed: int = 0
) -> Verdict:
    """Judge candidate against baseline. Never raises on empty or odd cohorts: INCONCLUSIVE instead.

    ``rng_seed`` is accepted for API stability; the method is exact and uses no randomness.
    """
    del rng_seed
    ctx = _context(policy)
    fired = check_triggers(candidate, policy)
    fired_c = _tag([t for t in fired if _evident(t, candidate, policy)], "candidate")
    unsure = _tag([t for t in fired if not _evident(t, candidate, policy)], "candidate (not evident)")
    fired_b = _tag(check_triggers(baseline, policy), "baseline")
    nb, nc = baseline.attempts, candidate.attempts

    results: list[MetricResult] = []
    small = min(nb, nc) < policy.min_sessions
    for rule in policy.metrics:
        if rule.source == "first_event_us" and baseline.flow != candidate.flow:
            continue  # each flow sends its own bookkeeping first: see _FIRST_EVENT_NOTE
        if small:
            res = MetricResult(
                rule.name,
                rule.kind,
                rule.critical,
                "INCONCLUSIVE",
                "",
                n_baseline=nb,
                n_candidate=nc,
                sessions_needed=policy.min_sessions,
            )
            res.reason = f"too few sessions ({nb:,} baseline, {nc:,} candidate; policy minimum {policy.min_sessions:,})"
        elif rule.kind == "quantile":
            res = _quantile_metric(rule, baseline, candidate, ctx)
        else:
            res = _rate_metric(rule, baseline, candidate, ctx)
        results.append(res)

    overall, reasons = _overall(results, fired_c, fired_b, policy, nb, nc)
    reasons += [f"note: the candidate's {t['name']} ({t['reason']}) may be noise at {nc:,} sessions" for t in unsure]
    if baseline.flow != candidate.flow and any(r.source == "first_event_us" for r in policy.metrics):
        reasons.append(_FIRST_EVENT_NOTE.format(baseline.flow, candidate.flow))
    return Verdict(overall, results, fired_c + fired_b + unsure, reasons, policy.confidence, nb, nc)


def _overall(
    results: list[MetricResult],
    fired_c: list[dict[str, Any]],
    fired_b: list[dict[str, Any]],
    policy: Policy,
    nb: int,
    nc: int,
) -> tuple[Level, list[str]]:
    """RED > YELLOW > INCONCLUSIVE > GREEN, and the reasons in words."""
    reasons: list[str] = []
    conf = f"{policy.confidence * 100:g} %"
    for t in fired_c:
        reasons.append(f"rollback trigger {t['name']} on the candidate: {t['reason']}")
    crit_red = [m for m in results if m.critical and m.level == "RED"]
    for m in crit_red:
        reasons.append(f"{m.name} is RED: {m.reason}")
    other_red = [m for m in results if not m.critical and m.level == "RED"]
    yellow = [m for m in results if m.level == "YELLOW"]
    crit_inc = [m for m in results if m.critical and m.level == "INCONCLUSIVE"]
    if nb == 0 or nc == 0:
        reasons.append(f"nothing to compare: {'baseline' if nb == 0 else 'candidate'} has no sessions")
    if fired_c or crit_red:
        overall: Level = "RED"
    elif other_red or yellow:
        overall = "YELLOW"
    elif crit_inc or nb == 0 or nc == 0:
        overall = "INCONCLUSIVE"
    else:
        overall = "GREEN"
    if overall in ("RED", "YELLOW"):
        for m in other_red:
            counts = "" if overall == "RED" else ", counts as YELLOW"
            reasons.append(f"{m.name} is RED (not critical{counts}): {m.reason}")
        for m in yellow:
            reasons.append(f"{m.name} is YELLOW: {m.reason}")
    if overall == "INCONCLUSIVE" and crit_inc:
        need = max((m.sessions_needed or 0) for m in crit_inc)
        names = ", ".join(m.name for m in crit_inc)
        tail = f"; ~{need:,} sessions per cohort would decide" if 0 < need < _BIG else ""
        reasons.append(f"cannot tell at {nc:,} candidate / {nb:,} baseline sessions: {names}{tail}")
    if overall == "GREEN":
        reasons.append(
            f"no metric worse than its YELLOW limit with {conf} family-wise confidence, "
            "every critical metric precise enough to see a RED-size regression, no rollback trigger"
        )
    for m in results:
        if m.level == "INCONCLUSIVE" and not m.critical and m.sessions_needed and overall != "INCONCLUSIVE":
            reasons.append(
                f"note: {m.name} (not critical) is undecided; ~{m.sessions_needed:,} sessions per cohort would decide"
            )
    for t in fired_b:
        reasons.append(f"note: the baseline fires {t['name']} too ({t['reason']})")
    return overall, reasons
