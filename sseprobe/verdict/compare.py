"""judge(baseline, candidate, policy) -> Verdict: GREEN / YELLOW / RED / INCONCLUSIVE with evidence.

Pure functions of two CohortStats and a Policy: no I/O, no clock, no randomness. The levels'
rule is in verdict.verdict (RED and YELLOW need the interval's low end past the YELLOW limit, GREEN its
high end below it), the interval maths in verdict.bounds, the budget of repeated looks in verdict.spending.

The intervals
-------------
* Latency quantiles: per cohort the exact distribution-free order-statistic interval of the
  quantile itself (ranks from Binomial(n, q)), combined on the log scale by MOVER (centred on
  the sample quantiles and on the intervals' midpoints, the wider kept: see _log_ratio). Values
  on a coarse clock (``clock_step_us``: every one on a 1 ms ... 1 s tick) widen each cohort's
  bounds by half a tick; a metric the tick alone keeps from GREEN is INCONCLUSIVE and
  ``clock_bound`` (a 100 ms clock cannot see +5 % of a 500 ms p95). Nothing else
  decides: an estimate from the whole distribution (shift and stretch of log latency) was
  ~0.73 as wide at lognormal sigma 0.6, but it moved +26 % where fast paths got 3x faster and the
  p95 moved 0.3 %, and no shape check at these sample sizes caught that reliably. The price:
  the p95's own information (no method that is right for every shape can use less, its
  interval is the efficient one), so a +15 % change is RED 90 % of the time from ~6,000 sessions
  per cohort at sigma 0.6, not 2,000. In time to first answer a session that timed out
  without an answer counts at +inf (``CENSORED``), so a regression into timeouts raises the p95.
* Rates, judged on the bad-event rate (see verdict.policy): exact Clopper-Pearson per cohort, MOVER.

Family-wise control
-------------------
The policy's 1 - confidence is split: critical metrics (the only ones that can make the verdict
RED) share all of it but NON_CRITICAL_SHARE; the non-critical ones share that slice and can make
the verdict YELLOW. Weighted Bonferroni within each group (a quantile QUANTILE_WEIGHT, a rate
1), one-sided: when no metric got more than its YELLOW limit worse, any YELLOW or RED is at most
1 - confidence likely. GREEN needs every
critical metric GREEN, so a single metric +5 % worse makes it GREEN at most 1 - power of the time.
Triggers are their own family (``trigger_alpha``): each fires on its own bound.

The generator's own error
-------------------------
A saturated generator stamps latencies late in bursts, so the intervals are too narrow. The
caller passes ``generator_error_ms`` (``generator_band``: its p99 lateness when saturated, else
0). Each latency change's interval is widened by that many ms (on the ratio scale, +- e /
baseline) and judged again: a metric whose level moves is INCONCLUSIVE and ``generator_bound``.
The rule does not change under the band: GREEN still needs the widened high end below the
YELLOW limit. Latency triggers whose bound would not fire lowered by e are generator-bound too.

Sequential
----------
``judge_sequential`` is the same judgement at one look of a run that stops at the first
``decided`` verdict, each statement at the per-look level of SequentialPlan (a Pocock boundary
over geometric looks), so the error rates above hold for the whole run however early it stops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

import numpy as np

from .bounds import (
    pooled,
    quantile_bounds,
    quantile_log_ratio_ci,
    quantile_unit_variance,
    rate_diff_ci,
    wilson_interval,
    z_of,
)
from .policy import (
    DEFAULT_POLICY,
    FiredTrigger,
    MetricRule,
    Policy,
    bad_count,
    censored_count,
    check_triggers,
    mark_generator_bound,
    trigger_alpha,
)
from .spending import SequentialPlan
from .stats import CohortStats, clock_step_us, histogram_arrays
from .verdict import EXIT_CODES, Level, MetricResult, Verdict, level_from

__all__ = [
    "judge",
    "judge_sequential",
    "decided",
    "generator_band",
    "Verdict",
    "MetricResult",
    "EXIT_CODES",
    "SequentialPlan",
    "GENERATOR_ADVICE",
]

_BIG = 10**9  # cap for sessions_needed searches
NON_CRITICAL_SHARE = 0.1  # of the family-wise alpha, shared by the metrics that can make the verdict only YELLOW
# A latency quantile's share of its group's alpha, in rates' shares. Rates are cheap to decide (a
# +1 pp change in a 1 % failure rate is 5 standard errors at 2,000 sessions) and a p95 is not
# (+15 % is ~2.3 at sigma 0.6), so the budget goes where it buys sessions: with weight 4 the p95
# gets half the critical budget (z 2.61 instead of 2.91 for an even split) and a rate a
# ninth less (z 3.12).
QUANTILE_WEIGHT = 4.0
Z_DECIDE = z_of(0.1)  # sessions_needed: with no change, decided this often (90 %)
GENERATOR_ADVICE = "run with fewer sessions in flight or more workers"


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
    alphas: Mapping[str, float]  # metric name -> its one-sided false-alarm level, at this look
    alpha_trigger: float  # the same for one trigger
    beta: float  # one-sided level of the upper bound that calls GREEN (1 - power), at this look
    policy: Policy
    band_ms: float = 0.0  # the generator's error band latency intervals are widened by (generator_band)

    def alpha(self, rule: MetricRule) -> float:
        return self.alphas[rule.name]


@dataclass(frozen=True)
class _Evidence:
    """A metric's change on the regression scale (positive = worse): est, lo at the false-alarm
    level, hi at the power level; change / ci for display."""

    method: str
    change: float
    ci: tuple[float, float]
    est: float
    lo: float
    hi: float


def _log_evidence(d: float, at_alpha: tuple[float, float], at_beta: tuple[float, float], sign: float) -> _Evidence:
    """Evidence from a log-ratio estimate with its bounds at both levels; sign -1 = higher is better."""
    ci = (math.expm1(at_alpha[0]), math.expm1(at_alpha[1]))
    if sign > 0:
        return _Evidence("order-statistic", math.expm1(d), ci, d, at_alpha[0], at_beta[1])
    return _Evidence("order-statistic", math.expm1(d), ci, -d, -at_alpha[1], -at_beta[0])


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


def _log_ratio(
    base: tuple[np.ndarray, np.ndarray, int],
    cand: tuple[np.ndarray, np.ndarray, int],
    q: float,
    alpha: float,
    interpolate: bool = False,
    ticks: tuple[float, float] = (0.0, 0.0),
) -> tuple[float, float, float, tuple[float, float, int], tuple[float, float, int]]:
    """(d, lower, upper) of log(candidate / baseline) of the q-quantile at one-sided ``alpha``,
    and each cohort's (estimate, lower-bound, n). Where a bound or estimate is infinite the
    box bounds are used, from each cohort's bounds at alpha / 2 (see quantile_log_ratio_ci).

    MOVER is centred twice, on the sample quantiles and on each interval's midpoint, and the
    wider of the two is kept: each fails where the other holds. Centred on the sample p95 it made
    +5 % RED in 0.5 % of runs where the p95 sits at a gap between two modes (the sample p95 jumps
    across it); centred on the midpoint it alarmed in 5 % of A/A runs on a 100 ms clock (ties put
    the estimate at one end of its interval). In smooth distributions the two nearly agree.

    ``ticks``: half the tick of each cohort's clock (µs, ``clock_step_us`` / 2): a value rounded to
    a tick is within half of one of the true value, so each cohort's bounds widen by it."""
    (bv, bc, xb), (cv, cc, xc) = base, cand
    eb, lb, ub, nb = quantile_bounds(bv, bc, q, alpha, interpolate=interpolate, censored=xb)
    ec, lc, uc, nc = quantile_bounds(cv, cc, q, alpha, interpolate=interpolate, censored=xc)
    if not all(math.isfinite(v) and v > 0 for v in (eb, lb, ub, ec, lc, uc)):
        eb, lb, ub, nb = quantile_bounds(bv, bc, q, alpha / 2, interpolate=interpolate, censored=xb)
        ec, lc, uc, nc = quantile_bounds(cv, cc, q, alpha / 2, interpolate=interpolate, censored=xc)
    (tb, tc) = ticks
    lb, ub = (lb - tb if lb > tb else 0.0), ub + tb
    lc, uc = (lc - tc if lc > tc else 0.0), uc + tc
    d, lo, hi = quantile_log_ratio_ci((eb, lb, ub), (ec, lc, uc))
    if all(math.isfinite(v) and v > 0 for v in (lb, ub, lc, uc)):  # and centred on each interval's midpoint
        _, lo_m, hi_m = quantile_log_ratio_ci((math.sqrt(lb * ub), lb, ub), (math.sqrt(lc * uc), lc, uc))
        lo, hi = min(lo, lo_m), max(hi, hi_m)
    return d, lo, hi, (eb, lb, nb), (ec, lc, nc)


