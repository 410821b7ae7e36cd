"""The error budget of a comparison that looks again and again (``compare --until-decided``).

Pure maths, no I/O. A run looks at geometrically growing sizes n_1 < n_2 < ... <= max_sessions
(per cohort), and may stop at the first decided look. Each judged statement ("past the YELLOW
limit", "5 % worse ruled out", "past a trigger's limit") is tested at every look against one
constant standard-normal boundary c (Pocock's), chosen so that the chance of crossing it at
*any* look, when the statement is false, is the budget (alpha for an alarm, 1 - power for
GREEN). The per-look level handed to the exact intervals is then 1 - Phi(c).

Why this and not the budget split evenly over the looks (Bonferroni): successive looks share
most of their sessions (look k+1 holds all of look k's), so their statistics are strongly
correlated (sqrt(n_k / n_(k+1)) = 0.71 at growth 2), and the crossing probability of the
whole sequence is computed rather than bounded: for the default 9 alarm looks at alpha 0.18 %
the boundary is z = 3.50 where Bonferroni over the 200 looks every 100 sessions needed
z = 4.29 (and a single fixed-size look z = 2.91). The crossing probability is that of a
Brownian motion observed at the looks
(the Bahadur representation of a quantile and the binomial count of a rate are sums of
independent sessions), computed by recursive numerical integration on a grid
(Armitage, McPherson and Rowe 1969).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from .._config import LOOK_EVERY, MAX_SESSIONS

__all__ = ["SequentialPlan", "crossing_probability", "look_levels"]

_N = NormalDist()
_ERFC = np.frompyfunc(math.erfc, 1, 1)
_GRID = 0.02  # grid step on the standard-normal scale: crossing probabilities right to ~1e-4 relative


def _sf(x: np.ndarray) -> np.ndarray:
    """Upper tail of the standard normal, vectorised (erfc keeps precision far out)."""
    return np.asarray(0.5 * _ERFC(x / math.sqrt(2.0)), dtype=np.float64)


@lru_cache(maxsize=32)
def _steps(sizes: tuple[int, ...]) -> tuple[np.ndarray, tuple[tuple[float, float, np.ndarray], ...]]:
    """The grid, and for each step between looks (r, s, transition kernel on the grid)."""
    z = np.arange(-8.0, 8.5, _GRID)
    out = []
    for k in range(1, len(sizes)):
        r = math.sqrt(sizes[k - 1] / sizes[k])
        s = math.sqrt(max(1.0 - r * r, 1e-12))
        kernel = np.exp(-0.5 * ((z[:, None] - r * z[None, :]) / s) ** 2) / (s * math.sqrt(2.0 * math.pi))
        out.append((r, s, kernel))
    return z, tuple(out)


def crossing_probability(bounds: tuple[float, ...], sizes: tuple[int, ...]) -> float:
    """P(Z_k > bounds[k] at some look k) for Z_k = W(n_k) / sqrt(n_k), W a standard Brownian motion.

    The density of Z_k on the continuation region (z <= bounds[k]) is carried from look to look:
    Z_(k+1) = r z + sqrt(1 - r^2) e with r = sqrt(n_k / n_(k+1)), e standard normal.
    """
    z, steps = _steps(sizes)
    dens = np.where(z <= bounds[0], np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi), 0.0)
    total = float(_sf(np.array([bounds[0]]))[0])
    for c, (r, s, kernel) in zip(bounds[1:], steps, strict=True):
        w = dens * _GRID  # mass of each grid cell still running
        total += float(w @ _sf((c - r * z) / s))
        dens = np.where(z <= c, kernel @ w, 0.0)
    return total


@lru_cache(maxsize=256)
def look_levels(budget: float, sizes: tuple[int, ...], early: int = 0, early_share: float = 0.0) -> tuple[float, ...]:
    """Per-look one-sided levels that spend ``budget`` over the looks at ``sizes``.

    The first ``early`` looks get ``early_share`` of the budget, evenly (their own levels); the
    rest share one constant boundary c (Pocock's), found by bisection (to 1e-4 in z) so that the
    whole sequence is crossed with probability ``budget``. Early looks are where only a gross
    change can be decided: a small fixed share keeps them useful for that without raising the
    boundary of the looks that decide most runs."""
    early = min(early, len(sizes) - 1) if early_share > 0 else 0
    head = tuple(_N.inv_cdf(1.0 - budget * early_share / early) for _ in range(early)) if early else ()
    rest = len(sizes) - early
    if rest == 1 and not early:
        return (budget,)
    lo, hi = _N.inv_cdf(1.0 - budget), _N.inv_cdf(1.0 - budget * (1.0 - early_share) / rest)  # one look ... Bonferroni
    while hi - lo > 1e-4:
        mid = 0.5 * (lo + hi)
        if crossing_probability(head + (mid,) * rest, sizes) > budget:
            lo = mid
        else:
            hi = mid
    return tuple(1.0 - _N.cdf(c) for c in head + (hi,) * rest)


@dataclass(frozen=True)
class SequentialPlan:
    """Where a sequential comparison looks, and what each look may spend.

    Looks come at ``sizes`` sessions per cohort: multiples of ``look_every`` growing by
    ``growth`` (100, 200, 400, 800, 1,600, 3,200, 6,400, 12,800, 20,000 by default: 9 looks
    where one every 100 sessions made 200). Every look may decide anything. The looks before
    ``full_from`` sessions share ``early_share`` (10 %) of each budget: at lognormal sigma 0.6 a
    p95 can rule out +5 % only from ~1,600 sessions on, so they decide only gross regressions
    and narrow distributions, and the looks that decide most runs keep a low boundary.
    """

    look_every: int = LOOK_EVERY
    max_sessions: int = MAX_SESSIONS
    growth: float = 2.0
    full_from: int = 1000
    early_share: float = 0.1

    def __post_init__(self) -> None:
        if self.look_every < 1 or self.max_sessions < self.look_every:
            raise ValueError(f"need 1 <= look_every <= max_sessions, got {self.look_every}, {self.max_sessions}")
        if not self.growth > 1.0 or self.full_from < 1 or not 0.0 <= self.early_share < 1.0:
            raise ValueError("need growth > 1, full_from >= 1 and 0 <= early_share < 1")

    @property
    def sizes(self) -> tuple[int, ...]:
        """Sessions per cohort at each look: multiples of look_every, ending at max_sessions."""
        step, out = self.look_every, [self.look_every]
        while out[-1] < self.max_sessions:
            nxt = max(out[-1] + step, math.ceil(out[-1] * self.growth / step) * step)
            out.append(min(nxt, self.max_sessions))
        return tuple(out)

    @property
    def looks(self) -> int:
        return len(self.sizes)

    def levels(self, budget: float) -> tuple[float, ...]:
        """Each look's one-sided level for a statement whose whole-run budget is ``budget``: an
        alarm's alpha, or GREEN's 1 - power."""
        sizes = self.sizes
        early = sum(n < self.full_from for n in sizes)
        return look_levels(budget, sizes, early, self.early_share)

    def level(self, budget: float, look: int) -> float:
        """Look number ``look``'s (1-based) level of ``levels(budget)``."""
        return self.levels(budget)[look - 1]
