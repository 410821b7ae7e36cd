"""What is happening *now*: a rolling window of per-second stats, and the one-line progress text.

Pure bookkeeping and formatting; the runner owns the clock and the terminal.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .._record import SessionRecord
from ..verdict.intervals import merge_intervals
from ..verdict.stats import CohortStats

__all__ = ["LiveWindow", "Progress", "SustainedTrigger", "merge_progress", "progress_line"]


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
    interval: dict[str, Any] | None  # the last closed interval (as the results document's intervals)
    seconds_left: float | None  # until arrivals end (duration or schedule); None: no time bound
    sessions_left: int | None  # not yet started; None: no session bound
    fired: list[str]
    # a worker's live window (cohort -> CohortStats.to_dict()), sent only when the parent judges
    # abort-on-trigger on all workers' windows merged
    window: dict[str, dict[str, Any]] | None = None


def merge_progress(parts: list[Progress]) -> Progress:
    """Several workers' progress as one: counts and rates add, the intervals merge histogram by histogram."""
    outcomes: dict[str, dict[str, int]] = {}
    for p in parts:
        for cohort, counts in p.outcomes.items():
            dst = outcomes.setdefault(cohort, {})
            for outcome, n in counts.items():
                dst[outcome] = dst.get(outcome, 0) + n
    intervals = [[{**p.interval, "t": 0}] for p in parts if p.interval]  # each worker's newest, as one
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


def _ttfe(interval: dict[str, Any] | None, cohort: str) -> str:
    c = (interval or {}).get("cohorts", {}).get(cohort, {})
    if "ttfe_p50_ms" not in c:
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