def _quantile_metric(
    rule: MetricRule, b: CohortStats, c: CohortStats, ctx: _Ctx, cache: dict[int, tuple[np.ndarray, np.ndarray]]
) -> MetricResult:
    q = float(rule.percentile) / 100.0  # type: ignore[arg-type]
    res = MetricResult(rule.name, rule.kind, rule.critical, "INCONCLUSIVE", "", method="order-statistic")
    base, cand = _arrays(b, rule.source, cache), _arrays(c, rule.source, cache)
    if base is None or cand is None:
        res.reason = f"no {rule.source} histogram"
        return res
    xb, xc = censored_count(b, rule.source), censored_count(c, rule.source)
    ticks = (clock_step_us(b.histograms[rule.source]) / 2.0, clock_step_us(c.histograms[rule.source]) / 2.0)
    a = ctx.alpha(rule)
    d, lo_a, hi_a, (eb, _, nb), (ec, _, nc) = _log_ratio((*base, xb), (*cand, xc), q, a, ticks=ticks)
    res.n_baseline, res.n_candidate = nb, nc
    res.baseline = eb / 1000.0 if nb else None
    res.candidate = ec / 1000.0 if nc else None
    if int(base[1].sum()) == 0 or int(cand[1].sum()) == 0:
        who = "baseline" if int(base[1].sum()) == 0 else "candidate"
        res.reason = f"no {rule.source[:-3]} samples in the {who}"
        return res
    sign = -1.0 if rule.higher_is_better else 1.0
    if rule.higher_is_better:
        y, r = -math.log1p(-rule.yellow), -math.log1p(-rule.red)
    else:
        y, r = math.log1p(rule.yellow), math.log1p(rule.red)
    _, lo_b, hi_b, _, _ = _log_ratio((*base, xb), (*cand, xc), q, ctx.beta, interpolate=True, ticks=ticks)
    ev = _log_evidence(d, (lo_a, hi_a), (lo_b, hi_b), sign)
    green = math.isfinite(hi_a - lo_a)  # a tail too thin to bound at the alarm level is never GREEN
    level, code = level_from(ev.est, ev.lo, ev.hi if green else math.inf, y, r)
    if ctx.band_ms > 0 and math.isfinite(eb) and eb > 0:
        k = ctx.band_ms * 1000.0 / eb  # the band as a share of the baseline quantile (both in µs)
        wide = _widened(ev, k, sign)
        w_level, _ = level_from(wide.est, wide.lo, wide.hi if green else math.inf, y, r)
        if w_level != level:
            res.generator_bound = True
            code = "generator_alarm" if level in ("YELLOW", "RED") else "generator_green"
            ev, level = wide, "INCONCLUSIVE"
    res.level = level
    res.change = ev.change
    res.ci = (ev.ci[0], ev.ci[1] if math.isfinite(ev.ci[1]) else None)
    if level == "INCONCLUSIVE" and _clock_floor(ticks, eb, ec) >= y:  # nor a clock this coarse
        res.clock_bound, code = True, "clock"
    if level == "INCONCLUSIVE" and not (res.generator_bound or res.clock_bound):  # more sessions cannot undo the lag
        (bv, bc), (cv, cc) = base, cand
        unit = quantile_unit_variance(*pooled(bv, bc, cv, cc), q, a)
        if math.isfinite(hi_a - lo_a):  # the exact interval's own width: wider where the density dips
            unit = max(unit, ((hi_a - lo_a) / (2.0 * z_of(a))) ** 2 / (1.0 / nb + 1.0 / nc))
        need = _quantile_needed(unit, ev.est if math.isfinite(ev.est) else 0.0, y, z_of(a), z_of(ctx.beta))
        ranks = math.log(min(a, ctx.beta)) / math.log(max(q, 1.0 - q))  # q^n <= alpha: tail bounded
        res.sessions_needed = _needed(max(need, ranks), nb, nc, ctx)
    res.reason = _reason(code, rule, res, _pct, rule.yellow, rule.red, ctx)
    return res


