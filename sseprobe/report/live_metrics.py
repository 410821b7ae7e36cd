"""What a run exports to Prometheus while it lasts: small snapshots of the live state, and their metric families.

Pure: no server and no clock here (``load/metrics.py`` serves them). A snapshot is taken once per progress
interval (1 s) from the state the run already keeps, never per session: the outcome counters, and the
Prometheus bucket counts derived from the run's own HDR histograms (one vectorised pass over their non-empty
buckets, ~0.1 ms). Snapshots add across worker processes, Ray actors and ``--until-decided`` batches.

Buckets (``BOUNDS_S``): classic buckets, geometric, ratio 1.05 from 0.1 s to ~10 s (96 bounds), so a 5 %
change of a latency in that range moves it by a bucket and ``histogram_quantile`` interpolates within 5 %;
ratio 1.25 below 0.1 s (from 1 ms) and above 10 s (to ~5 min, the session timeout): a SLO dashboard needs
those ranges seen, not resolved to 5 %. 132 bounds and +Inf a histogram. Not native histograms: prometheus-client
(0.26) cannot expose them and Debian's Prometheus (2.42) reads them only behind a feature flag.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
from hdrh.histogram import HdrHistogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .._outcomes import Outcome
from ..verdict.stats import CohortStats, histogram_arrays

__all__ = [
    "BOUNDS_S",
    "LEVEL_VALUES",
    "LiveCohort",
    "LiveHistogram",
    "LiveSnapshot",
    "LiveView",
    "SnapshotCollector",
    "bucket_width",
    "cohort_snapshot",
    "live_histogram",
    "merge_snapshots",
]


def _geometric(lo: float, hi: float, ratio: float) -> list[float]:
    """``lo * ratio**k`` below ``hi`` (4 significant figures, so the ``le`` labels stay readable)."""
    n = math.ceil(math.log(hi / lo) / math.log(ratio))
    return [float(f"{lo * ratio**k:.4g}") for k in range(n)]


# 1 ms .. 0.1 s at 1.25, 0.1 s .. 10.4 s at 1.05, 10.4 s .. ~5 min at 1.25 (seconds, ascending)
_FINE = _geometric(0.1, 10.0, 1.05) + [float(f"{0.1 * 1.05**95:.4g}")]
BOUNDS_S: tuple[float, ...] = tuple(_geometric(0.001, 0.1, 1.25) + _FINE + _geometric(_FINE[-1] * 1.25, 330.0, 1.25))
_BOUNDS_US = np.array([b * 1e6 for b in BOUNDS_S])
_LE = [f"{b:g}" for b in BOUNDS_S] + ["+Inf"]

# A verdict level as a number (the exit codes' order): GREEN 0, YELLOW 1, RED 2, INCONCLUSIVE 3
LEVEL_VALUES = {"GREEN": 0, "YELLOW": 1, "RED": 2, "INCONCLUSIVE": 3}


def bucket_width(seconds: float) -> tuple[float, float]:
    """The bucket a value falls in, (lower, upper) bound: the resolution of ``histogram_quantile`` there."""
    i = int(np.searchsorted(np.array(BOUNDS_S), seconds, side="left"))
    lower = BOUNDS_S[i - 1] if i > 0 else 0.0
    return lower, BOUNDS_S[i] if i < len(BOUNDS_S) else math.inf


@dataclass(frozen=True)
class LiveHistogram:
    """Counts per bucket (not cumulative; one more than ``BOUNDS_S``: above the last bound) and their sum."""

    counts: tuple[int, ...] = (0,) * (len(BOUNDS_S) + 1)
    sum_s: float = 0.0

    def __add__(self, other: LiveHistogram) -> LiveHistogram:
        return LiveHistogram(
            tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)), self.sum_s + other.sum_s
        )


def live_histogram(h: HdrHistogram) -> LiveHistogram:
    """An HDR histogram (µs) in the Prometheus buckets. Each HDR bucket counts at its highest equivalent
    value (within 0.1 %), as the results document's percentiles do; the sum likewise."""
    values, counts = histogram_arrays(h)
    if not len(counts):
        return LiveHistogram()
    idx = np.searchsorted(_BOUNDS_US, values, side="left")
    binned = np.bincount(idx, weights=counts, minlength=len(BOUNDS_S) + 1)
    return LiveHistogram(tuple(int(c) for c in binned), float(np.dot(values, counts)) / 1e6)


@dataclass(frozen=True)
class LiveCohort:
    flow: str
    outcomes: Mapping[str, int]
    in_flight: int
    ttfe: LiveHistogram
    completion: LiveHistogram

    def __add__(self, other: LiveCohort) -> LiveCohort:
        outcomes = dict(self.outcomes)
        for k, n in other.outcomes.items():
            outcomes[k] = outcomes.get(k, 0) + n
        return LiveCohort(
            self.flow or other.flow,
            outcomes,
            self.in_flight + other.in_flight,
            self.ttfe + other.ttfe,
            self.completion + other.completion,
        )


