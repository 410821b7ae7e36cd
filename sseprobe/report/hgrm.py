"""HdrHistogram's percentile-distribution text (``.hgrm``): the format its plotter and tools read.

Written here rather than with ``hdrh``'s ``output_percentile_distribution`` because that one
departs from the reference (Java) format: it leaves the standard deviation unscaled when the
values are scaled to another unit, and prints the total count as a float. The lines follow
``AbstractHistogram.outputPercentileDistribution``: a header, one line per percentile step
(``value percentile total-count 1/(1-percentile)``), the last (100 %) line without the last
column, then the ``#[Mean ...]``, ``#[Max ...]`` and ``#[Buckets ...]`` footer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from hdrh.histogram import HdrHistogram

from ..verdict.schema import ResultsDocument
from ..verdict.stats import CohortStats
from .document import write_atomic

__all__ = ["percentile_distribution", "export_hgrm", "hgrm_points"]

US_PER_MS = 1000.0


def hgrm_points(h: HdrHistogram, ticks_per_half_distance: int = 5) -> list[tuple[float, float, int]]:
    """(value, percentile in [0, 1], total count to there) per step of HDR's percentile iterator."""
    if h.get_total_count() == 0:
        return []
    return [
        (float(it.value_iterated_to), it.percentile_level_iterated_to / 100.0, int(it.total_count_to_this_value))
        for it in h.get_percentile_iterator(ticks_per_half_distance)
    ]


def percentile_distribution(h: HdrHistogram, scale: float = US_PER_MS, ticks_per_half_distance: int = 5) -> str:
    """The ``.hgrm`` text of one histogram; ``scale`` divides the recorded values (µs -> ms by default)."""
    digits = int(h.significant_figures)
    lines = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}", ""]
    for value, pct, total in hgrm_points(h, ticks_per_half_distance):
        if pct < 1.0:
            lines.append(f"{value / scale:12.{digits}f} {pct:2.12f} {total:10d} {1.0 / (1.0 - pct):14.2f}")
        else:
            lines.append(f"{value / scale:12.{digits}f} {pct:2.12f} {total:10d}")
    n = h.get_total_count()
    mean = h.get_mean_value() / scale if n else 0.0
    std = h.get_stddev() / scale if n else 0.0
    max_v = h.get_max_value() / scale if n else 0.0
    lines.append(f"#[Mean    = {mean:12.{digits}f}, StdDeviation   = {std:12.{digits}f}]")
    lines.append(f"#[Max     = {max_v:12.{digits}f}, Total count    = {n:12d}]")
    lines.append(f"#[Buckets = {h.bucket_count:12d}, SubBuckets     = {h.sub_bucket_count:12d}]")
    return "\n".join(lines) + "\n"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "cohort"


def export_hgrm(
    docs: Iterable[tuple[str, ResultsDocument]], folder: str | Path, histograms: tuple[str, ...] | None = None
) -> list[Path]:
    """Write ``<doc stem>.<cohort>.<histogram>.hgrm`` (values in ms) for every non-empty histogram.

    ``docs`` are (file name, results document) pairs; the stem keeps files of several documents apart.
    """
    out: list[Path] = []
    for source, doc in docs:
        stem = _safe(Path(source).stem)
        for cohort, data in doc.get("cohorts", {}).items():
            stats = CohortStats.from_dict(data)
            for name, h in stats.histograms.items():
                if histograms is not None and name not in histograms:
                    continue
                if h.get_total_count() == 0:
                    continue
                label = name[:-3] + "_ms" if name.endswith("_us") else name
                path = Path(folder) / f"{stem}.{_safe(cohort)}.{label}.hgrm"
                out.append(write_atomic(path, percentile_distribution(h).encode()))
    return out