def _quantile_needed(unit: float, est: float, y: float, z_alarm: float, z_green: float) -> float:
    """Equal cohort size that decides ~90 % of the time if the change is what was seen (planning:
    conditional on the estimate). Past the YELLOW limit: showing it past (the alarm's bound);
    below it: ruling it out (GREEN's bound), the distance to the limit measured from the estimate
    or from no change, whichever is nearer the limit. The demo's +8 % p95 (sigma 0.3) then asks
    ~16,000 sessions (3 points past the limit, shown at 0.45 %), where planning for no change
    said ~1,600, and a run of that size was undecided again."""
    if est > y:
        return 2.0 * unit * ((z_alarm + Z_DECIDE) / (est - y)) ** 2
    gap = y - max(est, 0.0)
    return 2.0 * unit * ((z_green + Z_DECIDE) / gap) ** 2 if gap > 0 else float(_BIG)


def _clock_floor(ticks: tuple[float, float], eb: float, ec: float) -> float:
    """How wide the clock alone keeps the interval's upper arm, however many sessions: MOVER of
    half a tick on each cohort's quantile (0 on a fine clock)."""
    if not (ticks[0] or ticks[1]) or not (eb > 0 and ec > 0 and math.isfinite(eb + ec)):
        return 0.0
    return math.hypot(math.log1p(ticks[0] / eb), math.log1p(ticks[1] / ec))


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
    level, code = level_from(d, lo, hi_power, y, r)
    res.level = level
    if level == "INCONCLUSIVE":
        res.sessions_needed = _needed(_rate_needed((xb + xc) / (nb + nc), rule, ctx), nb, nc, ctx)
    res.reason = _reason(code, rule, res, _pp, y, r, ctx)
    return res


