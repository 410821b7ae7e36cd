"""Several shares of one load as one measurement: what the fork runner and the Ray cluster both merge.

Each share (a forked worker, a Ray actor) ships back a payload: its run info, its cohorts' encoded
histograms, its one-second intervals and its generator block. Counts and histograms add bucket by
bucket, so the merged percentiles are those of one process that saw every session (never a mean of
per-share percentiles). The generator block is re-derived from the shares' merged loop-lag histograms
by the caller's ``derive`` (the runner's analysis): this module only adds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import NotRequired, TypedDict

from .._errors import SseprobeError
from .._redact import redact_url
from ..verdict.intervals import merge_intervals
from ..verdict.schema import CohortDoc, GeneratorDoc, IntervalDoc, LagOnlyDoc
from ..verdict.stats import CohortStats
from .engine import CohortSpec, Load, RunInfo

__all__ = [
    "Measured",
    "RunFailure",
    "Derive",
    "SharePayload",
    "merge_results",
    "worker_failure",
    "now_iso",
    "empty_stats",
    "encode_cohorts",
    "share_load",
]

# (merged cohort stats, the shares' generator blocks) -> the merged generator block
Derive = Callable[[dict[str, CohortStats], Sequence[GeneratorDoc | LagOnlyDoc]], GeneratorDoc]


@dataclass
class Measured:
    info: RunInfo
    cohorts: dict[str, CohortStats]
    intervals: list[IntervalDoc]
    generator: GeneratorDoc
    worker_errors: list[str] = field(default_factory=list)
    ranged: GeneratorDoc | None = None  # stopped early for a lower load (self-ranging): that window's block


class SharePayload(TypedDict):
    """What one share (a forked worker, a Ray actor) ships back: its measurement, encoded (a plain dict
    that pickles across the process boundary). A lost actor's is rebuilt from its last checkpoint."""

    info: RunInfo
    cohorts: dict[str, CohortDoc]
    intervals: list[IntervalDoc]
    generator: GeneratorDoc | LagOnlyDoc  # LagOnlyDoc: a lost actor's, which kept no generator block
    start_skew_ms: NotRequired[float]  # a Ray actor's: how late it reached the common start
    cpu_s: NotRequired[float]  # a Ray actor's: its process's CPU seconds over the run


class RunFailure(SseprobeError, RuntimeError):
    """The run itself could not happen (every worker failed): a failure of sseprobe, exit 3."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def empty_stats(cohorts: Sequence[CohortSpec]) -> dict[str, CohortStats]:
    return {c.name: CohortStats(flow=c.options.flow, url=redact_url(c.options.url)) for c in cohorts}


def encode_cohorts(stats: dict[str, CohortStats]) -> dict[str, CohortDoc]:
    """The cohorts as the results document holds them (encoded histograms): what a share ships back."""
    return {name: s.to_dict() for name, s in stats.items()}


def _share(total: int | None, part: int, parts: int) -> int | None:
    if total is None:
        return None
    return total // parts + (1 if part < total % parts else 0)


def share_load(load: Load, part: int, parts: int) -> Load:
    """Share ``part`` of ``parts`` of the load: sessions, users (``-c``) and the in-flight cap split so
    the shares add up to what was asked exactly (the first ``total % parts`` shares take one more);
    the schedule's arrivals are shared by ``part``/``parts`` (each share every Nth). Callers never make
    more shares than sessions may be in flight, so each share gets at least one."""
    return replace(
        load,
        part=part,
        parts=parts,
        sessions=_share(load.sessions, part, parts),
        concurrency=max(1, _share(load.concurrency, part, parts) or 1),
        max_in_flight=max(1, _share(load.max_in_flight, part, parts) or 1),
    )


def merge_results(
    cohorts: Sequence[CohortSpec],
    results: dict[int, SharePayload],
    errors: list[str],
    derive: Derive,
    stopped: str | None = None,
) -> Measured:
    """The shares' payloads (by part) as one measurement. ``errors``: one line per share that failed
    (its payload, if any, is a checkpoint); the run counts as interrupted when there is any."""
    stats = empty_stats(cohorts)
    infos: list[RunInfo] = []
    for part in sorted(results):
        r = results[part]
        infos.append(r["info"])
        for name, d in r["cohorts"].items():
            stats[name].merge(CohortStats.from_dict(d))
    blocks = [results[part]["generator"] for part in sorted(results)]
    failure = worker_failure(errors)
    if not infos:
        if stopped is None:
            raise RunFailure(f"no worker could run: {failure}")
        return Measured(RunInfo(now_iso(), 0.0, True, stopped), stats, [], derive(stats, []), errors)
    info = RunInfo(
        started=min(i.started for i in infos),
        duration_s=max(i.duration_s for i in infos),
        interrupted=any(i.interrupted for i in infos) or bool(errors),
        stop_reason=next((i.stop_reason for i in infos if i.stop_reason), None) or failure,
    )
    return Measured(
        info, stats, merge_intervals([r["intervals"] for r in results.values()]), derive(stats, blocks), errors
    )


def worker_failure(errors: list[str]) -> str | None:
    """One short line for the stop reason, however many workers failed (the full list is worker_errors)."""
    if not errors:
        return None
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{errors[0][:160]}{more}"
