"""What is happening *now*: a rolling window of per-second stats, its rollback triggers, and the
one-line progress text (printed in place on a terminal, or as a plain line every few seconds).

Bookkeeping, judging and formatting shared by the fork runner and the Ray cluster; they own the clock.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from .._record import SessionRecord
from ..report.live_metrics import LiveSnapshot
from ..verdict.intervals import merge_intervals
from ..verdict.policy import Policy, check_triggers
from ..verdict.schema import CohortDoc, IntervalDoc
from ..verdict.stats import CohortStats

__all__ = [
    "LiveWindow",
    "MergedWindow",
    "Progress",
    "SustainedTrigger",
    "judge_window",
    "merge_progress",
    "print_progress",
    "progress_line",
]


@dataclass
class LiveWindow:
    """The last ``seconds`` of finished sessions, per cohort, in one-second bins."""

    seconds: float = 10.0
    _bins: deque[tuple[int, dict[str, CohortStats]]] = field(default_factory=deque)

    def add(self, rec: SessionRecord, now: float) -> None:
        second = int(now)
        if not self._bins or self._bins[-1][0] != second:
            self._bins.append((second, {}))
        bin_ = self._bins[-1][1]
        stats = bin_.get(rec.cohort)
        if stats is None:
            stats = bin_[rec.cohort] = CohortStats.light()
        stats.add(rec)

    def stats(self, now: float) -> dict[str, CohortStats]:
        """Merged stats of the window ending now."""
        while self._bins and self._bins[0][0] <= now - self.seconds:
            self._bins.popleft()
        merged: dict[str, CohortStats] = {}
        for _, bin_ in self._bins:
            for cohort, s in bin_.items():
                merged.setdefault(cohort, CohortStats.light()).merge(s)
        return merged


@dataclass
class SustainedTrigger:
    """A rollback trigger counts only when it has held for ``seconds`` without a break."""

    seconds: float = 10.0
    _since: dict[str, float] = field(default_factory=dict)

    def update(self, fired: list[str], now: float) -> list[str]:
        """``fired``: trigger descriptions true now. Returns those sustained long enough."""
        for key in list(self._since):
            if key not in fired:
                del self._since[key]
        for key in fired:
            self._since.setdefault(key, now)
        return [k for k, t in self._since.items() if now - t >= self.seconds]


@dataclass
class Progress:
    """What a run (or one worker of it) shows of itself once a second. Small, so workers can send it to
    the parent every second: counts, and the last interval with its TTFE histogram already encoded."""

    elapsed: float
    phase: str
    target_rate: float | None
    achieved_rate: float
    in_flight: int
    outcomes: dict[str, dict[str, int]]  # cohort -> outcome -> sessions, since the start
    interval: IntervalDoc | None  # the last closed interval (as the results document's intervals)
    seconds_left: float | None  # until arrivals end (duration or schedule); None: no time bound
    sessions_left: int | None  # not yet started; None: no session bound
    fired: list[str]
    # a worker's live window (cohort -> CohortStats.to_dict()), sent only when the parent judges
    # abort-on-trigger on all workers' windows merged
    window: dict[str, CohortDoc] | None = None
    metrics: LiveSnapshot | None = None  # live metrics (load/metrics.py), when served: the parent merges them


def merge_progress(parts: list[Progress]) -> Progress:
    """Several workers' progress as one: counts and rates add, the intervals merge histogram by histogram."""
    outcomes: dict[str, dict[str, int]] = {}
    for p in parts:
        for cohort, counts in p.outcomes.items():
            dst = outcomes.setdefault(cohort, {})
            for outcome, n in counts.items():
                dst[outcome] = dst.get(outcome, 0) + n
    # each worker's newest interval, as one
    intervals: list[list[IntervalDoc]] = [[{**p.interval, "t": 0}] for p in parts if p.interval]
    targets = [p.target_rate for p in parts if p.target_rate is not None]
    seconds = [p.seconds_left for p in parts if p.seconds_left is not None]
    sessions = [p.sessions_left for p in parts if p.sessions_left is not None]
    return Progress(
        elapsed=max(p.elapsed for p in parts),
        phase=parts[0].phase,
        target_rate=sum(targets) if targets else None,
        achieved_rate=sum(p.achieved_rate for p in parts),
        in_flight=sum(p.in_flight for p in parts),
        outcomes=outcomes,
        interval=merge_intervals(intervals)[0] if intervals else None,
        seconds_left=max(seconds) if seconds else None,
        sessions_left=sum(sessions) if sessions else None,
        fired=sorted({f for p in parts for f in p.fired}),
    )


