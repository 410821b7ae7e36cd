"""``python -m bench.contract``: the verdict's contract, measured (docs/statistics.md quotes it).
The simulation lives here, in testsupport/, because tests/test_compare.py asserts its CI-sized cells.

  python -m bench.contract --quick      # 100 fixed / 40 sequential trials a cell (~5 CPU minutes)
  python -m bench.contract              # 400 / 100 (about 4x longer)

Seeded: the same command prints the same table. Each simulated pair of cohorts goes through
``sseprobe.judge`` (fixed size) or ``Looks`` (``--until-decided``'s own bookkeeping), the default
policy, time to first answer from one of seven shapes and every failure at a realistic rate
(bench.power's ``grow``). Every change is defined on the distribution's quantile scale (a
session at quantile u of the baseline sits at quantile u of the candidate), so the true change
of each percentile is known exactly:

* ``A/A``: no change. ``+5 %`` / ``+15 %``: every session 5 / 15 % slower.
* ``p95 tail +15 %``: sessions above the p90 slowed by a factor ramping from 1 at the p90 to
  1.15 at the p95 and beyond: p95 and p99 +15 %, p50 unchanged.
* harmless shape changes, p95 unchanged: ``fastest 10 % 3x faster``, ``fastest 30 % 1.5x
  faster``, ``same p95, narrower`` (log distance to the p95 times 0.7: p50 +17 % at sigma 0.6),
  ``same p95, wider`` (times 1.3: p99 +14 %, non-critical, may be YELLOW, never RED).
* ``drift``: A/A where every 100 sessions of a cohort share a factor exp(0.1 N(0,1)).
* ``into timeouts``: the slowest 8 % of the candidate's sessions time out instead of answering.

P(RED), P(GREEN), P(alarm = YELLOW or RED) with Wilson 95 % intervals.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Callable

import numpy as np

from sseprobe.verdict.compare import decided, judge
from sseprobe.verdict.policy import DEFAULT_POLICY, FiredTrigger, check_triggers
from sseprobe.verdict.sequential import Looks, UntilDecided
from sseprobe.verdict.stats import CohortStats
from testsupport.power import FAIL, fill

MEDIAN_MS = 180.0
SQRT2 = math.sqrt(2.0)


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf and scipy is not a dependency."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.asarray(s * (1.0 - poly * np.exp(-a * a)))


def _phi(z: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + _erf(z / SQRT2)))


# name -> sampler returning (ms, quantile u of each value in the baseline distribution), and the
# rounding of the clock (0: none). Shapes transform the continuous value; the clock rounds last.
Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _lognormal(sigma: float) -> Sampler:
    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        z = rng.standard_normal(n)
        return MEDIAN_MS * np.exp(sigma * z), _phi(z)

    return draw


def _slow_mode(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lognormal sigma 0.3, 5 % of sessions in a mode 4x slower (its p95 sits at the gap)."""
    x = MEDIAN_MS * np.exp(0.3 * rng.standard_normal(n)) * np.where(rng.random(n) < 0.05, 4.0, 1.0)
    lx = np.log(x / MEDIAN_MS) / 0.3
    return x, 0.95 * _phi(lx) + 0.05 * _phi(lx - math.log(4.0) / 0.3)


