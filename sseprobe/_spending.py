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
z = 4.29 (and a single fixed-size look z = 2.91). The crossing probability is that of a Brownian motion observed at the looks
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

__all__ = ["SequentialPlan", "crossing_probability", "pocock_level"]

_N = NormalDist()
_ERFC = np.frompyfunc(math.erfc, 1, 1)
_GRID = 0.02  # grid step on the standard-normal scale: crossing probabilities right to ~1e-4 relative


def _sf(x: np.ndarray) -> np.ndarray:
    """Upper tail of the standard normal, vectorised (erfc keeps precision far out)."""
    return np.asarray(0.5 * _ERFC(x / math.sqrt(2.0)), dtype=np.float64)


def crossing_probability(c: float, sizes: tuple[int, ...]) -> float:
    """P(Z_k > c at some look k) for Z_k = W(n_k) / sqrt(n_k), W a standard Brownian motion.

    The density of Z_k on the continuation region (z <= c) is carried from look to look:
    Z_(k+1) = r z + sqrt(1 - r^2) e with r = sqrt(n_k / n_(k+1)), e standard normal.
    """
    z = np.arange(-8.0, c + _GRID / 2, _GRID)
    dens = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    total = float(_sf(np.array([c]))[0])
    for prev, nxt in zip(sizes, sizes[1:]):
        r = math.sqrt(prev / nxt)
        s = math.sqrt(max(1.0 - r * r, 1e-12))
        w = dens * _GRID  # mass of each grid cell still running
        total += float(w @ _sf((c - r * z) / s))
        kernel = np.exp(-0.5 * ((z[:, None] - r * z[None, :]) / s) ** 2) / (s * math.sqrt(2.0 * math.pi))
        dens = kernel @ w
    return total


@lru_cache(maxsize=256)
def pocock_level(alpha: float, sizes: tuple[int, ...]) -> float:
    """The per-look one-sided level 1 - Phi(c) whose constant boundary c is crossed at some look
    with probability ``alpha`` (bisection on c, to 1e-4 in z)."""
    if len(sizes) == 1:
        return alpha
    lo, hi = _N.inv_cdf(1.0 - alpha), _N.inv_cdf(1.0 - alpha / len(sizes))  # one look ... Bonferroni
    while hi - lo > 1e-4:
        mid = 0.5 * (lo + hi)
        if crossing_probability(mid, sizes) > alpha:
            lo = mid
        else:
            hi = mid
    return 1.0 - _N.cdf(hi)


@dataclass(frozen=True)
class SequentialPlan:
    """Where a sequential comparison looks, and what each look may decide.

    Looks come at ``sizes`` sessions per cohort: multiples of ``look_every`` growing by
    ``growth`` (100, 200, 400, 800, 1,600, 3,200, 6,400, 12,800, 20,000 by default: 9 looks
    where one every 100 sessions made 200). Alarms (YELLOW / RED, triggers) may fire at every
    look; GREEN from ``first_green`` on (1,600, 3,200, ...: at lognormal sigma 0.6 a p95 cannot
    rule out +5 % from fewer sessions, and a look that cannot decide only costs budget; with
    growth 1.5 and GREEN from 500 the median A/A run took 9,300 sessions per cohort, with these 3,200).
    """

    look_every: int = 100
    max_sessions: int = 20_000
    growth: float = 2.0
    first_green: int = 1000

    def __post_init__(self) -> None:
        if self.look_every < 1 or self.max_sessions < self.look_every:
            raise ValueError(f"need 1 <= look_every <= max_sessions, got {self.look_every}, {self.max_sessions}")
        if not self.growth > 1.0 or self.first_green < 1:
            raise ValueError("need growth > 1 and first_green >= 1")

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

    @property
    def green_sizes(self) -> tuple[int, ...]:
        """The looks that may call GREEN: from first_green on (always at least the last)."""
        sizes = self.sizes
        return tuple(n for n in sizes if n >= self.first_green) or sizes[-1:]

    def green_look(self, look: int) -> bool:
        return self.sizes[look - 1] in self.green_sizes

    def alarm_level(self, alpha: float) -> float:
        """Per-look level of an alarm whose whole-run budget is ``alpha``."""
        return pocock_level(alpha, self.sizes)

    def green_level(self, beta: float) -> float:
        """Per-look level of the bound that calls GREEN, whole-run budget ``beta`` (1 - power)."""
        return pocock_level(beta, self.green_sizes)
