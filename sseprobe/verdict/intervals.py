"""Per-interval counts and TTFE histograms, for plots over the run (the HdrHistogram interval-log idea).

Records are filed by the time they *finished*, so intervals close in order: only the current
interval's histograms are live; closed ones are kept encoded (a few hundred bytes each), so a
long soak does not grow memory by a histogram per second per cohort.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from .._record import SessionRecord
from .schema import IntervalCohortDoc, IntervalDoc

__all__ = ["IntervalLog", "interval_histogram", "merge_intervals"]


def interval_histogram() -> HdrHistogram:
    """Two significant figures: a tenth of the memory of the cohort histograms, ample for plots."""
    return HdrHistogram(1, 3_600_000_000, 2)


def _put_ttfe(cohort: IntervalCohortDoc, h: HdrHistogram) -> None:
    """A cohort's TTFE in an interval: p50 and p95 for plots, the encoded histogram for merging."""
    cohort["ttfe_p50_ms"] = h.get_value_at_percentile(50) / 1000
    cohort["ttfe_p95_ms"] = h.get_value_at_percentile(95) / 1000
    cohort["ttfe_us"] = h.encode().decode("ascii")


@dataclass
class _Open:
    finished: Counter[str] = field(default_factory=Counter)  # "cohort/outcome" -> n
    ttfe: dict[str, HdrHistogram] = field(default_factory=dict)


@dataclass
class IntervalLog:
    width: float = 1.0
    closed: list[IntervalDoc] = field(default_factory=list)
    _index: int = 0
    _open: _Open = field(default_factory=_Open)
    _starts: Counter[int] = field(default_factory=Counter)  # interval index -> sessions started

    def _roll_to(self, now: float) -> None:
        index = int(now // self.width)
        while self._index < index:
            self.closed.append(self._encode(self._index, self._open))
            self._open = _Open()
            self._index += 1

    def started(self, now: float) -> None:
        """A session started now: counted apart, so a start never lands in a closed interval."""
        self._starts[int(now // self.width)] += 1

    def add(self, rec: SessionRecord, now: float) -> None:
        self._roll_to(now)
        cur = self._open
        cur.finished[f"{rec.cohort}/{rec.outcome}"] += 1
        if rec.ttfe_ms is not None:
            h = cur.ttfe.get(rec.cohort)
            if h is None:
                h = cur.ttfe[rec.cohort] = interval_histogram()
            h.record_value(min(max(int(rec.ttfe_ms * 1000), 1), 3_600_000_000))

    def last_closed(self, now: float) -> IntervalDoc | None:
        """The newest interval that has ended by ``now``, encoded (live progress): closing it here
        changes nothing, as records arrive in time order and the next one would close it anyway."""
        self._roll_to(now)
        return self.closed[-1] if self.closed else None

    def finish(self, now: float) -> list[IntervalDoc]:
        self._roll_to(max(now, (max(self._starts, default=0) + 1) * self.width))
        if self._open.finished:
            self.closed.append(self._encode(self._index, self._open))
            self._open = _Open()
            self._index += 1
        return self.closed

    def _encode(self, index: int, cur: _Open) -> IntervalDoc:
        cohorts: dict[str, IntervalCohortDoc] = {}
        for key, n in cur.finished.items():
            cohort, outcome = key.split("/", 1)
            cohorts.setdefault(cohort, {"outcomes": {}})["outcomes"][outcome] = n
        for cohort, h in cur.ttfe.items():
            _put_ttfe(cohorts.setdefault(cohort, {"outcomes": {}}), h)
        return {"t": round(index * self.width, 3), "started": self._starts.get(index, 0), "cohorts": cohorts}


def merge_intervals(logs: list[list[IntervalDoc]]) -> list[IntervalDoc]:
    """Merge interval lists from several workers: counts add, histograms add, by interval start."""
    by_t: dict[float, IntervalDoc] = {}
    hists: dict[tuple[float, str], HdrHistogram] = {}
    for log in logs:
        for item in log:
            cur = by_t.setdefault(item["t"], {"t": item["t"], "started": 0, "cohorts": {}})
            cur["started"] += item["started"]
            for cohort, c in item["cohorts"].items():
                dst = cur["cohorts"].setdefault(cohort, {"outcomes": {}})
                for outcome, n in c["outcomes"].items():
                    dst["outcomes"][outcome] = dst["outcomes"].get(outcome, 0) + n
                if "ttfe_us" in c:
                    h = hists.setdefault((item["t"], cohort), interval_histogram())
                    h.add(HdrHistogram.decode(c["ttfe_us"]))
    for (t, cohort), h in hists.items():
        _put_ttfe(by_t[t]["cohorts"][cohort], h)
    return [by_t[t] for t in sorted(by_t)]