def _rate_needed(f: float, rule: MetricRule, ctx: _Ctx) -> int:
    """Smallest equal cohort size (to ~2 %) at which no change is decided GREEN ~90 % of the time.

    Planning only: Wilson half-widths at the pooled rate over a log grid of sizes, one numpy pass.
    """
    y = rule.yellow * max(f, rule.rate_floor)
    n = np.unique(np.ceil(np.logspace(0.0, math.log10(_BIG), 1200)))
    lo, hi = wilson_interval(f * n, n, z_of(ctx.beta) + Z_DECIDE)
    half = np.hypot(hi - f, f - lo)  # MOVER half-width with equal cohorts, either side
    ok = np.flatnonzero(half < y)
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
        return f"{seen}, past the RED limit {rlim}; even the interval's low end is past the YELLOW limit {ylim}"
    if code == "yellow":
        return f"{seen}: the interval's low end is past the YELLOW limit {ylim}; the estimate within RED {rlim}"
    if code == "small_real":
        return f"{seen}: a real change, but {ylim} or worse is ruled out with {power} confidence"
    if code == "excluded":
        return f"{seen}: {ylim} or worse is ruled out with {power} confidence"
    if code == "no_estimate":
        return "no estimate"
    if code == "clock":
        return f"{seen}: clock-bound: the clock's tick could hide a {ylim} change (never GREEN on this clock)"
    if code.startswith("generator_"):
        lag = f"the generator's own lag (p99 {_band(ctx.band_ms)})"
        could = "could explain this change" if code == "generator_alarm" else f"could hide a {ylim} change"
        return f"{seen}: generator-bound: {lag} {could}; {GENERATOR_ADVICE}"
    n = res.sessions_needed
    smaller = min(res.n_baseline, res.n_candidate)
    need = f"~{n:,} sessions per cohort would decide" if n and n < _BIG else "far more sessions needed"
    if code == "real":
        return f"{seen}: a real regression, but at {smaller:,} sessions not yet shown past {ylim}; {need}"
    return f"{seen}, but at {smaller:,} sessions {ylim} cannot be ruled out with {power} confidence; {need}"


