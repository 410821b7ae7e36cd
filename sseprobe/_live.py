"""What is happening *now*: a rolling window of per-second stats, and the one-line progress text.

Pure bookkeeping and formatting; the runner owns the clock and the terminal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._record import SessionRecord
from ._stats import CohortStats

__all__ = ["LiveWindow", "SustainedTrigger", "progress_line"]


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


def progress_line(
    elapsed: float,
    phase: str,
    target_rate: float | None,
    achieved_rate: float,
    in_flight: int,
    totals: Mapping[str, int],
    window: Mapping[str, CohortStats],
    triggers: list[str],
) -> str:
    """``12.0s ramp  rate 48.0/50 /s  in flight 96  ok 510 stream_error 3  | canonical p95 212ms``"""
    rate = f"{achieved_rate:.1f}" + (f"/{target_rate:.0f}" if target_rate is not None else "") + " /s"
    counts = "  ".join(f"{k} {v}" for k, v in sorted(totals.items(), key=lambda kv: -kv[1])[:4])
    p95s = []
    for cohort, s in window.items():
        h = s.histograms["ttfe_us"]
        if h.get_total_count():
            p95s.append(f"{cohort} p95 {h.get_value_at_percentile(95) / 1000:.0f}ms")
    parts: list[Any] = [f"{elapsed:6.1f}s", phase, f"rate {rate}", f"in flight {in_flight}", counts]
    if p95s:
        parts.append("| " + ", ".join(p95s))
    if triggers:
        parts.append("| TRIGGER: " + "; ".join(triggers))
    return "  ".join(str(p) for p in parts if p)
