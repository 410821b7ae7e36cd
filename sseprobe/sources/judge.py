"""The same verdict on real traffic: two cohorts read from logs (or a metric store) through the same
``verdict.compare`` as a live comparison, into the same results document with its ``source`` recorded.

Real traffic is not interleaved by sseprobe: each cohort's users, requests and times are the
service's own, so a difference may be the traffic's and not the code's. Every such verdict says so.

The time rule (both cohorts must cover the same time, or time of day is compared, not the code):
* their spans (first to last timestamp) do not overlap at all: SourceError, exit 3, nothing judged;
* they overlap for less than ``MIN_OVERLAP`` (80 %) of the union of both spans: judged, with a note
  naming the share (a 5 % canary started two hours into a 24 h window overlaps 92 %);
* no timestamps: judged, with a note that the window could not be checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ..report.document import build_document
from ..verdict.compare import Verdict
from ..verdict.compare import judge as judge_cohorts
from ..verdict.policy import Policy
from ..verdict.schema import LogSourceDoc, PrometheusSourceDoc, ResultsDocument
from ..verdict.stats import CohortStats
from .logmap import SourceError
from .logs import LogRead, Span, iso

__all__ = ["MIN_OVERLAP", "REAL_TRAFFIC_NOTE", "Judged", "judge", "judge_logs", "time_notes"]

MIN_OVERLAP = 0.8
REAL_TRAFFIC_NOTE = (
    "note: real traffic, not interleaved by sseprobe: each cohort's users, requests and times are its own, "
    "so a difference may be the traffic's, not the service's"
)


@dataclass(frozen=True)
class Judged:
    """A verdict on two cohorts from a source, and the results document that records it."""

    verdict: Verdict
    document: ResultsDocument
    baseline: str
    candidate: str


def time_notes(base: Span, cand: Span, names: tuple[str, str]) -> list[str]:
    """The time rule of this module's docstring: notes, or SourceError when the spans are disjoint."""
    if not base.stamped or not cand.stamped:
        return ["note: no timestamps in a cohort: whether both cover the same time was not checked"]
    lo, hi = max(base.first, cand.first), min(base.last, cand.last)
    if lo > hi:
        raise SourceError(
            f"the cohorts cover different times ({names[0]} {iso(base.first)} to {iso(base.last)}, "
            f"{names[1]} {iso(cand.first)} to {iso(cand.last)}): refusing to compare them; "
            "give logs of the same time, or --since/--until"
        )
    union = max(base.last, cand.last) - min(base.first, cand.first)
    share = (hi - lo) / union if union > 0 else 1.0
    if share < MIN_OVERLAP:
        return [
            f"note: the cohorts' times overlap for only {share * 100:.0f} % of the time they cover "
            f"({iso(lo)} to {iso(hi)}): traffic outside the overlap may differ by time of day"
        ]
    return []


def pick(cohorts: Mapping[str, CohortStats], baseline: str | None, candidate: str | None) -> tuple[str, str]:
    """(baseline, candidate) cohort names: legacy against canonical unless named."""
    b, c = baseline or "legacy", candidate or "canonical"
    for name in (b, c):
        if name not in cohorts:
            raise SourceError(f"no cohort {name!r} in this source (it has: {', '.join(cohorts)})")
    if b == c:
        raise SourceError(f"baseline and candidate are the same cohort {b!r}")
    return b, c


def judge(
    cohorts: Mapping[str, CohortStats],
    names: tuple[str, str],
    policy: Policy,
    source: LogSourceDoc | PrometheusSourceDoc,
    notes: list[str],
    started: str | None = None,
    verdict: Verdict | None = None,
) -> Judged:
    """``compare`` on the named cohorts (or the ``verdict`` a source reached its own way), the notes added
    to its reasons, and the document recording the source."""
    b, c = names
    if verdict is None:
        verdict = judge_cohorts(cohorts[b], cohorts[c], policy)
    verdict.reasons.extend([REAL_TRAFFIC_NOTE, *notes])
    doc = build_document(
        started=started or datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        duration_s=0.0,
        config={"command": "compare", "source": source["kind"], "baseline": {"cohort": b}, "candidate": {"cohort": c}},
        cohorts={b: cohorts[b], c: cohorts[c]},
        verdict=verdict.section(),
        extra={"source": source},
    )
    return Judged(verdict, doc, b, c)


def judge_logs(read: LogRead, policy: Policy, baseline: str | None = None, candidate: str | None = None) -> Judged:
    """Compare two cohorts of a LogRead (default: legacy baseline, canonical candidate)."""
    b, c = pick(read.cohorts, baseline, candidate)
    notes = time_notes(read.spans[b], read.spans[c], (b, c))
    if read.unparseable:
        notes.append(
            f"note: {read.unparseable:,} of {read.lines:,} log lines could not be read (first: {read.examples[0]})"
        )
    if read.other:
        notes.append(f"note: {read.other:,} log lines name no cohort of the mapping (other traffic): not judged")
    if read.outside:
        notes.append(f"note: {read.outside:,} log lines fall outside the window: not judged")
    source = read.to_dict()
    first = min((s.first for s in read.spans.values() if s.stamped), default=None)
    last = max((s.last for s in read.spans.values() if s.stamped), default=None)
    judged = judge(read.cohorts, (b, c), policy, source, notes, None if first is None else iso(first))
    if first is not None and last is not None:
        judged.document["duration_s"] = round(last - first, 3)
    return judged