# --- the comparison ---------------------------------------------------------------------------


def _context(policy: Policy, plan: SequentialPlan | None = None, look: int = 1) -> _Ctx:
    """Split the family-wise alpha: critical metrics share all of it but NON_CRITICAL_SHARE,
    which the others share (so adding a non-critical metric never widens a critical interval).
    Within a group a latency quantile weighs QUANTILE_WEIGHT rates. With a plan, each level
    becomes that look's share (SequentialPlan's boundary)."""
    critical = [m for m in policy.metrics if m.critical]
    other = [m for m in policy.metrics if not m.critical]
    share = NON_CRITICAL_SHARE if critical and other else (1.0 if other else 0.0)
    alpha = 1.0 - policy.confidence
    alphas: dict[str, float] = {}
    for group, budget in ((critical, alpha * (1.0 - share)), (other, alpha * share)):
        weights = {m.name: QUANTILE_WEIGHT if m.kind == "quantile" else 1.0 for m in group}
        total = sum(weights.values())
        alphas.update({name: budget * w / total for name, w in weights.items()})
    trigger, beta = trigger_alpha(policy), 1.0 - policy.power
    if plan is not None:
        alphas = {name: plan.level(a, look) for name, a in alphas.items()}
        trigger, beta = plan.level(trigger, look), plan.level(beta, look)
    return _Ctx(alphas, trigger, beta, policy)


# Time to the first event of two different flows times each flow's own bookkeeping (legacy's
# agent_status on the POST, ADK's state event before the model runs): not compared, only shown
# in each cohort's summary. Between two runs of one flow it is compared (never critical).
_FIRST_EVENT_NOTE = "note: first events are not compared between {} and {}: each sends its own bookkeeping first"


def judge(
    baseline: CohortStats,
    candidate: CohortStats,
    policy: Policy = DEFAULT_POLICY,
    *,
    generator_error_ms: float = 0.0,
) -> Verdict:
    """Judge candidate against baseline (one look, fixed size). Never raises on empty or odd
    cohorts: INCONCLUSIVE instead.

    ``generator_error_ms``: how late the generator itself may have stamped any latency
    (``generator_band``); 0 judges the latencies as measured.
    """
    ctx = replace(_context(policy), band_ms=_checked_band(generator_error_ms))
    return _judge_all(baseline, candidate, policy, ctx)


def judge_sequential(
    baseline: CohortStats,
    candidate: CohortStats,
    policy: Policy = DEFAULT_POLICY,
    plan: SequentialPlan = SequentialPlan(),
    *,
    look: int,
    generator_error_ms: float = 0.0,
) -> Verdict:
    """Look number ``look`` (1-based, at ``plan.sizes[look - 1]`` sessions per cohort) of a
    sequential comparison: ``judge`` at this look's levels (SequentialPlan), so the caller may
    look at every size of the plan and stop at the first ``decided`` verdict."""
    if not 1 <= look <= plan.looks:
        raise ValueError(f"look must be in [1, {plan.looks}], got {look}")
    ctx = replace(_context(policy, plan, look), band_ms=_checked_band(generator_error_ms))
    return _judge_all(baseline, candidate, policy, ctx)


def decided(verdict: Verdict) -> bool:
    """Whether a sequential comparison can stop: RED, or every critical metric decided or left
    undecided by the generator's own lag (more sessions cannot help). A clock-bound metric is not
    decided: its tick rules out GREEN, yet more sessions can still show a regression past it."""
    return verdict.overall == "RED" or all(
        m.level != "INCONCLUSIVE" or m.generator_bound for m in verdict.metrics if m.critical
    )


def generator_band(generator: Mapping[str, object] | None) -> float:
    """The error band (ms) to widen latency intervals by, from a results document's ``generator``
    block: its ``error_ms`` (or, in a document from before it, the larger lag p99) when the block
    says ``saturated``, else 0. Unsaturated, the lag is small and common to both interleaved
    cohorts, so it is already in the samples; widening by it would only cost power.

    ``generator`` is a ``GeneratorDoc`` (schema.py), typed as any mapping because a block read from a
    file may be of an earlier version or edited by hand: every field it reads is checked here."""
    if not isinstance(generator, Mapping) or generator.get("saturated") is not True:
        return 0.0
    given = generator.get("error_ms")
    if _is_number(given):
        error = float(given)
    else:
        lags = [_p99(generator.get(k)) for k in ("loop_lag_ms", "start_lag_ms")]
        error = max((float(v) for v in lags if _is_number(v)), default=0.0)
    return error if error > 0 and math.isfinite(error) else 0.0


