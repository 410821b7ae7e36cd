"""``baseline collect --from-log ... --window 24h``: the rollout checklist's "Baseline Metrics Collection".

The logs' cohorts over the window become an ordinary results document (``sseprobe.result/1``, encoded
histograms and all), so ``compare BASELINE.json CANDIDATE.json`` and the monitor's ``baseline`` path read
it as they read any saved run; its ``source`` block says it is real traffic, its ``baseline`` block when
and from what it was collected. No verdict: a baseline is judged against, it judges nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..report.document import build_document
from ..verdict.schema import ResultsDocument
from .logmap import SourceError
from .logs import LogRead, iso

__all__ = ["baseline_document"]


def baseline_document(read: LogRead) -> ResultsDocument:
    """The baseline document of a LogRead; SourceError when no cohort has a single record."""
    kept = {name: stats for name, stats in read.cohorts.items() if stats.sessions}
    if not kept:
        raise SourceError(
            f"no records of any cohort in the window: nothing to keep as a baseline ({read.lines:,} lines read)"
        )
    w = read.window
    stamped = [s for s in read.spans.values() if s.stamped]
    start = w.since if w.since is not None else min((s.first for s in stamped), default=None)
    end = w.until if w.until is not None else max((s.last for s in stamped), default=None)
    source = read.to_dict()
    return build_document(
        started=iso(start) if start is not None else datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        duration_s=round(end - start, 3) if start is not None and end is not None else 0.0,
        config={"command": "baseline collect", "source": "log", "map": read.log_map.source},
        cohorts=kept,
        extra={
            "source": source,
            "baseline": {
                "saved": datetime.now(UTC).isoformat(timespec="seconds"),
                "source": "log: " + ", ".join(read.files),
            },
        },
    )
