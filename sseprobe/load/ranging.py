"""Self-ranging: the load a verdict-seeking measurement lowers itself to when its generator is load-bound.

An instrument picks its own range. ``compare``, ``monitor`` and ``demo`` want a verdict, not a load level,
so when their generator cannot keep its own time they halve the offered load (both cohorts alike: the
closed model's users or the open model's rate, the interleaving unchanged) and measure on. Halving
reaches one session in flight per cohort from the default 10 in three steps, and costs at most
RANGE_WINDOW_S of discarded measurement each time. Load runs (``run``) and scenarios with phases keep
the load asked for: their job is the load level.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..verdict.schema import RangeDoc
from .engine import Load

__all__ = ["MIN_RATE", "RangeChange", "lowered", "offered"]

MIN_RATE = 0.5  # sessions/s per cohort: below this an open-model comparison would take hours to decide


@dataclass(frozen=True)
class RangeChange:
    """One change of range, as the results document records it under ``generator.ranges``."""

    at_session: int  # sessions per cohort kept (judged) when the range changed
    before: dict[str, float]
    after: dict[str, float]
    why: str
    discarded: int  # sessions per cohort measured at the old range and left out of the verdict
    error_ms: float = 0.0  # the generator's error that caused it: the next halving must cut it (RANGE_GAIN)

    def to_dict(self) -> RangeDoc:
        return {
            "at_session": self.at_session,
            "from": self.before,
            "to": self.after,
            "why": self.why,
            "discarded": self.discarded,
            "error_ms": self.error_ms,
        }

    def line(self) -> str:
        """The one line said on stderr."""
        what = next(iter(self.after))
        unit = " in flight per cohort" if what == "concurrency" else " sessions/s per cohort"
        return (
            f"sseprobe: the generator was load-bound ({self.why.split(':')[0]}): lowering the load from"
            f" {self.before[what]:g} to {self.after[what]:g}{unit} and measuring on"
            f" ({self.discarded:,} sessions per cohort at the old load left out of the verdict)"
        )


def offered(load: Load, cohorts: int) -> dict[str, float]:
    """The offered load per cohort: sessions in flight (closed model) or sessions/s (open model)."""
    if load.schedule is None:
        return {"concurrency": load.concurrency / cohorts}
    return {"rate": round(load.schedule.phases[0].start_rate / cohorts, 6)}


def lowered(load: Load, cohorts: int) -> Load | None:
    """Half the offered load, both cohorts alike; None when it cannot go lower (one in flight per
    cohort, MIN_RATE per cohort, or a schedule of several phases or a ramp: a load shape asked for)."""
    if load.schedule is None:
        per = load.concurrency // cohorts
        return None if per <= 1 else replace(load, concurrency=max(1, per // 2) * cohorts)
    phases = load.schedule.phases
    if len(phases) != 1 or phases[0].start_rate != phases[0].end_rate:
        return None
    phase = phases[0]
    rate = phase.start_rate / 2
    if rate < MIN_RATE * cohorts:
        return None
    # a run bounded by sessions spans sessions / rate: at half the rate, twice as long
    span = phase.duration * 2 if load.duration is None else phase.duration
    return replace(
        load, schedule=replace(load.schedule, phases=(replace(phase, duration=span, start_rate=rate, end_rate=rate),))
    )