def _p99(summary: object) -> object:
    return summary.get("p99") if isinstance(summary, Mapping) else None


def _is_number(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _checked_band(ms: float) -> float:
    if not (ms >= 0.0 and math.isfinite(ms)):
        raise ValueError(f"generator_error_ms must be a finite number >= 0, got {ms!r}")
    return float(ms)


def _judge_all(baseline: CohortStats, candidate: CohortStats, policy: Policy, ctx: _Ctx) -> Verdict:
    def fired(stats: CohortStats, cohort: str) -> list[FiredTrigger]:
        found = mark_generator_bound(check_triggers(stats, policy, ctx.alpha_trigger), ctx.band_ms)
        return [replace(t, cohort=cohort) for t in found]

    fired_c, fired_b = fired(candidate, "candidate"), fired(baseline, "baseline")
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
                f"too few sessions ({nb:,} baseline, {nc:,} candidate; policy minimum {policy.min_sessions:,})",
                n_baseline=nb,
                n_candidate=nc,
                sessions_needed=policy.min_sessions,
            )
        elif rule.kind == "quantile":
            res = _quantile_metric(rule, baseline, candidate, ctx, cache)
        else:
            res = _rate_metric(rule, baseline, candidate, ctx)
        results.append(res)

    overall, reasons = _overall(results, fired_c, fired_b, policy, (nb, nc), ctx.band_ms)
    if baseline.flow != candidate.flow and any(r.source == "first_event_us" for r in policy.metrics):
        reasons.append(_FIRST_EVENT_NOTE.format(baseline.flow, candidate.flow))
    return Verdict(overall, results, fired_c + fired_b, reasons, policy.confidence, nb, nc, ctx.band_ms)


def _generator_reasons(
    results: list[MetricResult], fired_c: list[FiredTrigger], overall: Level, band_ms: float
) -> list[str]:
    """One line naming what the generator's own lag left undecided, and what to do about it."""
    names = [m.name for m in results if m.generator_bound]
    names += [f"trigger {t.name}" for t in fired_c if t.generator_bound]
    if not names:
        return []
    lead = "" if overall == "INCONCLUSIVE" else "note: "
    return [
        f"{lead}generator-bound: the generator's own lag (p99 {_band(band_ms)}) could explain "
        f"{', '.join(names)}; {GENERATOR_ADVICE}"
    ]


def _overall(
    results: list[MetricResult],
    fired_c: list[FiredTrigger],
    fired_b: list[FiredTrigger],
    policy: Policy,
    sizes: tuple[int, int],
    band_ms: float,
) -> tuple[Level, list[str]]:
    """RED > YELLOW > INCONCLUSIVE > GREEN, and the reasons in words."""
    nb, nc = sizes
    reasons: list[str] = []
    conf = f"{policy.confidence * 100:g} %"
    real = [t for t in fired_c if not t.generator_bound]  # the others are the prober's, not the service's
    for t in real:
        reasons.append(f"rollback trigger {t.name} on the candidate: {t.reason}")
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
            f"equal to baseline: every critical metric rules out a change past its YELLOW limit with "
            f"{policy.power * 100:g} % confidence, none shown past it with {conf} family-wise confidence, "
            "no rollback trigger"
        )
    reasons += _generator_reasons(results, fired_c, overall, band_ms)
    for m in results:
        if m.level == "INCONCLUSIVE" and not m.critical and m.sessions_needed and overall != "INCONCLUSIVE":
            reasons.append(
                f"note: {m.name} (not critical) is undecided; ~{m.sessions_needed:,} sessions per cohort would decide"
            )
    for t in fired_b:
        reasons.append(f"note: the baseline fires {t.name} too ({t.reason})")
    return overall, reasons


overall_of = _overall  # the overall level and reasons of judged rows: for sources that judge rows their own way
