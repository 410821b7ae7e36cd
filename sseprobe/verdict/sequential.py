"""``compare --until-decided``: the bookkeeping of a comparison that looks after every batch.

Pure (no I/O, no clock): the library's ``compare`` runs the batches (growing geometrically, one
per look of the SequentialPlan) and hands each merged pair of cohorts to :class:`Looks`, which
judges them with ``judge_sequential`` (so every look spends the share of the error budgets the
plan's boundary allows, never more), remembers when each metric was
first decided, and writes the verdict's ``sequential`` section. :func:`time_to_decide` turns the
sessions a decision took (or still needs) into a time at each rollout step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from .._config import LOOK_EVERY, MAX_SESSIONS
from .compare import SequentialPlan, Verdict, decided, judge_sequential
from .policy import Policy
from .schema import SequentialDoc, SequentialMetricDoc, TimeToDecideDoc
from .stats import CohortStats

__all__ = ["UntilDecided", "Looks", "Stopped", "time_to_decide", "ROLLOUT_STEPS"]

Stopped = Literal["decided", "generator_bound", "max_sessions", "max_duration", "interrupted"]
ROLLOUT_STEPS = (0.05, 0.25, 0.50)  # the canary's share of traffic at each rollout step
_FAR = 10**9  # compare's "far more sessions needed": no time to project


@dataclass(frozen=True)
class UntilDecided:
    """Keep sampling until decided: looks at the SequentialPlan's sizes (the first after
    ``look_every`` sessions per cohort, then growing by half each time, in multiples of it), at
    most ``max_sessions`` per cohort and ``max_duration`` seconds of wall clock (None: no cap)."""

    look_every: int = LOOK_EVERY
    max_sessions: int = MAX_SESSIONS
    max_duration: float | None = None

    def __post_init__(self) -> None:
        SequentialPlan(self.look_every, self.max_sessions)  # raises ValueError on a plan that cannot be
        if self.max_duration is not None and not self.max_duration > 0:
            raise ValueError("max duration must be > 0 seconds")

    @property
    def plan(self) -> SequentialPlan:
        return SequentialPlan(self.look_every, self.max_sessions)

    def batch(self, look: int) -> int:
        """Sessions per cohort in batch number ``look`` (1-based): from the last look's size to this one's."""
        sizes = self.plan.sizes
        return sizes[look - 1] - (sizes[look - 2] if look > 1 else 0)


@dataclass
class Looks:
    """The looks of one run so far, and when each metric was first decided."""

    settings: UntilDecided
    policy: Policy
    taken: int = 0
    decided_at: dict[str, tuple[int, str]] = field(default_factory=dict)  # metric -> (sessions per cohort, level)

    def look(self, baseline: CohortStats, candidate: CohortStats, generator_error_ms: float = 0.0) -> Verdict:
        """Judge the cohorts merged so far at the next look. ``generator_error_ms``: the merged
        generator's error band (``generator_band``: 0 unless it was saturated), which latency
        verdicts must allow for."""
        self.taken += 1
        verdict = judge_sequential(
            baseline,
            candidate,
            self.policy,
            self.settings.plan,
            look=self.taken,
            generator_error_ms=generator_error_ms,
        )
        n = min(baseline.attempts, candidate.attempts)
        for m in verdict.metrics:
            if m.level != "INCONCLUSIVE" and m.name not in self.decided_at:
                self.decided_at[m.name] = (n, m.level)
        return verdict

    def section(self, verdict: Verdict, stopped: Stopped, sessions: dict[str, int]) -> SequentialDoc:
        """The verdict's ``sequential`` section of the results document."""
        s = self.settings
        return {
            "look_every": s.look_every,
            "max_sessions": s.max_sessions,
            "max_duration_s": s.max_duration,
            "looks": self.taken,
            "sessions": sessions,
            "stopped": stopped,
            "decided": decided(verdict),
            "metrics": [self._metric(m.name, m.critical) for m in verdict.metrics],
        }

    def _metric(self, name: str, critical: bool) -> SequentialMetricDoc:
        at = self.decided_at.get(name)
        return {
            "name": name,
            "critical": critical,
            "decided_at_sessions": at[0] if at else None,
            "level_then": at[1] if at else None,
        }


def time_to_decide(
    verdict: Verdict, is_decided: bool, traffic_rate: float | None, own_rate: float | None
) -> TimeToDecideDoc | None:
    """How long a decision takes at each rollout step: the sessions per cohort it took (decided)
    or still needs (the largest ``sessions_needed`` of the undecided critical metrics), at the
    service's traffic (``traffic_rate``, sessions/s in all) or else this run's own rate in all.
    At step p the canary sees p of the traffic and the baseline the rest: the smaller decides.
    None when there is nothing to project (no sessions needed known, no rate)."""
    sessions = min(verdict.n_baseline, verdict.n_candidate) if is_decided else _still_needed(verdict)
    rate = traffic_rate if traffic_rate is not None else own_rate
    if not sessions or not rate or not math.isfinite(rate) or rate < 1e-9:
        return None  # no rate to project with (a subnormal one would divide by zero)
    return {
        "sessions_per_cohort": sessions,
        "basis": "decided" if is_decided else "sessions_needed",
        "traffic_rate": round(rate, 3),
        "traffic_source": "--traffic-rate" if traffic_rate is not None else "this run",
        "steps": [{"canary_share": p, "seconds": round(sessions / (min(p, 1.0 - p) * rate), 1)} for p in ROLLOUT_STEPS],
    }


def _still_needed(verdict: Verdict) -> int | None:
    needed = [m.sessions_needed for m in verdict.metrics if m.critical and m.level == "INCONCLUSIVE"]
    known = [n for n in needed if n and n < _FAR]
    return max(known) if known and len(known) == len(needed) else None