def cohort_snapshot(stats: CohortStats, in_flight: int) -> LiveCohort:
    """One cohort now: its outcome counts so far, sessions in flight, TTFE and completion in buckets."""
    return LiveCohort(
        stats.flow,
        dict(stats.outcomes),
        in_flight,
        live_histogram(stats.histograms["ttfe_us"]),
        live_histogram(stats.histograms["completion_us"]),
    )


@dataclass(frozen=True)
class LiveSnapshot:
    """One process's (or the merged) live state: small and picklable, sent once a second."""

    cohorts: Mapping[str, LiveCohort] = field(default_factory=dict)
    offered_rate: float = 0.0  # sessions started per second over the last interval
    generator_lag_s: float = 0.0  # the event loop's lag p99 over the last interval
    saturated: bool = False  # the generator's own rule (generator_block) on the last interval


def merge_snapshots(parts: Iterable[LiveSnapshot]) -> LiveSnapshot:
    """Counts, in-flight and rates add; the lag is the worst part's, saturated if any part is."""
    cohorts: dict[str, LiveCohort] = {}
    rate, lag, saturated = 0.0, 0.0, False
    for p in parts:
        for name, c in p.cohorts.items():
            cohorts[name] = cohorts[name] + c if name in cohorts else c
        rate += p.offered_rate
        lag = max(lag, p.generator_lag_s)
        saturated = saturated or p.saturated
    return LiveSnapshot(cohorts, rate, lag, saturated)


@dataclass(frozen=True)
class LiveView:
    """What one scrape sees: the merged snapshot, the live verdict (metric -> level), and whether it runs."""

    snapshot: LiveSnapshot
    verdict: Mapping[str, str]
    running: bool


def _histogram(name: str, doc: str, per: dict[tuple[str, str], LiveHistogram]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=["cohort", "flow"])
    for labels, h in sorted(per.items()):
        cumulative = np.cumsum(h.counts)
        buckets = [(le, float(n)) for le, n in zip(_LE, cumulative, strict=True)]
        family.add_metric(list(labels), buckets, h.sum_s)
    return family


class SnapshotCollector:
    """A prometheus-client collector reading the latest view at scrape time: no metric object is
    updated per session (a scrape costs ~1 ms; the run pays only the once-a-second snapshot)."""

    def __init__(self, view: Callable[[], LiveView]) -> None:
        self._view = view

    def describe(self) -> list[Metric]:
        return []  # families are built at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        v = self._view()
        snap = v.snapshot
        sessions = CounterMetricFamily(
            "sseprobe_sessions", "Sessions finished, by cohort and outcome", labels=["cohort", "flow", "outcome"]
        )
        in_flight = GaugeMetricFamily(
            "sseprobe_in_flight", "Sessions started and not finished", labels=["cohort", "flow"]
        )
        for name, c in sorted(snap.cohorts.items()):
            # every outcome from the start, at 0: increase() and rate() then see a series' first sessions
            counts = {str(o): 0 for o in Outcome} | dict(c.outcomes)
            for outcome, n in sorted(counts.items()):
                sessions.add_metric([name, c.flow, outcome], float(n))
            in_flight.add_metric([name, c.flow], float(c.in_flight))
        yield sessions
        yield _histogram(
            "sseprobe_ttfe_seconds",
            "Time to the first event with answer content, from the scheduled start",
            {(n, c.flow): c.ttfe for n, c in snap.cohorts.items()},
        )
        yield _histogram(
            "sseprobe_completion_seconds",
            "Time to the completion event, from the scheduled start",
            {(n, c.flow): c.completion for n, c in snap.cohorts.items()},
        )
        yield in_flight
        yield GaugeMetricFamily("sseprobe_offered_rate", "Sessions started per second", value=snap.offered_rate)
        yield GaugeMetricFamily(
            "sseprobe_generator_lag_seconds", "Event-loop lag p99 of the generator", value=snap.generator_lag_s
        )
        yield GaugeMetricFamily(
            "sseprobe_generator_saturated",
            "1 when the generator's own timing is late (its latencies are then bounded, not exact)",
            value=float(snap.saturated),
        )
        verdict = GaugeMetricFamily(
            "sseprobe_verdict",
            "Live verdict after the last look: 0 GREEN, 1 YELLOW, 2 RED, 3 INCONCLUSIVE",
            labels=["metric"],
        )
        for metric, level in sorted(v.verdict.items()):
            verdict.add_metric([metric], float(LEVEL_VALUES.get(level, 3)))
        yield verdict
        yield GaugeMetricFamily(
            "sseprobe_running", "1 while the run lasts, 0 while the endpoint lingers", value=float(v.running)
        )
