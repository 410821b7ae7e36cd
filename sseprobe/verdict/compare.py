"""compare(baseline, candidate, policy) -> Verdict: GREEN / YELLOW / RED / INCONCLUSIVE with evidence.

Pure functions of two CohortStats and a Policy: no I/O, no clock, no randomness.

What decides (regression scale: positive = worse; y, r = the policy's YELLOW / RED limits)
----------------------------------------------------------------------------------------------
* RED: evidence of a regression (the interval's lower end, at the false-alarm level, above 0)
  and the estimate past r. YELLOW: the same with the estimate past y.
* GREEN: no alarm, and the upper bound at the policy's ``power`` (one-sided 80 %) at or
  below r: a regression exactly at the RED limit is called GREEN at most 1 - power of the
  time. (Not "the expected interval is narrow enough": at lognormal sigma 0.6 that needs ~5,000
  sessions per cohort to call an unchanged service GREEN.)
* INCONCLUSIVE otherwise, with sessions_needed: the per-cohort size at which an unchanged
  service would be called GREEN about nine times in ten, from the observed spread.

The intervals
-------------
* Latency quantiles, two intervals for log(candidate / baseline):
  - the quantile's own: per cohort the exact distribution-free order-statistic interval (ranks
    from Binomial(n, q)), combined on the log scale by MOVER (Zou & Donner 2008). It alone can
    call GREEN (its power-level bound interpolates between neighbouring order statistics,
    Hutson 1999), and a tail too thin to bound at the false-alarm level is never GREEN;
  - the whole distribution's: the change of mean + c * sd of log latency, c the quantile's
    standard score, with a delta-method standard error and Student-t width. It equals the
    quantile's change whenever the candidate moves and stretches log latency, whatever the
    shape, and uses every session, so at lognormal sigma 0.6 its standard error is ~0.73 of
    the order statistics'. It may only raise an alarm, and only while the quantile's own
    estimate agrees with it (within Z_FIT standard errors). It never calls GREEN: one
    percentage point more sessions in a slow mode moves a p95 that sits at the gap by +27 %
    while barely moving the shift and stretch.
  Each gets a share of the metric's alpha (MODEL_SHARE to the whole distribution).
* Rates, judged on the bad-event rate (see _policy): exact Clopper-Pearson bounds per cohort,
  combined by the same MOVER construction (Newcombe's method, with exact bounds in place of
  Wilson: at the small per-metric alpha below, Wilson's lower bound for 2 events in 40 is 0.8 %
  where the exact one is 0.13 %, and a 40-session canary with two unlucky timeouts went RED).

Family-wise control
-------------------
The policy's 1 - confidence is split: critical metrics (the only ones that can make the verdict
RED) share all of it but NON_CRITICAL_SHARE; the non-critical ones share that slice and can make
the verdict YELLOW. Within each group Bonferroni, one-sided: the chance that *any* metric raises
an alarm when nothing changed is at most 1 - confidence for the whole verdict, and adding a
non-critical metric never widens a critical interval. (Holm would not help: "any alarm" is
decided at Holm's first step, which is Bonferroni.)

The generator's own error
-------------------------
A saturated generator (its event loop or its session starts late by more than a few ms at p99)
stamps latencies late, and not alike for both cohorts: the lateness comes in bursts, so sessions
are no longer independent samples and the intervals above are too narrow. The caller passes the
generator's error band ``generator_error_ms`` (``generator_band``: its p99 lateness when
saturated, else 0: a small lateness is common to both interleaved cohorts and already in the
samples, and widening by it would only cost power). Each latency change's interval is then widened
by that many ms (on the ratio scale, +- e / baseline) and judged again: a metric whose level
moves is INCONCLUSIVE and ``generator_bound``, one that keeps its level (a 2 s latency 40 %
slower is RED whatever 5 ms of lag did) keeps it. Rates are untouched. Latency triggers that
would not fire with the value lowered by e are generator-bound too: INCONCLUSIVE, not RED.

Sequential
----------
``compare_sequential`` is the same judgement for a run that looks after every batch and stops
at the first ``decided`` verdict: SequentialPlan spends the false-alarm budget evenly over every
look and the power budget over a sparse ladder of GREEN looks, so neither guarantee depends on
how often it looked. Measured by simulation: README "How compare decides", tests/test_compare.py,
testsupport/power.py (``python -m bench.power``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Literal, TypeGuard

import numpy as np

from .._config import LOOK_EVERY, MAX_SESSIONS
from .levels import exit_codes
from .policy import (
    DEFAULT_POLICY,
    MetricRule,
    Policy,
    bad_count,
    check_triggers,
    hist_quantile,
    mark_generator_bound,
)
from .stats import CohortStats, histogram_arrays

__all__ = [
    "compare",
    "Verdict",
    "MetricResult",
    "EXIT_CODES",
    "order_stat_ranks",
    "order_stat_fractions",
    "quantile_bounds",
    "quantile_log_ratio_ci",
    "wilson_interval",
    "clopper_pearson",
    "rate_diff_ci",
    "judge",
    "quantile_unit_variance",
    "shift_scale_change",
    "t_quantile",
    "compare_sequential",
    "SequentialPlan",
    "decided",
    "generator_band",
    "overall_of",
]

Level = Literal["GREEN", "YELLOW", "RED", "INCONCLUSIVE"]
EXIT_CODES: dict[str, int] = exit_codes("GREEN", "YELLOW", "RED", "INCONCLUSIVE")
_N = NormalDist()
_BIG = 10**9  # cap for sessions_needed searches
NON_CRITICAL_SHARE = 0.1  # of the family-wise alpha, shared by the metrics that can make the verdict only YELLOW
MODEL_SHARE = 0.8  # of a latency metric's alpha, for the whole-distribution interval; the rest guards the quantile
Z_FIT = _N.inv_cdf(0.995)  # shape check: the quantile itself must agree with the whole-distribution estimate
Z_DECIDE = _N.inv_cdf(0.9)  # sessions_needed: with no change, decided this often
GENERATOR_ADVICE = "run with fewer sessions in flight or more workers"


def _z(alpha: float) -> float:
    return _N.inv_cdf(1.0 - alpha)


# --- exact quantile intervals -----------------------------------------------------------------


@lru_cache(maxsize=256)
def _rank_cdf(n: int, q: float) -> tuple[int, np.ndarray]:
    """(k0, CDF(k) for k = k0, k0 + 1, ...) of B ~ Binomial(n, q), over the window that holds the mass."""
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
    return k0, np.cumsum(np.exp(logpmf))


@lru_cache(maxsize=8192)
def order_stat_ranks(n: int, q: float, alpha: float) -> tuple[int, int]:
    """1-based ranks (lo, hi) of the exact interval [X_(lo), X_(hi)] for the q-quantile.

    P(X_(lo) > true quantile) <= alpha and P(X_(hi) < true quantile) <= alpha, from
    B ~ Binomial(n, q), the number of sessions below the true quantile. lo = 0 means no finite
    lower bound, hi = n + 1 no finite upper bound (too few sessions for this confidence).
    """
    if n <= 0:
        return 0, 1
    k0, cdf = _rank_cdf(n, q)
    lo = k0 + int(np.searchsorted(cdf, alpha, side="right"))  # largest l with CDF(l - 1) <= alpha
    idx = int(np.searchsorted(cdf, 1.0 - alpha, side="left"))  # first k with CDF(k) >= 1 - alpha
    hi = min(k0 + idx + 1, n + 1)
    return lo, hi


@lru_cache(maxsize=8192)
def order_stat_fractions(n: int, q: float, alpha: float) -> tuple[float, float]:
    """Fractional ranks between the exact ones and their inner neighbours, at which linear
    interpolation spends alpha exactly instead of up to one rank's worth less (Hutson's idea).

    Used only for the power-level bound that calls a change GREEN: at 2,000 sessions and
    alpha 0.2 the exact ranks sit ~9 ranks out where 8.2 would do, and that rounding alone cost
    two points of A/A GREEN at lognormal sigma 0.6.
    """
    lo, hi = order_stat_ranks(n, q, alpha)
    if n <= 0 or lo < 1 or hi > n:
        return float(lo), float(hi)
    k0, cdf = _rank_cdf(n, q)

    def at(k: int) -> float:  # CDF(k), 0 below the window
        return float(cdf[min(k - k0, len(cdf) - 1)]) if k >= k0 else 0.0

    below, above = at(lo - 1), at(lo)  # P(X_(lo) > Q) = CDF(lo - 1) <= alpha < CDF(lo)
    frac_lo = lo + ((alpha - below) / (above - below) if above > below and lo < n else 0.0)
    miss, inner = 1.0 - at(hi - 1), 1.0 - at(hi - 2)  # P(X_(hi) < Q) <= alpha < P(X_(hi - 1) < Q)
    frac_hi = hi - ((alpha - miss) / (inner - miss) if inner > miss and hi > 1 else 0.0)
    return min(frac_lo, hi), max(frac_hi, frac_lo)


def quantile_bounds(
    values: np.ndarray, counts: np.ndarray, q: float, alpha: float, *, interpolate: bool = False
) -> tuple[float, float, float, int]:
    """(estimate, lower, upper, n) of the q-quantile from bucketed (values, counts).

    Estimate uses HDR's rank convention so it equals the report's percentile. lower = 0.0 and
    upper = inf when the sample cannot bound the quantile on that side. ``interpolate``: the
    bounds at fractional ranks (order_stat_fractions) rather than the conservative whole ones.
    """
    n = int(counts.sum())
    if n == 0:
        return math.nan, 0.0, math.inf, 0
    cum = np.cumsum(counts)
    lo_r, hi_r = order_stat_ranks(n, float(q), float(alpha))
    est = hist_quantile(values, counts, q * 100.0)

    def value(rank: float) -> float:  # X_(rank), linear between neighbours for a fractional rank
        k = math.floor(rank)
        x = float(values[int(np.searchsorted(cum, k))])
        if rank == k:
            return x
        return x + (rank - k) * (float(values[int(np.searchsorted(cum, k + 1))]) - x)

    if interpolate:
        lo_f, hi_f = order_stat_fractions(n, float(q), float(alpha))
        lo = value(lo_f) if lo_r >= 1 else 0.0
        hi = value(hi_f) if hi_r <= n else math.inf
    else:
        lo = value(lo_r) if lo_r >= 1 else 0.0
        hi = value(hi_r) if hi_r <= n else math.inf
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

    p_hat = x / n
    z = _N.inv_cdf(1.0 - alpha)
    w_lo, w_hi = (float(b) for b in wilson_interval(x, n, z))  # a close first guess
    lower = 0.0
    if x > 0:  # P(B >= x | p) = alpha; d/dp P(B >= x) = n * pmf_{n-1}(x - 1)
        tail = lambda p: (1.0 - _binom_cdf(x - 1, n, p)) - alpha  # noqa: E731
        lower = _newton(tail, lambda p: n * _pmf(x - 1, n - 1, p), 0.0, p_hat, w_lo, alpha)
    upper = 1.0
    if x < n:  # P(B <= x | p) = alpha; d/dp P(B <= x) = -n * pmf_{n-1}(x)
        upper = _newton(lambda p: alpha - _binom_cdf(x, n, p), lambda p: n * _pmf(x, n - 1, p), p_hat, 1.0, w_hi, alpha)
    return lower, upper


def _pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return math.exp(
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)
    )


def _newton(f: Any, slope: Any, lo: float, hi: float, guess: float, alpha: float) -> float:
    """Root of an increasing f on [lo, hi]: Newton steps, bisection whenever a step leaves the
    bracket. Stops when the tail probability is right to 1e-8 of alpha (~6 evaluations
    instead of bisection's 40: the exact rate bounds are most of a comparison's time)."""
    p = guess if lo < guess < hi else 0.5 * (lo + hi)
    for _ in range(200):
        v = f(p)
        if abs(v) <= 1e-8 * alpha or hi - lo <= 1e-15 * hi:
            break
        if v > 0:
            hi = p
        else:
            lo = p
        s = slope(p)
        step = p - v / s if s > 0 else math.nan
        p = step if lo < step < hi else 0.5 * (lo + hi)
    return p


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


def judge(est: float, lo: float, hi: float, yellow: float, red: float) -> tuple[Level, str]:
    """Level from a regression estimate, its lower bound at the false-alarm level and its upper
    bound at the policy's power level (positive = worse); thresholds on the same scale.

    Returns (level, code); the code says which rule decided, for the reason text.
    """
    if not math.isfinite(est):
        return "INCONCLUSIVE", "no_estimate"
    if lo > 0 and est > red:
        return "RED", "red" if lo > yellow else "red_est"
    if lo > 0 and est > yellow:
        return "YELLOW", "yellow"
    if hi <= red:
        return "GREEN", "small_real" if lo > 0 else "excluded"
    return "INCONCLUSIVE", "wide"


_SEVERITY: dict[str, int] = {"GREEN": 0, "INCONCLUSIVE": 1, "YELLOW": 2, "RED": 3}


# --- whole-distribution (shift / scale of log latency) ------------------------------------------


def shift_scale_parts(values: np.ndarray, counts: np.ndarray, c: float) -> tuple[float, float, float, float]:
    """(mu + c * s, its variance per session, the kurtosis of that variance's terms, s) of log
    latency from bucketed (values, counts).

    mu and s are the mean and standard deviation of log latency; the variance comes from the
    influence function of mu + c * s (delta method, no distribution assumed: only finite
    moments, which HDR's bounded range guarantees). Under a change that moves and stretches log
    latency (any shape), the difference of mu + c * s between cohorts is the change of the
    log quantile whose standard score is c, estimated from every session instead of a few near it.
    """
    n = float(counts.sum())
    y = np.log(values)
    w = counts / n
    mu = float(w @ y)
    dev = y - mu
    s = math.sqrt(max(float(w @ (dev * dev)), 0.0))
    if s <= 0.0:
        return mu, 0.0, 1.0, 0.0
    infl2 = (dev + c * (dev * dev - s * s) / (2.0 * s)) ** 2
    var = float(w @ infl2)
    return mu + c * s, var, float(w @ (infl2 * infl2)) / var**2 if var > 0 else 1.0, s


def shift_scale_change(
    base: tuple[np.ndarray, np.ndarray], cand: tuple[np.ndarray, np.ndarray], q: float
) -> tuple[float, float, float] | None:
    """(change of the log q-quantile, its standard error, the degrees of freedom of that
    standard error), or None when a cohort has no spread.

    The standard score c of the quantile is read off both cohorts pooled, so swapping them
    flips the sign exactly. The degrees of freedom (Satterthwaite, from the kurtosis of the
    influence terms) widen the interval like Student's t: the variance rests on fourth powers
    of log latency, and with z alone the one-sided 1 % bound was crossed 1.24 % of the time
    under A/A at 574 sessions per cohort.
    """
    pooled = _pooled(*base, *cand)
    qp = hist_quantile(*pooled, q * 100.0)
    mu_p, _, _, sp = shift_scale_parts(*pooled, 0.0)
    if qp is None or sp <= 0.0:
        return None
    c = (math.log(qp) - mu_p) / sp
    tb, vb, kb, sb = shift_scale_parts(*base, c)
    tc, vc, kc, sc = shift_scale_parts(*cand, c)
    if sb <= 0.0 or sc <= 0.0:
        return None
    nb, nc = float(base[1].sum()), float(cand[1].sum())
    se2 = vb / nb + vc / nc
    spread = (vb / nb) ** 2 * max(kb - 1.0, 0.0) / nb + (vc / nc) ** 2 * max(kc - 1.0, 0.0) / nc
    dof = 2.0 * se2 * se2 / spread if spread > 0 else math.inf
    return tc - tb, math.sqrt(se2), dof


def t_quantile(alpha: float, dof: float) -> float:
    """Upper alpha quantile of Student's t (Cornish-Fisher, two terms: ample for dof >= 20)."""
    z = _z(alpha)
    if not math.isfinite(dof):
        return z
    return z + (z**3 + z) / (4.0 * dof) + (5.0 * z**5 + 16.0 * z**3 + 3.0 * z) / (96.0 * dof * dof)


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
    method: str = ""  # which interval decided: shift-scale, order-statistic or exact-binomial
    generator_bound: bool = False  # undecided because the generator's own lag could explain the change

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
            "method": self.method or None,
        }
        if self.level == "INCONCLUSIVE":
            d["sessions_needed"] = self.sessions_needed
        if self.generator_bound:
            d["generator_bound"] = True
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
    generator_error_ms: float = 0.0  # the band latency intervals were widened by (0: none)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.overall]

    @property
    def bound_by_generator(self) -> list[str]:
        """Names of the metrics and candidate triggers the generator's own lag left undecided."""
        triggers = [t["name"] for t in self.triggers if t.get("generator_bound") and t.get("cohort") == "candidate"]
        return [m.name for m in self.metrics if m.generator_bound] + triggers

    def to_dict(self) -> dict[str, Any]:
        """The results document's "verdict" section (ARCHITECTURE.md)."""
        d: dict[str, Any] = {
            "overall": self.overall,
            "metrics": [m.to_dict() for m in self.metrics],
            "triggers": [dict(t) for t in self.triggers],
        }
        if self.generator_error_ms > 0:
            d["generator_error_ms"] = round(self.generator_error_ms, 3)
        return d


# --- formatting for reasons -------------------------------------------------------------------


def _pct(x: float) -> str:
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return f"{round(x * 100, 1) or 0.0:+.1f} %"  # `or 0.0`: never "-0.0"


def _band(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


def _pp(x: float) -> str:
    return f"{round(x * 100, 2) or 0.0:+.2f} pp"


@dataclass(frozen=True)
class _Ctx:
    alpha_critical: float  # one-sided false-alarm level of one critical metric, per look
    alpha_other: float  # the same for a non-critical metric
    beta: float  # one-sided level of the upper bound that rules out RED (1 - power), per GREEN look
    policy: Policy
    green: bool = True  # whether this look may call a metric GREEN
    band_ms: float = 0.0  # the generator's error band latency intervals are widened by (generator_band)

    def alpha(self, rule: MetricRule) -> float:
        return self.alpha_critical if rule.critical else self.alpha_other


@dataclass(frozen=True)
class _Evidence:
    """One interval for a metric's change. est / lo / hi are on the regression scale (positive =
    worse): lo at the false-alarm level, hi at the power level. change / ci are for display."""

    method: str
    change: float
    ci: tuple[float, float]
    est: float
    lo: float
    hi: float


def _log_evidence(
    method: str, d: float, at_alpha: tuple[float, float], at_beta: tuple[float, float], sign: float
) -> _Evidence:
    """Evidence from a log-ratio estimate with its bounds at both levels; sign -1 = higher is better."""
    ci = (math.expm1(at_alpha[0]), math.expm1(at_alpha[1]))
    if sign > 0:
        return _Evidence(method, math.expm1(d), ci, d, at_alpha[0], at_beta[1])
    return _Evidence(method, math.expm1(d), ci, -d, -at_alpha[1], -at_beta[0])


def _alarm(ev: _Evidence | None, y: float, r: float) -> int:
    """Severity of the alarm this evidence raises on its own (0 = none)."""
    if ev is None:
        return 0
    level = judge(ev.est, ev.lo, math.inf, y, r)[0]
    return _SEVERITY[level] if level in ("YELLOW", "RED") else 0


# --- per metric -------------------------------------------------------------------------------


def _arrays(
    stats: CohortStats, name: str, cache: dict[int, tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """A histogram's (values, counts), each histogram read once per comparison."""
    h = stats.histograms.get(name)
    if h is None:
        return None
    if id(h) not in cache:
        v, c = histogram_arrays(h)
        cache[id(h)] = (np.maximum(v, 1.0), c)  # a 0 µs bucket would break the log scale
    return cache[id(h)]


def _quantile_metric(
    rule: MetricRule, b: CohortStats, c: CohortStats, ctx: _Ctx, cache: dict[int, tuple[np.ndarray, np.ndarray]]
) -> MetricResult:
    q = float(rule.percentile) / 100.0  # type: ignore[arg-type]
    res = MetricResult(rule.name, rule.kind, rule.critical, "INCONCLUSIVE", "")
    base, cand = _arrays(b, rule.source, cache), _arrays(c, rule.source, cache)
    if base is None or cand is None:
        res.reason = f"no {rule.source} histogram"
        return res
    (bv, bc), (cv, cc) = base, cand
    a_model = ctx.alpha(rule) * MODEL_SHARE
    a_guard = ctx.alpha(rule) - a_model
    eb, lb, ub, nb = quantile_bounds(bv, bc, q, a_guard)
    ec, lc, uc, nc = quantile_bounds(cv, cc, q, a_guard)
    res.n_baseline, res.n_candidate = nb, nc
    res.baseline = eb / 1000.0 if nb else None
    res.candidate = ec / 1000.0 if nc else None
    if nb == 0 or nc == 0:
        who = "baseline" if nb == 0 else "candidate"
        res.reason = f"no {rule.source[:-3]} samples in the {who}"
        return res
    sign = -1.0 if rule.higher_is_better else 1.0
    if rule.higher_is_better:
        y, r = -math.log1p(-rule.yellow), -math.log1p(-rule.red)
    else:
        y, r = math.log1p(rule.yellow), math.log1p(rule.red)
    d, lo_g, hi_g = quantile_log_ratio_ci((eb, lb, ub), (ec, lc, uc))
    beta_b = quantile_bounds(bv, bc, q, ctx.beta, interpolate=True)[:3]
    beta_c = quantile_bounds(cv, cc, q, ctx.beta, interpolate=True)[:3]
    guard = _log_evidence("order-statistic", d, (lo_g, hi_g), quantile_log_ratio_ci(beta_b, beta_c)[1:], sign)
    model, note = _model_evidence((bv, bc), (cv, cc), q, (d, lo_g, hi_g), a_model, a_guard, sign)
    green = ctx.green and math.isfinite(hi_g)  # a tail too thin to bound at the alarm level is never GREEN
    ev, level, code = _decide(guard, model, y, r, green)
    if ctx.band_ms > 0:
        k = ctx.band_ms * 1000.0 / eb  # the band as a share of the baseline quantile (both in µs)
        wide = _decide(_widened(guard, k, sign), None if model is None else _widened(model, k, sign), y, r, green)
        if wide[1] != level:
            res.generator_bound = True
            code = "generator_alarm" if level in ("YELLOW", "RED") else "generator_green"
            ev, level = wide[0], "INCONCLUSIVE"
    res.level, res.method = level, ev.method
    res.change = ev.change
    res.ci = (ev.ci[0], ev.ci[1] if math.isfinite(ev.ci[1]) else None)
    if level == "INCONCLUSIVE" and not res.generator_bound:  # more sessions cannot undo the generator's lag
        unit = quantile_unit_variance(*_pooled(bv, bc, cv, cc), q, a_guard)
        if math.isfinite(hi_g - lo_g):  # the exact interval's own width: wider where the density dips
            unit = max(unit, ((hi_g - lo_g) / (2.0 * _z(a_guard))) ** 2 / (1.0 / nb + 1.0 / nc))
        need = 2.0 * unit * ((_z(ctx.beta) + Z_DECIDE) / r) ** 2  # equal cohorts, no change: decided ~90 %
        ranks = math.log(min(a_guard, ctx.beta)) / math.log(max(q, 1.0 - q))  # q^n <= alpha: tail bounded
        res.sessions_needed = _needed(max(need, ranks), nb, nc, ctx)
    if ev.method == "shift-scale":
        note = "; seen in the whole distribution (shift and stretch of log latency)"
    elif note:
        note = f"; the p{rule.percentile:g} itself {note}"
    res.reason = _reason(code, rule, res, _pct, rule.yellow, rule.red, ctx) + note
    return res


def _decide(guard: _Evidence, model: _Evidence | None, y: float, r: float, green: bool) -> tuple[_Evidence, Level, str]:
    """(the evidence that decides, level, code): the whole distribution's only when it raises the
    louder alarm (ties: the quantile's own), and GREEN only where the quantile's tail is bounded."""
    ev = model if model is not None and _alarm(model, y, r) > _alarm(guard, y, r) else guard
    level, code = judge(ev.est, ev.lo, ev.hi if green else math.inf, y, r)
    return ev, level, code


def _widened(ev: _Evidence, k: float, sign: float) -> _Evidence:
    """The evidence with its ratio interval widened by k on both sides (ratio_lo - k, ratio_hi + k):
    what the change could be if either cohort's latencies were late by up to k of the baseline."""

    def out(x: float) -> float:  # log ratio moved up by k
        return math.log(math.exp(x) + k) if x < math.inf else x

    def down(x: float) -> float:  # log ratio moved down by k; no ratio below 0
        return math.log(math.exp(x) - k) if x > -math.inf and math.exp(x) > k else -math.inf

    ci = (max(ev.ci[0] - k, -1.0), ev.ci[1] + k)
    if sign > 0:  # lo and hi are the log ratio's own bounds
        return replace(ev, ci=ci, lo=down(ev.lo), hi=out(ev.hi))
    return replace(ev, ci=ci, lo=-out(-ev.lo), hi=-down(-ev.hi))


def _model_evidence(
    base: tuple[np.ndarray, np.ndarray],
    cand: tuple[np.ndarray, np.ndarray],
    q: float,
    direct: tuple[float, float, float],
    a_model: float,
    a_guard: float,
    sign: float,
) -> tuple[_Evidence | None, str]:
    """(the whole-distribution interval, ""), or (None, why not) where it does not describe
    this quantile: a cohort without spread, a tail too thin to bound, or a quantile that moved
    differently from the shift and stretch of the rest (the shape check, |direct - model|
    within Z_FIT standard errors). It can only raise an alarm: calling a change GREEN needs the
    quantile's own interval, since one percentage point more sessions in a slow mode moves a
    p95 sitting at the gap by a quarter while leaving the shift and stretch almost where they were."""
    d, lo_g, hi_g = direct
    fit = shift_scale_change(base, cand, q)
    if fit is None or not (math.isfinite(hi_g) and math.isfinite(lo_g)):
        return None, ""
    dm, se, dof = fit
    if abs(d - dm) > Z_FIT * math.hypot(se, (hi_g - lo_g) / (2.0 * _z(a_guard))):
        return None, "moved unlike a shift and stretch of the whole distribution"
    half = t_quantile(a_model, dof) * se
    return _log_evidence("shift-scale", dm, (dm - half, dm + half), (-math.inf, math.inf), sign), ""


def _pooled(bv: np.ndarray, bc: np.ndarray, cv: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both cohorts' buckets merged (values sorted and unique in each, so a merge, not a regroup)."""
    v = np.union1d(bv, cv)
    counts = np.zeros(len(v), dtype=np.int64)
    counts[np.searchsorted(v, bv)] += bc
    counts[np.searchsorted(v, cv)] += cc
    return v, counts


def quantile_unit_variance(values: np.ndarray, counts: np.ndarray, q: float, alpha: float) -> float:
    """Per-session variance of the log q-quantile (n * se^2), so se at size m is sqrt(unit / m).

    Planning only (sessions_needed): the intervals themselves stay exact. From the local slope
    of log-latency against normal scores across [q - w, q + w] (w = 0.04, narrower near the
    tails): exact for a lognormal whatever its sigma, local otherwise. The caller takes the
    larger of this and the exact interval's own width, which sees a dip in density (a p95 at
    the gap of a bimodal TTFE) that the slope averages away. Small samples fall back to the
    exact interval's width, then to a robust lognormal sigma (16th-84th percentiles).
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
    res.method = "exact-binomial"
    fb, fc = xb / nb, xc / nc
    d, lo, hi = rate_diff_ci(xb, nb, xc, nc, ctx.alpha(rule))
    hi_power = rate_diff_ci(xb, nb, xc, nc, ctx.beta)[2]
    sign = -1.0 if rule.higher_is_better else 1.0  # displayed rate = 1 - f for success rates
    res.baseline = 1.0 - fb if rule.higher_is_better else fb
    res.candidate = 1.0 - fc if rule.higher_is_better else fc
    res.change = sign * d
    res.ci = (min(sign * lo, sign * hi), max(sign * lo, sign * hi))
    scale = max(fb, rule.rate_floor)
    y, r = rule.yellow * scale, rule.red * scale
    level, code = judge(d, lo, hi_power if ctx.green else math.inf, y, r)
    res.level = level
    if level == "INCONCLUSIVE":
        res.sessions_needed = _needed(_rate_needed((xb + xc) / (nb + nc), rule, ctx), nb, nc, ctx)
    res.reason = _reason(code, rule, res, _pp, y, r, ctx)
    return res


def _rate_needed(f: float, rule: MetricRule, ctx: _Ctx) -> int:
    """Smallest equal cohort size (to ~2 %) at which no change is decided GREEN ~90 % of the time.

    Planning only: Wilson half-widths at the pooled rate over a log grid of sizes, one numpy pass.
    """
    r = rule.red * max(f, rule.rate_floor)
    n = np.unique(np.ceil(np.logspace(0.0, math.log10(_BIG), 1200)))
    lo, hi = wilson_interval(f * n, n, _z(ctx.beta) + Z_DECIDE)
    half = np.hypot(hi - f, f - lo)  # MOVER half-width with equal cohorts, either side
    ok = np.flatnonzero(half <= r)
    return int(n[ok[0]]) if ok.size else _BIG


def _reason(code: str, rule: MetricRule, res: MetricResult, fmt: Any, y: float, r: float, ctx: _Ctx) -> str:
    """One line in words: what was seen, against which limit, on what evidence."""
    if rule.kind == "rate":
        what = "failures" if rule.higher_is_better else rule.source.replace("_", " ")
        seen = f"{what} {fmt(-res.change if rule.higher_is_better else res.change)}"  # type: ignore[operator]
        ylim, rlim = fmt(y), fmt(r)
    else:
        slower = res.change is not None and res.change > 0 and not rule.higher_is_better
        seen = f"{fmt(res.change)}{' slower' if slower else ''}"
        ylim, rlim = f"+{rule.yellow * 100:g} %", f"+{rule.red * 100:g} %"
    power = f"{ctx.policy.power * 100:g} %"
    if code == "red":
        return f"{seen}, past the RED limit {rlim}; even the interval's low end is past YELLOW"
    if code == "red_est":
        return f"{seen}, past the RED limit {rlim}; the interval shows a regression but allows less than {ylim}"
    if code == "yellow":
        return f"{seen}, past the YELLOW limit {ylim}; the interval excludes no change"
    if code == "small_real":
        return f"{seen}: a real change, but within the YELLOW limit {ylim}"
    if code == "excluded":
        return f"{seen}: {rlim} or worse is ruled out with {power} confidence"
    if code == "no_estimate":
        return "no estimate"
    if code.startswith("generator_"):
        lag = f"the generator's own lag (p99 {_band(ctx.band_ms)})"
        could = "could explain this change" if code == "generator_alarm" else f"could hide a {rlim} change"
        return f"{seen}: generator-bound: {lag} {could}; {GENERATOR_ADVICE}"
    n = res.sessions_needed
    smaller = min(res.n_baseline, res.n_candidate)
    need = f"~{n:,} sessions per cohort would decide" if n and n < _BIG else "far more sessions needed"
    return f"{seen}, but at {smaller:,} sessions {rlim} cannot be ruled out with {power} confidence; {need}"


# --- the comparison ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SequentialPlan:
    """An alpha-spending plan for looking again and again: look number k (1-based) comes after
    ``k * look_every`` sessions per cohort, at most ``looks`` of them (up to ``max_sessions``).

    Two budgets, each spent evenly (Bonferroni over looks: the simplest spending plan, and every
    interval stays exact or distribution-free). Alarms (YELLOW/RED) may fire at every look, each
    judged at alpha / looks, so false alarms over the whole run stay within the policy's
    1 - confidence however early it stops. GREEN may be called only at ``green_looks``, sizes
    growing by ``green_growth`` from ``first_green`` sessions, each at (1 - power) / their
    number, so a RED-size regression is still called GREEN at most 1 - power of the time.
    """

    look_every: int = LOOK_EVERY
    max_sessions: int = MAX_SESSIONS
    first_green: int = 500
    green_growth: float = 1.4

    def __post_init__(self) -> None:
        if self.look_every < 1 or self.max_sessions < self.look_every:
            raise ValueError(f"need 1 <= look_every <= max_sessions, got {self.look_every}, {self.max_sessions}")
        if self.green_growth <= 1.0 or self.first_green < 1:
            raise ValueError("need green_growth > 1 and first_green >= 1")

    @property
    def looks(self) -> int:
        return math.ceil(self.max_sessions / self.look_every)

    @property
    def green_looks(self) -> tuple[int, ...]:
        ks = [min(max(math.ceil(self.first_green / self.look_every), 1), self.looks)]
        while ks[-1] < self.looks:
            ks.append(min(max(ks[-1] + 1, math.ceil(ks[-1] * self.green_growth)), self.looks))
        return tuple(ks)


def _context(policy: Policy, looks: int = 1, green_looks: int = 1, green: bool = True) -> _Ctx:
    """Split the family-wise alpha: critical metrics share all of it but NON_CRITICAL_SHARE,
    which the others share (so adding a non-critical metric never widens a critical interval)."""
    critical = sum(m.critical for m in policy.metrics)
    other = len(policy.metrics) - critical
    share = NON_CRITICAL_SHARE if critical and other else (1.0 if other else 0.0)
    alpha = (1.0 - policy.confidence) / looks
    return _Ctx(
        alpha_critical=alpha * (1.0 - share) / max(critical, 1),
        alpha_other=alpha * share / max(other, 1),
        beta=(1.0 - policy.power) / green_looks,
        policy=policy,
        green=green,
    )


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
    baseline: CohortStats,
    candidate: CohortStats,
    policy: Policy = DEFAULT_POLICY,
    *,
    generator_error_ms: float = 0.0,
) -> Verdict:
    """Judge candidate against baseline. Never raises on empty or odd cohorts: INCONCLUSIVE instead.
    Deterministic: the same cohorts and policy give the same verdict (no resampling, no seed).

    ``generator_error_ms``: how late the generator itself may have stamped any latency
    (``generator_band``); 0 judges the latencies as measured.
    """
    ctx = replace(_context(policy), band_ms=_checked_band(generator_error_ms))
    return _judge_all(baseline, candidate, policy, ctx)


def generator_band(generator: Mapping[str, Any] | None) -> float:
    """The error band (ms) to widen latency intervals by, from a results document's ``generator``
    block: its ``error_ms`` (or, in a document from before it, the larger lag p99) when the block
    says ``saturated``, else 0. Unsaturated, the lag is small and common to both interleaved
    cohorts, so it is already in the samples; widening by it would only cost power."""
    if not isinstance(generator, Mapping) or generator.get("saturated") is not True:
        return 0.0
    given = generator.get("error_ms")
    if _is_number(given):
        error = float(given)
    else:
        lags = [(generator.get(k) or {}).get("p99") for k in ("loop_lag_ms", "start_lag_ms")]
        error = max((float(v) for v in lags if _is_number(v)), default=0.0)
    return error if error > 0 and math.isfinite(error) else 0.0


def _is_number(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _checked_band(ms: float) -> float:
    if not (ms >= 0.0 and math.isfinite(ms)):
        raise ValueError(f"generator_error_ms must be a finite number >= 0, got {ms!r}")
    return float(ms)


def compare_sequential(
    baseline: CohortStats,
    candidate: CohortStats,
    policy: Policy = DEFAULT_POLICY,
    plan: SequentialPlan = SequentialPlan(),
    *,
    look: int,
    generator_error_ms: float = 0.0,
) -> Verdict:
    """Look number ``look`` (1-based, one call per look) of a sequential comparison: ``compare``
    with this look's share of the error budgets (see SequentialPlan), so the caller may look
    after every batch and stop at the first ``decided`` verdict."""
    if not 1 <= look <= plan.looks:
        raise ValueError(f"look must be in [1, {plan.looks}], got {look}")
    greens = plan.green_looks
    ctx = replace(_context(policy, plan.looks, len(greens), look in greens), band_ms=_checked_band(generator_error_ms))
    return _judge_all(baseline, candidate, policy, ctx)


def decided(verdict: Verdict) -> bool:
    """Whether a sequential comparison can stop: RED, or every critical metric decided or left
    undecided by the generator's own lag (more sessions from a saturated generator cannot help)."""
    return verdict.overall == "RED" or all(
        m.level != "INCONCLUSIVE" or m.generator_bound for m in verdict.metrics if m.critical
    )


def _judge_all(baseline: CohortStats, candidate: CohortStats, policy: Policy, ctx: _Ctx) -> Verdict:
    fired = mark_generator_bound(check_triggers(candidate, policy), ctx.band_ms)
    fired_c = _tag([t for t in fired if _evident(t, candidate, policy)], "candidate")
    unsure = _tag([t for t in fired if not _evident(t, candidate, policy)], "candidate (not evident)")
    fired_b = _tag(mark_generator_bound(check_triggers(baseline, policy), ctx.band_ms), "baseline")
    nb, nc = baseline.attempts, candidate.attempts

    results: list[MetricResult] = []
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
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
            res = _quantile_metric(rule, baseline, candidate, ctx, cache)
        else:
            res = _rate_metric(rule, baseline, candidate, ctx)
        results.append(res)

    overall, reasons = _overall(results, fired_c, fired_b, policy, (nb, nc), ctx.band_ms)
    reasons += [f"note: the candidate's {t['name']} ({t['reason']}) may be noise at {nc:,} sessions" for t in unsure]
    if baseline.flow != candidate.flow and any(r.source == "first_event_us" for r in policy.metrics):
        reasons.append(_FIRST_EVENT_NOTE.format(baseline.flow, candidate.flow))
    triggers = fired_c + fired_b + unsure
    return Verdict(overall, results, triggers, reasons, policy.confidence, nb, nc, ctx.band_ms)


def _generator_reasons(
    results: list[MetricResult], fired_c: list[dict[str, Any]], overall: Level, band_ms: float
) -> list[str]:
    """One line naming what the generator's own lag left undecided, and what to do about it."""
    names = [m.name for m in results if m.generator_bound]
    names += [f"trigger {t['name']}" for t in fired_c if t.get("generator_bound")]
    if not names:
        return []
    lead = "" if overall == "INCONCLUSIVE" else "note: "
    return [
        f"{lead}generator-bound: the generator's own lag (p99 {_band(band_ms)}) could explain "
        f"{', '.join(names)}; {GENERATOR_ADVICE}"
    ]


def _overall(
    results: list[MetricResult],
    fired_c: list[dict[str, Any]],
    fired_b: list[dict[str, Any]],
    policy: Policy,
    sizes: tuple[int, int],
    band_ms: float,
) -> tuple[Level, list[str]]:
    """RED > YELLOW > INCONCLUSIVE > GREEN, and the reasons in words."""
    nb, nc = sizes
    reasons: list[str] = []
    conf = f"{policy.confidence * 100:g} %"
    real = [t for t in fired_c if not t.get("generator_bound")]  # the others are the prober's, not the service's
    for t in real:
        reasons.append(f"rollback trigger {t['name']} on the candidate: {t['reason']}")
    crit_red = [m for m in results if m.critical and m.level == "RED"]
    for m in crit_red:
        reasons.append(f"{m.name} is RED: {m.reason}")
    other_red = [m for m in results if not m.critical and m.level == "RED"]
    yellow = [m for m in results if m.level == "YELLOW"]
    crit_inc = [m for m in results if m.critical and m.level == "INCONCLUSIVE" and not m.generator_bound]
    bound = any(m.critical and m.generator_bound for m in results) or len(real) < len(fired_c)
    if nb == 0 or nc == 0:
        reasons.append(f"nothing to compare: {'baseline' if nb == 0 else 'candidate'} has no sessions")
    if real or crit_red:
        overall: Level = "RED"
    elif other_red or yellow:
        overall = "YELLOW"
    elif crit_inc or bound or nb == 0 or nc == 0:
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
            f"every critical metric rules out a RED-size regression with {policy.power * 100:g} % confidence, "
            "no rollback trigger"
        )
    reasons += _generator_reasons(results, fired_c, overall, band_ms)
    for m in results:
        if m.level == "INCONCLUSIVE" and not m.critical and m.sessions_needed and overall != "INCONCLUSIVE":
            reasons.append(
                f"note: {m.name} (not critical) is undecided; ~{m.sessions_needed:,} sessions per cohort would decide"
            )
    for t in fired_b:
        reasons.append(f"note: the baseline fires {t['name']} too ({t['reason']})")
    return overall, reasons


overall_of = _overall  # the overall level and reasons of judged rows: for sources that judge rows their own way
