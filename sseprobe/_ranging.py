"""Self-ranging and the error band of a live comparison (docs/validity.md).

``ranged`` measures a plan's load and, where a lower load would time truly, halves it and measures
again (load/ranging.py says how far, load/generator.py when); ``range_change`` is the same step between
the batches of ``--until-decided``; ``band`` is the error band the verdict widens its latency intervals by.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, TextIO

from .load.generator import SATURATED_LAG_MS, worth_lowering
from .load.ranging import RangeChange, lowered, offered
from .load.runner import Measured
from .verdict.compare import generator_band

if TYPE_CHECKING:
    from ._api import RunPlan

__all__ = ["band", "range_change", "ranged", "watched"]


def band(plan: RunPlan, measured: Measured) -> float:
    """The error band (ms) latency intervals widen by: the saturated generator's, plus, for a service
    that shares this machine's CPUs (the demo's built-in target), how late that service itself ran its
    timings (p99) when that is over SATURATED_LAG_MS, recorded as ``generator.service_late_ms``: beside CPU
    hogs it is part of the instrument."""
    late = plan.service_late() if plan.service_late is not None else 0.0
    if late <= SATURATED_LAG_MS:  # as for the generator: a few ms, common to both cohorts, is in the samples
        return generator_band(measured.generator)
    measured.generator["service_late_ms"] = round(late, 3)
    return generator_band(measured.generator) + late


def ranged(
    plan: RunPlan,
    progress: TextIO | None | Literal["plan"],
    measure: Callable[[RunPlan, TextIO | None | Literal["plan"]], Measured],
) -> Measured:
    """One measurement of the plan's load; where a lower load would time truly (self-ranging plans
    only), the load is halved and all of it measured again, while halving helps. The measurement at
    the old load is left out of the verdict (late timings in both cohorts shrink a change)."""
    ranges: list[RangeChange] = []
    while True:
        measured = measure(watched(plan, ranges), progress)
        change = range_change(plan, measured, [], ranges, progress)
        if change is None:
            break
        plan = change
    if ranges:
        measured.generator["ranges"] = [r.to_dict() for r in ranges]
    return measured


def watched(plan: RunPlan, ranges: list[RangeChange]) -> RunPlan:
    """The plan with its runner told to stop early for a lower load, when it is self-ranging and can go lower."""
    if not plan.self_ranging or lowered(plan.load, len(plan.cohorts)) is None:
        return plan
    return replace(plan, options=replace(plan.options, self_ranging=ranges[-1].error_ms if ranges else None))


def range_change(
    plan: RunPlan,
    part: Measured,
    kept: list[Measured],
    ranges: list[RangeChange],
    progress: TextIO | None | Literal["plan"],
) -> RunPlan | None:
    """The plan at half the load (the change appended to ``ranges``) when ``part`` says a lower load
    would time truly and the load can go lower; else None."""
    lower = lowered(plan.load, len(plan.cohorts)) if plan.self_ranging and not part.info.interrupted else None
    block = part.ranged or part.generator
    if lower is None or not worth_lowering(block, ranges[-1].error_ms if ranges else None):
        return None
    n = len(plan.cohorts)
    at = min((sum(p.cohorts[c.name].sessions for p in kept) for c in plan.cohorts), default=0)
    discarded = min(s.sessions for s in part.cohorts.values())
    change = RangeChange(at, offered(plan.load, n), offered(lower, n), block["note"], discarded)
    ranges.append(replace(change, error_ms=block["error_ms"]))
    if progress is not None:
        print(change.line(), file=(plan.options.progress if progress == "plan" else progress) or sys.stderr, flush=True)
    return replace(plan, load=lower)