def _pareto(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pareto, shape 1.5 (infinite variance), median 180 ms."""
    u = rng.random(n)
    return MEDIAN_MS / 2 ** (1 / 1.5) * (1.0 - u) ** (-1 / 1.5), u


DISTS: dict[str, tuple[Sampler, float]] = {
    "lognormal 0.3": (_lognormal(0.3), 0.0),
    "lognormal 0.6": (_lognormal(0.6), 0.0),
    "lognormal 1.0": (_lognormal(1.0), 0.0),
    "5 % slow mode": (_slow_mode, 0.0),
    "0.6, 10 ms clock": (_lognormal(0.6), 10.0),
    "0.6, 100 ms clock": (_lognormal(0.6), 100.0),
    "Pareto 1.5": (_pareto, 0.0),
}


def _quantile(dist: str, u: float) -> float:
    """The baseline's u-quantile (ms), by a large seeded sample (exact enough for a scale point)."""
    x, uu = DISTS[dist][0](np.random.default_rng(99), 400_000)
    return float(np.quantile(x, u))


def _shape(name: str, dist: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Monotone change of each value given its quantile u: the candidate's sessions."""
    if name in ("A/A", "drift"):
        return lambda x, u: x
    if name.startswith("+"):
        f = 1.0 + float(name[1:].split()[0]) / 100.0
        return lambda x, u: x * f
    if name == "p95 tail +15 %":
        return lambda x, u: x * (1.0 + 0.15 * np.clip((u - 0.90) / 0.05, 0.0, 1.0))
    if name == "fastest 10 % 3x faster":
        return lambda x, u: np.where(u < 0.10, x / 3.0, x)
    if name == "fastest 30 % 1.5x faster":
        return lambda x, u: np.where(u < 0.30, x / 1.5, x)
    if name.startswith("same p95"):
        k = 0.7 if "narrower" in name else 1.3
        p95 = _quantile(dist, 0.95)
        return lambda x, u: p95 * (x / p95) ** k
    if name == "into timeouts":
        return lambda x, u: np.where(u > 0.92, np.nan, x)
    raise ValueError(name)


FIXED_CASES = (
    "A/A",
    "+5 %",
    "+15 %",
    "p95 tail +15 %",
    "fastest 10 % 3x faster",
    "fastest 30 % 1.5x faster",
    "same p95, narrower",
    "same p95, wider",
    "drift",
    "into timeouts",
)
SEQ_CASES = ("A/A", "+5 %", "+15 %", "p95 tail +15 %", "fastest 10 % 3x faster", "same p95, narrower")


def grow(
    stats: CohortStats, rng: np.random.Generator, dist: str, n: int, change: Callable[..., np.ndarray], drift: bool
) -> None:
    """Add n sessions: failures at bench.power's rates, TTFE from the shape (nan = timed out)."""
    draw, clock = DISTS[dist]
    ok, cerr, h5, to, se = (int(x) for x in rng.multinomial(n, [1 - sum(FAIL), *FAIL]))
    x, u = draw(rng, ok + se)
    x = change(x, u)
    if drift:  # blocks of 100 sessions share a factor
        x = x * np.exp(0.1 * rng.standard_normal(len(x) // 100 + 1))[np.arange(len(x)) // 100]
    lost = int(np.isnan(x).sum())
    x = x[~np.isnan(x)]
    if clock:
        x = np.maximum(np.round(x / clock), 1.0) * clock
    stats.sessions += n
    stats.outcomes.update({"ok": ok - lost, "connect_error": cerr, "http_error": h5, "timeout": to + lost})
    stats.outcomes["stream_error"] += se
    stats.connected += ok + to + se
    stats.http_status.update({"200": ok + to + se, "502": h5})
    fill(stats.histograms["ttfe_us"], 1000.0 * x)
    fill(stats.histograms["completion_us"], 1000.0 * 2000.0 * np.exp(0.3 * rng.standard_normal(ok - lost)))


def fixed(dist: str, case: str, n: int, trials: int, seed: int) -> Counter[str]:
    rng = np.random.default_rng(seed)
    same, change = _shape("A/A", dist), _shape(case, dist)
    out: Counter[str] = Counter()
    for _ in range(trials):
        b, c = CohortStats(flow="sim"), CohortStats(flow="sim")
        grow(b, rng, dist, n, same, case == "drift")
        grow(c, rng, dist, n, change, case == "drift")
        out[judge(b, c).overall] += 1
    return out


def sequential(dist: str, case: str, trials: int, seed: int) -> tuple[Counter[str], list[int]]:
    rng = np.random.default_rng(seed)
    same, change = _shape("A/A", dist), _shape(case, dist)
    settings = UntilDecided()
    levels: Counter[str] = Counter()
    used: list[int] = []
    for _ in range(trials):
        b, c = CohortStats(flow="sim"), CohortStats(flow="sim")
        looks = Looks(settings, DEFAULT_POLICY)
        level, n = "INCONCLUSIVE", 0
        for look in range(1, settings.plan.looks + 1):
            k = settings.batch(look)
            n += k
            grow(b, rng, dist, k, same, False)
            grow(c, rng, dist, k, change, False)
            v = looks.look(b, c)
            if decided(v):
                level = v.overall
                break
        levels[level] += 1
        used.append(n)
    return levels, used


def wilson(k: int, n: int) -> str:
    """k/n in per cent with its Wilson 95 % interval."""
    z = 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{100 * p:.1f} [{100 * max(centre - half, 0):.1f}, {100 * min(centre + half, 1):.1f}]"


def _cells(c: Counter[str]) -> list[str]:
    n = sum(c.values())
    return [wilson(c["RED"], n), wilson(c["GREEN"], n), wilson(c["RED"] + c["YELLOW"], n)]


def fixed_table(trials: int, sizes: tuple[int, ...]) -> list[str]:
    rows = [
        f"Fixed size ({trials} trials a cell; per cent, Wilson 95 %):",
        "",
        "| shape | change | sessions/cohort | P(RED) | P(GREEN) | P(alarm) |",
        "|---|---|---|---|---|---|",
    ]
    for i, dist in enumerate(DISTS):
        for j, case in enumerate(FIXED_CASES):
            for k, n in enumerate(sizes):
                c = fixed(dist, case, n, trials, 10_000 + 100 * i + 10 * j + k)
                rows.append(f"| {dist} | {case} | {n:,} | " + " | ".join(_cells(c)) + " |")
                print(rows[-1], flush=True)
    return rows


def sequential_table(trials: int) -> list[str]:
    rows = [
        f"`--until-decided` (looks at {', '.join(f'{n:,}' for n in UntilDecided().plan.sizes)} per cohort; "
        f"{trials} runs a cell):",
        "",
        "| shape | change | P(RED) | P(GREEN) | P(alarm) | undecided at 20,000 | sessions/cohort: median (p90) |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, dist in enumerate(DISTS):
        for j, case in enumerate(SEQ_CASES):
            c, used = sequential(dist, case, trials, 50_000 + 100 * i + 10 * j)
            med, p90 = np.percentile(used, [50, 90])
            undecided = wilson(c["INCONCLUSIVE"], trials)
            rows.append(f"| {dist} | {case} | " + " | ".join(_cells(c)) + f" | {undecided} | {med:,.0f} ({p90:,.0f}) |")
            print(rows[-1], flush=True)
    return rows


def trigger_table(trials: int, n: int = 2000) -> list[str]:
    """Absolute triggers on one cohort, the true value below (x 0.9) or past (x 1.2) the limit."""
    rows = [
        f"Triggers ({trials} cohorts of {n:,} a cell; the true value a factor of the limit):",
        "",
        "| trigger | true value | P(fires) |",
        "|---|---|---|",
    ]
    rng = np.random.default_rng(77)
    for name, limit in (("timeout_rate", 0.10), ("error_rate_5xx", 0.05), ("connect_success", 0.05)):
        for f in (0.9, 1.2, 1.5):
            fired = 0
            for _ in range(trials):
                s = CohortStats(flow="sim")
                bad = int(rng.binomial(n, limit * f))
                s.sessions = n
                key = {"timeout_rate": "timeout", "error_rate_5xx": "http_error", "connect_success": "connect_error"}
                s.outcomes.update({"ok": n - bad, key[name]: bad})
                s.connected = n - bad if name == "connect_success" else n
                s.http_status.update({"200": n - bad if name == "error_rate_5xx" else s.connected})
                if name == "error_rate_5xx":
                    s.http_status["502"] += bad
                fired += any(t.name == name for t in _triggers(s))
            what = f"failures {100 * limit * f:.1f} %" if name == "connect_success" else f"{100 * limit * f:.1f} %"
            rows.append(f"| {name} | {what} | {wilson(fired, trials)} |")
    for f in (0.9, 1.2):
        fired = 0
        for _ in range(trials):
            s = CohortStats(flow="sim")
            s.sessions, s.connected = n, n
            s.outcomes["ok"] = n
            p50 = 5000.0 * f / math.exp(0.6 * 1.645)  # lognormal sigma 0.6 whose p95 is f x the limit
            fill(s.histograms["ttfe_us"], 1000.0 * p50 * np.exp(0.6 * rng.standard_normal(n)))
            fired += any(t.name == "ttfe_p95" for t in _triggers(s))
        rows.append(f"| ttfe_p95 (lognormal 0.6) | p95 {5000 * f:,.0f} ms | {wilson(fired, trials)} |")
    return rows


def power_table(trials: int) -> list[str]:
    """How many sessions a +15 % regression needs at lognormal sigma 0.6 (the p95's own information)."""
    rows = [
        f"Power at lognormal sigma 0.6 ({trials} trials a cell): P(RED)",
        "",
        "| change | 2,000 | 4,000 | 6,000 | 8,000 | 12,000 |",
        "|---|---|---|---|---|---|",
    ]
    for j, case in enumerate(("+15 %", "p95 tail +15 %")):
        cells = [
            wilson(fixed("lognormal 0.6", case, n, trials, 90_000 + 10 * j + k)["RED"], trials)
            for k, n in enumerate((2000, 4000, 6000, 8000, 12000))
        ]
        rows.append(f"| {case} | " + " | ".join(cells) + " |")
    return rows


def _triggers(s: CohortStats) -> list[FiredTrigger]:
    return check_triggers(s, DEFAULT_POLICY)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.contract", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 fixed / 40 sequential trials a cell")
    ap.add_argument("--part", choices=("fixed", "sequential", "triggers", "power", "all"), default="all")
    args = ap.parse_args(argv)
    trials, seq = (100, 40) if args.quick else (400, 100)
    out: list[str] = []
    if args.part in ("fixed", "all"):
        out += fixed_table(trials, (2000, 8000)) + [""]
    if args.part in ("sequential", "all"):
        out += sequential_table(seq) + [""]
    if args.part in ("triggers", "all"):
        out += trigger_table(trials) + [""]
    if args.part in ("power", "all"):
        out += power_table(trials // 2)
    print("\n" + "\n".join(out), flush=True)  # the rows again, as one table
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