def _left(p: Progress) -> str:
    """Time left until arrivals end, or sessions left (with the time they take at the current rate)."""
    seconds, sessions = p.seconds_left, p.sessions_left
    if (seconds is not None and seconds <= 0) or sessions == 0:
        return f"arrivals done, finishing {p.in_flight}" if p.in_flight else "finishing"
    if seconds is not None:
        return f"left {seconds:.0f}s" + (f" ({sessions:,} sessions)" if sessions is not None else "")
    if sessions is not None:
        eta = f" (~{sessions / p.achieved_rate:.0f}s)" if p.achieved_rate > 0 else ""
        return f"left {sessions:,} sessions{eta}"
    return ""


def _ttfe(interval: IntervalDoc | None, cohort: str) -> str:
    c = interval["cohorts"].get(cohort) if interval is not None else None
    if c is None or "ttfe_p50_ms" not in c:
        return ""
    return f"TTFE p50 {c['ttfe_p50_ms']:.0f} p95 {c['ttfe_p95_ms']:.0f} ms"


def _cohorts(p: Progress) -> list[str]:
    """One cohort: its outcome counts; several (compare): ok and failed per cohort. TTFE of the last interval."""
    if len(p.outcomes) == 1:
        ((cohort, counts),) = p.outcomes.items()
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:4]
        return ["  ".join([*(f"{k} {v}" for k, v in top), _ttfe(p.interval, cohort)]).strip()]
    out = []
    for cohort, counts in sorted(p.outcomes.items()):
        ok = counts.get("ok", 0)
        failed = sum(n for k, n in counts.items() if k not in ("ok", "cancelled"))
        out.append(f"{cohort} ok {ok} failed {failed}  {_ttfe(p.interval, cohort)}".strip())
    return out


def progress_line(p: Progress) -> str:
    """``12.0s  ramp  rate 48.0/50 /s  in flight 96  left 18s  | canonical ok 510 failed 3  TTFE p50 40 p95 62 ms``"""
    rate = f"{p.achieved_rate:.1f}" + (f"/{p.target_rate:.0f}" if p.target_rate is not None else "") + " /s"
    parts = [f"{p.elapsed:6.1f}s", p.phase, f"rate {rate}", f"in flight {p.in_flight}", _left(p)]
    head = "  ".join(x for x in parts if x)
    tail = [c for c in _cohorts(p) if c]
    if p.fired:
        tail.append("TRIGGER (recent sessions): " + "; ".join(p.fired))
    return " | ".join([head, *tail])


def print_progress(out: TextIO, every: float | None) -> Callable[[Progress], None]:
    """A terminal gets one line redrawn in place; anything else (a log, a pipe) a plain line every ``every`` s,
    so a long run under cron or CI says how it goes without flooding the log."""
    next_at = every or 0.0

    def show(p: Progress) -> None:
        nonlocal next_at
        if every is None:  # cut to the terminal's width: a wrapped line could not be redrawn in place
            out.write("\r\x1b[2K" + progress_line(p)[: _columns(out) - 1])
        elif p.elapsed >= next_at:
            next_at = p.elapsed + every
            out.write("sseprobe progress: " + progress_line(p) + "\n")
        out.flush()

    return show


def _columns(out: TextIO, fallback: int = 200) -> int:
    """The terminal's width; a terminal that does not say (0 columns) or no terminal: ``fallback``."""
    try:
        return os.get_terminal_size(out.fileno()).columns or fallback
    except (OSError, ValueError, AttributeError):
        return fallback


def judge_window(
    window: dict[str, CohortStats], policy: Policy, sustained: SustainedTrigger, now: float
) -> tuple[list[str], list[str]]:
    """(triggers firing now, those held long enough), as "cohort: reason". A trigger holds by its
    name, not its value: the value moves every second, and a trigger at 31 % then 33 % held all along."""
    reasons = {
        f"{name}: {t.name}": f"{name}: {t.reason}"
        for name, s in window.items()
        if s.attempts >= 20
        for t in check_triggers(s, policy)
    }
    held = sustained.update(list(reasons), now)
    return list(reasons.values()), [reasons[k] for k in held]


class MergedWindow:
    """Abort-on-trigger over several shares (forked workers, Ray actors): each sends its live window,
    and the one judge (the parent, the driver) judges their merge, so a trigger holds on the whole
    load exactly as it would in one process. A share that is gone (``forget``) no longer counts."""

    def __init__(self, policy: Policy, seconds: float | None) -> None:
        self.policy = policy
        self.windows: dict[int, dict[str, CohortDoc]] = {}
        self.sustained = SustainedTrigger(seconds or 0.0)

    def held(self, part: int, progress: Progress) -> list[str]:
        self.windows[part] = progress.window or {}
        return self.judge(progress.elapsed)

    def forget(self, part: int) -> None:
        self.windows.pop(part, None)

    def judge(self, now: float) -> list[str]:
        merged: dict[str, CohortStats] = {}
        for window in self.windows.values():
            for name, d in window.items():
                merged.setdefault(name, CohortStats.light(())).merge(CohortStats.from_dict(d))
        return judge_window(merged, self.policy, self.sustained, now)[1]
