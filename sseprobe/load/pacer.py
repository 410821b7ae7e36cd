"""Open-model arrival schedules: pure math, no clock.

A schedule is a list of phases, each a linear rate ramp (constant when both ends are equal).
``Λ(t)``, the expected number of arrivals by time ``t``, is piecewise quadratic; arrival ``k``
is due at ``Λ⁻¹(k)`` (uniform spacing) or at ``Λ⁻¹(E₁+…+E_k)`` with unit exponential draws
(Poisson arrivals). Scheduled times come from here, never from when a send actually happened,
so a generator that falls behind shows as lag instead of hiding it (coordinated omission).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["Phase", "Schedule", "constant", "ramp", "steps"]


@dataclass(frozen=True)
class Phase:
    """``duration`` seconds, rate going linearly from ``start_rate`` to ``end_rate`` sessions/s."""

    duration: float
    start_rate: float
    end_rate: float
    name: str = ""

    def __post_init__(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"phase {self.name or '?'}: duration must be > 0 s")
        if self.start_rate < 0 or self.end_rate < 0:
            raise ValueError(f"phase {self.name or '?'}: rates must be >= 0")

    def arrivals_by(self, t: float) -> float:
        """Expected arrivals in the first ``t`` seconds of this phase."""
        slope = (self.end_rate - self.start_rate) / self.duration
        return self.start_rate * t + 0.5 * slope * t * t

    def time_of(self, n: float) -> float:
        """Inverse of :meth:`arrivals_by` on [0, duration]: when the n-th expected arrival falls."""
        a = 0.5 * (self.end_rate - self.start_rate) / self.duration
        b = self.start_rate
        if abs(a) < 1e-12:
            return n / b
        # a t² + b t - n = 0, the root in [0, duration]; the stable form avoids cancellation
        disc = b * b + 4 * a * n
        return 2 * n / (b + math.sqrt(max(disc, 0.0)))

    @property
    def total(self) -> float:
        return self.arrivals_by(self.duration)


@dataclass(frozen=True)
class Schedule:
    phases: tuple[Phase, ...]
    poisson: bool = False
    seed: int = 0

    def time_of(self, n: float) -> float | None:
        """When the n-th expected arrival (n >= 0, fractional allowed) is due; None past the end."""
        offset = 0.0
        for phase in self.phases:
            if n <= phase.total:
                return offset + phase.time_of(n)
            n -= phase.total
            offset += phase.duration
        return None

    def phase_at(self, t: float) -> tuple[int, Phase] | None:
        offset = 0.0
        for i, phase in enumerate(self.phases):
            if t < offset + phase.duration:
                return i, phase
            offset += phase.duration
        return None

    def rate_at(self, t: float) -> float:
        offset = 0.0
        for phase in self.phases:
            if t < offset + phase.duration:
                x = (t - offset) / phase.duration
                return phase.start_rate + x * (phase.end_rate - phase.start_rate)
            offset += phase.duration
        return 0.0

    def arrivals(self, share: float = 1.0, part: int = 0, parts: int = 1) -> Iterator[float]:
        """Scheduled times (s from the start) of this share of the arrivals.

        ``part``/``parts`` splits one schedule over worker processes: each takes every
        ``parts``-th arrival (uniform) or an independent Poisson stream at rate/parts.
        """
        if self.poisson:
            rng = random.Random(self.seed * 1_000_003 + part)
            n = 0.0
            while True:
                n += rng.expovariate(1.0) * parts / share
                t = self.time_of(n)
                if t is None:
                    return
                yield t
        k = part + 1
        while True:
            t = self.time_of((k - 0.5) / share)  # mid-slot: the first arrival is not at t=0 exactly
            if t is None:
                return
            yield t
            k += parts


def constant(rate: float, duration: float) -> Schedule:
    return Schedule((Phase(duration, rate, rate, "constant"),))


def ramp(start_rate: float, end_rate: float, duration: float) -> Schedule:
    return Schedule((Phase(duration, start_rate, end_rate, "ramp"),))


def steps(rates: Sequence[float], step_duration: float) -> Schedule:
    return Schedule(tuple(Phase(step_duration, r, r, f"step {i + 1}") for i, r in enumerate(rates)))
