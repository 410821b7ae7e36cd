"""The verdict's values: its levels, one row per metric, the whole answer, and the rule that turns
an interval into a level.

The rule (regression scale: positive = worse; y, r = the policy's YELLOW and RED limits, +5 %
and +10 % by default; ``lo`` the lower bound at the false-alarm level, ``hi`` the upper bound at
the power level):

* RED: ``lo > y`` and the estimate past r: the change is past the YELLOW limit with the
  policy's confidence, most likely past RED. A change of +5 % or less is RED at most the
  false-alarm level of the time, whatever the shape of the distribution.
* YELLOW: ``lo > y`` and the estimate at or below r: past the YELLOW limit, most likely within RED.
* GREEN: ``hi < y``: "+5 % or worse" ruled out with the policy's power, so a true +5 % change
  is GREEN at most 1 - power (20 %) of the time.
* INCONCLUSIVE: neither (a real regression whose size the interval cannot yet place counts
  here too), with the sessions that would decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from .levels import exit_codes
from .policy import DEFAULT_POLICY, FiredTrigger
from .schema import DecisionDoc, MetricDoc, VerdictDoc

__all__ = ["Level", "EXIT_CODES", "MetricResult", "Verdict", "level_from", "SEVERITY"]

Level = Literal["GREEN", "YELLOW", "RED", "INCONCLUSIVE"]
EXIT_CODES: dict[str, int] = exit_codes("GREEN", "YELLOW", "RED", "INCONCLUSIVE")
SEVERITY: dict[str, int] = {"GREEN": 0, "INCONCLUSIVE": 1, "YELLOW": 2, "RED": 3}


def level_from(est: float, lo: float, hi: float, yellow: float, red: float) -> tuple[Level, str]:
    """Level from a regression estimate, its lower bound at the false-alarm level and its upper
    bound at the power level (positive = worse); thresholds on the same scale. The interval
    decides (see the module's rule); the estimate only splits RED from YELLOW among changes
    already shown past the YELLOW limit. Returns (level, code): which rule decided, for the reason.
    """
    if math.isnan(est):
        return "INCONCLUSIVE", "no_estimate"
    if lo > yellow:
        return ("RED", "red") if est > red else ("YELLOW", "yellow")
    if hi < yellow:
        return "GREEN", "small_real" if lo > 0 else "excluded"
    return "INCONCLUSIVE", "real" if lo > 0 else "wide"


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
    method: str = ""  # which interval decided: order-statistic or exact-binomial (bucket-edges: a Prometheus source)
    generator_bound: bool = False  # undecided because the generator's own lag could explain the change
    clock_bound: bool = False  # undecided because the clock's tick could hide a YELLOW-size change

    def to_dict(self) -> MetricDoc:
        nd = 3 if self.kind == "quantile" else 6
        d: MetricDoc = {
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
        if self.clock_bound:
            d["clock_bound"] = True
        return d


@dataclass
class Verdict:
    """The comparison's answer: overall level, per-metric rows, fired triggers, and why."""

    overall: Level
    metrics: list[MetricResult]
    triggers: list[FiredTrigger]
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
        triggers = [t.name for t in self.triggers if t.generator_bound and t.cohort == "candidate"]
        return [m.name for m in self.metrics if m.generator_bound] + triggers

    def to_dict(self) -> VerdictDoc:
        """The verdict's levels: the results document's "verdict" section without its reasons."""
        d: VerdictDoc = {
            "overall": self.overall,
            "metrics": [m.to_dict() for m in self.metrics],
            "triggers": [t.to_dict() for t in self.triggers],
        }
        if self.generator_error_ms > 0:
            d["generator_error_ms"] = round(self.generator_error_ms, 3)
        return d

    def section(self, decision: DecisionDoc | None = None) -> VerdictDoc:
        """The results document's "verdict" section (ARCHITECTURE.md): the levels, the reasons, and what
        a comparison adds (``sequential``, ``time_to_decide``)."""
        return {**self.to_dict(), "reasons": self.reasons, **(decision or {})}
