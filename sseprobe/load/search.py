"""Calibration's pure decisions, no clock and no network: whether one step passed, which value to try
next (ramp up by GROWTH, down while even the lowest fails, then bisect to RESOLUTION), the search's
figure, and how many workers fit this machine. ``calibrate`` measures; this decides."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "GROWTH",
    "HEADROOM",
    "MAX_FAILED_SHARE",
    "MIN_JUDGED",
    "RESOLUTION",
    "TTFE_ERROR_LIMIT_MS",
    "USABLE_SHARE",
    "StepFigures",
    "highest_pass",
    "judge_step",
    "next_value",
    "recommend_workers",
]

TTFE_ERROR_LIMIT_MS = 2.0  # the bar: TTFE reported within 2 ms of the truth at p99
HEADROOM = 0.8  # the recommendation is this share of the highest step that passed: a margin for noise
USABLE_SHARE = 0.7  # of the cores, what the recommended workers (and the service beside them) may use
MIN_JUDGED = 30  # sessions with a truth stamp a step needs before its p99 means anything
MAX_FAILED_SHARE = 0.01  # more failed sessions than this: the step did not measure what it meant to
GROWTH = 2.0  # the ramp's factor; the bisection stops when the bracket is narrower than RESOLUTION
RESOLUTION = 1.25


@dataclass(frozen=True)
class StepFigures:
    """What one step measured, all a pass or fail rests on."""

    value: float  # sessions/s (rate) or streams open (in flight)
    sessions: int
    failed: int  # sessions that did not end ok (cancelled at the step's end not counted)
    judged: int  # sessions with a truth stamp
    ttfe_error_p99_ms: float | None
    generator_error_ms: float
    saturated: bool
    cpu_share: float = 0.0  # this process's CPU seconds per second of the step
    target_cpu_share: float | None = None  # the target's, when the system says (Linux /proc)


def judge_step(f: StepFigures) -> str | None:
    """Why the step fails, or None when it passes."""
    if f.saturated:
        return f"generator saturated (lag p99 {f.generator_error_ms:.1f} ms)"
    if f.sessions and f.failed > MAX_FAILED_SHARE * f.sessions:
        return f"{f.failed} of {f.sessions} sessions failed"
    if f.judged < MIN_JUDGED or f.ttfe_error_p99_ms is None:
        return f"only {f.judged} sessions with a truth stamp"
    if f.ttfe_error_p99_ms >= TTFE_ERROR_LIMIT_MS:
        return f"TTFE error p99 {f.ttfe_error_p99_ms:.2f} ms >= {TTFE_ERROR_LIMIT_MS:g} ms"
    return None


def next_value(tried: Sequence[tuple[float, bool]], start: float, floor: float, cap: float) -> float | None:
    """The next value to try from (value, passed) so far, or None when the search is done.

    Up by GROWTH from ``start`` until a step fails (or ``cap``), down by GROWTH while even the lowest
    fails (to ``floor``), then bisect (geometric middle) between the highest pass below the lowest
    fail and that fail, until they are within RESOLUTION. Values are whole numbers."""
    failed = [v for v, ok in tried if not ok]
    high = min(failed, default=None)
    low = max((v for v, ok in tried if ok and (high is None or v < high)), default=None)
    if high is None:
        if low is None:
            return start
        return None if low >= cap else _new(min(low * GROWTH, cap), tried)
    if low is None:
        down = math.floor(high / GROWTH)
        return None if down < floor else _new(down, tried)
    if high / low <= RESOLUTION:
        return None
    return _new(round(math.sqrt(low * high)), tried)


def _new(value: float, tried: Sequence[tuple[float, bool]]) -> float | None:
    value = float(round(value))
    return None if any(v == value for v, _ in tried) else value


def highest_pass(tried: Sequence[tuple[float, bool]]) -> float:
    """The search's figure: the highest value that passed below the lowest that failed (0: none passed)."""
    high = min((v for v, ok in tried if not ok), default=math.inf)
    return max((v for v, ok in tried if ok and v < high), default=0.0)


def recommend_workers(cores: int, generator_share: float, target_share: float | None) -> int:
    """Worker processes that fit this machine at the recommended rate each.

    Each worker needs ``generator_share`` of a core for itself and, while the service runs on this
    machine as the target did during calibration, its sessions cost the service ``target_share`` more
    (the target's own CPU per second at that rate; unknown: taken as the generator's). Only
    USABLE_SHARE of the cores is handed out: a loop on a fully busy machine wakes late."""
    per_worker = HEADROOM * (generator_share + (generator_share if target_share is None else target_share))
    fits = math.floor(USABLE_SHARE * cores / per_worker) if per_worker > 0 else cores
    return max(1, min(cores, fits))
