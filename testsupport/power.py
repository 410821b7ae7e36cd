"""Simulated cohorts for the statistics' tests: four TTFE shapes and realistic failures, written
straight into real HdrHistograms (``grow``, ``cohort``), and fixed-size / sequential trial loops
through ``judge`` and ``Looks``.

  python -m bench.power --trials 100     # its old table (A/A and +15 % at 500 / 2,000 / 8,000)

The verdict's contract (every shape, shape changes, triggers, --until-decided) is measured by
``python -m bench.contract`` (testsupport/contract.py; docs/statistics.md), which imports ``fill`` from here.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from sseprobe.verdict.bounds import clopper_pearson
from sseprobe.verdict.compare import SequentialPlan, decided, judge
from sseprobe.verdict.policy import DEFAULT_POLICY, Policy
from sseprobe.verdict.sequential import Looks, UntilDecided
from sseprobe.verdict.stats import CohortStats

MEDIAN_MS = 180.0
FAIL = (0.001, 0.003, 0.003, 0.003)  # connect_error, 5xx, timeout, stream_error


def _lognormal(sigma: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    return lambda rng, n: MEDIAN_MS * np.exp(sigma * rng.standard_normal(n))


def _bimodal(rng: np.random.Generator, n: int) -> np.ndarray:
    return _lognormal(0.3)(rng, n) * np.where(rng.random(n) < 0.05, 4.0, 1.0)


def _quantized(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.maximum(np.round(_lognormal(0.3)(rng, n) / 10.0), 1.0) * 10.0


# name -> TTFE sampler (ms). Regressions scale the sample before quantizing (a slower service
# still reports on its 10 ms clock).
DISTRIBUTIONS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "lognormal sigma 0.3": _lognormal(0.3),
    "lognormal sigma 0.6": _lognormal(0.6),
    "bimodal, 5 % 4x slower": _bimodal,
    "10 ms-quantized": _quantized,
}


def _ttfe(rng: np.random.Generator, dist: str, n: int, scale: float) -> np.ndarray:
    if dist == "10 ms-quantized":
        return np.maximum(np.round(_lognormal(0.3)(rng, n) * scale / 10.0), 1.0) * 10.0
    return DISTRIBUTIONS[dist](rng, n) * scale


def fill(h: HdrHistogram, us: np.ndarray) -> None:
    """Record many µs values at once (HDR's bucket arithmetic in numpy, counts added in place)."""
    us = np.clip(np.rint(us).astype(np.int64), 1, h.highest_trackable_value)
    bucket = np.frexp((us | h.sub_bucket_mask).astype(np.float64))[1] - (h.sub_bucket_half_count_magnitude + 1)
    idx = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + (us >> bucket) - h.sub_bucket_half_count
    counts = np.ctypeslib.as_array(h.counts)
    counts[: h.counts_len] += np.bincount(idx, minlength=h.counts_len)[: h.counts_len].astype(counts.dtype)
    h.total_count += len(us)
    if len(us):
        h.min_value = min(h.min_value, int(us.min()))
        h.max_value = max(h.max_value, int(us.max()))


def grow(stats: CohortStats, rng: np.random.Generator, dist: str, n: int, scale: float = 1.0) -> CohortStats:
    """Add n simulated sessions to a cohort (outcomes, TTFE, completion time); returns it."""
    ok, cerr, h5, to, se = (int(x) for x in rng.multinomial(n, [1 - sum(FAIL), *FAIL]))
    stats.sessions += n
    stats.outcomes.update({"ok": ok, "connect_error": cerr, "http_error": h5, "timeout": to, "stream_error": se})
    stats.connected += ok + to + se
    stats.http_status.update({"200": ok + to + se, "502": h5})
    fill(stats.histograms["ttfe_us"], 1000.0 * _ttfe(rng, dist, ok + se, scale))
    fill(stats.histograms["completion_us"], 1000.0 * 2000.0 * np.exp(0.3 * rng.standard_normal(ok)))
    return stats


def cohort(rng: np.random.Generator, dist: str, n: int, scale: float = 1.0) -> CohortStats:
    return grow(CohortStats(flow="sim"), rng, dist, n, scale)


@dataclass
class Fixed:
    """Fixed-size trials: overall levels, ttfe_p95 levels, ttfe_p95 sessions_needed."""

    overall: Counter[str]
    p95: Counter[str]
    needed: list[int]


def fixed_trials(
    dist: str, n: int, trials: int, seed: int, scale: float = 1.0, policy: Policy = DEFAULT_POLICY
) -> Fixed:
    rng = np.random.default_rng(seed)
    out = Fixed(Counter(), Counter(), [])
    for _ in range(trials):
        v = judge(cohort(rng, dist, n), cohort(rng, dist, n, scale), policy)
        out.overall[v.overall] += 1
        m = next(m for m in v.metrics if m.name == "ttfe_p95_ms")
        out.p95[m.level] += 1
        if m.sessions_needed:
            out.needed.append(m.sessions_needed)
    return out


def sequential_trial(
    rng: np.random.Generator, dist: str, scale: float, plan: SequentialPlan, policy: Policy = DEFAULT_POLICY
) -> tuple[int, str]:
    """Grow both cohorts by plan.look_every and look each time, until decided or the cap:
    (sessions per cohort used, overall level at the stop)."""
    b, c = CohortStats(flow="sim"), CohortStats(flow="sim")
    settings = UntilDecided(plan.look_every, plan.max_sessions)
    looks = Looks(settings, policy)  # what `compare --until-decided` looks with, batch by batch
    n = 0
    for look in range(1, plan.looks + 1):
        batch = settings.batch(look)
        n += batch
        grow(b, rng, dist, batch)
        grow(c, rng, dist, batch, scale)
        v = looks.look(b, c, 0.0)
        if decided(v):
            return n, v.overall
    return n, "INCONCLUSIVE"


def sequential_trials(
    dist: str, trials: int, seed: int, scale: float = 1.0, policy: Policy = DEFAULT_POLICY
) -> tuple[list[int], Counter[str]]:
    rng = np.random.default_rng(seed)
    plan = SequentialPlan()
    runs = [sequential_trial(rng, dist, scale, plan, policy) for _ in range(trials)]
    return [n for n, _ in runs], Counter(level for _, level in runs)


def rate(k: int, n: int) -> str:
    """k/n as a percentage with its 95 % Clopper-Pearson interval."""
    lo, hi = clopper_pearson(k, n, 0.025)
    return f"{100 * k / n:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def _share(c: Counter[str], *levels: str) -> tuple[int, int]:
    return sum(c[x] for x in levels), sum(c.values())


def table(trials: int, seq_trials: int) -> list[str]:
    """The README's markdown table, one row per distribution and size."""
    rows = [
        "| TTFE distribution | sessions per cohort | A/A GREEN | A/A false alarm (YELLOW/RED) "
        "| 15 % slower: RED | 15 % slower: GREEN | A/A at the advised sessions_needed: p95 decided |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, dist in enumerate(DISTRIBUTIONS):
        for j, n in enumerate((500, 2000, 8000)):
            seed = 1000 + 10 * i + j
            aa = fixed_trials(dist, n, trials, seed)
            reg = fixed_trials(dist, n, trials, seed + 500, scale=1.15)
            cells = [
                rate(*_share(aa.overall, "GREEN")),
                rate(*_share(aa.overall, "YELLOW", "RED")),
                rate(*_share(reg.overall, "RED")),
                rate(*_share(reg.overall, "GREEN")),
                _at_needed(dist, aa, trials, seed + 900),
            ]
            rows.append(f"| {dist} | {n:,} | " + " | ".join(cells) + " |")
    rows += ["", _sequential_table(seq_trials)]
    return rows


def _at_needed(dist: str, aa: Fixed, trials: int, seed: int) -> str:
    """Run A/A at the median sessions_needed the undecided trials advised: how often p95 decides."""
    if not aa.needed:
        return "(decided)"
    n = int(np.median(aa.needed))
    at = fixed_trials(dist, n, trials, seed)
    return f"{n:,}: " + rate(*_share(at.p95, "GREEN", "YELLOW", "RED"))


def _sequential_table(trials: int, only: str | None = None) -> str:
    plan = SequentialPlan()
    lines = [
        f"Sequential (`judge_sequential`, looks doubling from {plan.look_every} sessions up to {plan.max_sessions:,}; "
        f"{trials} runs each):",
        "",
        "| TTFE distribution | A/A: sessions per cohort, quartiles (p90) | A/A false alarm | A/A undecided at the cap "
        "| 15 % slower: sessions per cohort, quartiles (p90) | 15 % slower: RED |",
        "|---|---|---|---|---|---|",
    ]
    for i, dist in enumerate(DISTRIBUTIONS):
        if only is not None and dist != only:
            continue
        n_aa, lv_aa = sequential_trials(dist, trials, 7000 + i)
        n_reg, lv_reg = sequential_trials(dist, trials, 7500 + i, scale=1.15)
        lines.append(
            f"| {dist} | {_quartiles(n_aa)} | {rate(*_share(lv_aa, 'YELLOW', 'RED'))} "
            f"| {rate(*_share(lv_aa, 'INCONCLUSIVE'))} | {_quartiles(n_reg)} | {rate(*_share(lv_reg, 'RED'))} |"
        )
    return "\n".join(lines)


def _quartiles(used: list[int]) -> str:
    """'p25 / median / p75 (p90)' of the sessions per cohort the runs used."""
    q1, q2, q3, p90 = np.percentile(used, [25, 50, 75, 90])
    return f"{q1:,.0f} / **{q2:,.0f}** / {q3:,.0f} ({p90:,.0f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.power", description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=400, help="fixed-size comparisons per cell (default 400)")
    ap.add_argument("--seq-trials", type=int, default=100, help="sequential runs per row (default 100)")
    ap.add_argument("--sequential-only", action="store_true", help="only the sequential (--until-decided) table")
    ap.add_argument("--dist", choices=list(DISTRIBUTIONS), default=None, help="with --sequential-only: one shape")
    args = ap.parse_args(argv)
    if args.trials < 1 or args.seq_trials < 1:
        ap.error("trial counts must be >= 1")
    if args.sequential_only:
        print(_sequential_table(args.seq_trials, args.dist))
        return 0
    print("\n".join(table(args.trials, args.seq_trials)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
