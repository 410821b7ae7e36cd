"""Live metrics while a run lasts: the once-a-second snapshot of one process, and the one endpoint.

Each process of a run (the only one, a forked worker, a Ray actor) takes a :class:`LiveSnapshot` on its
progress tick (``LiveProbe.take``: ~0.3 ms, never per session). The process that serves (the parent, the
Ray driver) gets the others' snapshots inside the progress messages it already receives, keeps the last
one of each part (``LiveMetrics.publish``) and adds them up at scrape time: one endpoint, the merged view.
Batches of ``--until-decided`` add up too (``batch_done`` folds a finished batch's exact final counts in).
After the run the endpoint stays up ``linger`` seconds, so the last values are scraped.

The HTTP server is prometheus-client's own (a daemon thread); it binds before any load, so a port in
use is refused up front. Labels carry cohort, flow, outcome and metric names only: never a URL.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from hdrh.histogram import HdrHistogram
from prometheus_client import CollectorRegistry, start_http_server

from .._config import METRICS_LINGER_S
from ..report.live_metrics import (
    LiveCohort,
    LiveHistogram,
    LiveSnapshot,
    LiveView,
    SnapshotCollector,
    cohort_snapshot,
    merge_snapshots,
)
from ..verdict.stats import CohortStats

if TYPE_CHECKING:
    from .drivers import RunControl

__all__ = ["DEFAULT_LINGER_S", "Endpoint", "FORWARD", "LiveMetrics", "LiveProbe", "MetricsSink", "cannot_bind", "serve"]

DEFAULT_LINGER_S = METRICS_LINGER_S  # see sseprobe/_config.py


@dataclass(frozen=True)
class Endpoint:
    """Where the live metrics are served: loopback unless told otherwise. Port 0: any free port."""

    port: int
    host: str = "127.0.0.1"
    linger: float = DEFAULT_LINGER_S


class MetricsSink(Protocol):
    def publish(self, part: int, snap: LiveSnapshot) -> None:
        """The latest snapshot of one part of the run (part 0 when there is one)."""


class _Forward:
    """In a worker or an actor: snapshots are taken, and travel to the parent in the progress messages."""

    def publish(self, part: int, snap: LiveSnapshot) -> None:
        pass


FORWARD = _Forward()


def _counts(h: HdrHistogram) -> np.ndarray:
    return np.ctypeslib.as_array(h.counts)[: h.counts_len].astype(np.int64)


def _highest_values(h: HdrHistogram) -> np.ndarray:
    """The highest equivalent value (µs) of every index of ``h``'s counts array."""
    idx = np.arange(h.counts_len, dtype=np.int64)
    half = int(h.sub_bucket_half_count)
    bucket = (idx >> int(h.sub_bucket_half_count_magnitude)) - 1
    sub = (idx & (half - 1)) + half
    low = bucket < 0
    sub, bucket = np.where(low, sub - half, sub), np.where(low, 0, bucket)
    shift = bucket + int(h.unit_magnitude)
    return (sub << shift) + (np.int64(1) << shift) - 1


def _p99_ms(delta: np.ndarray, values: np.ndarray) -> float:
    total = int(delta.sum())
    if total <= 0:
        return 0.0
    i = int(np.searchsorted(np.cumsum(delta), -(-99 * total // 100), side="left"))
    return float(values[min(i, len(values) - 1)]) / 1000.0


class LiveProbe:
    """One process's snapshot on each tick: counts so far, and the generator over the last interval
    (loop lag p99 and start lag p99 from the histograms' growth since the last tick; saturated by the
    generator's own rule, ``judge(loop_p99_ms, start_p99_ms)``)."""

    def __init__(self, loop_lag: HdrHistogram, judge: Any) -> None:
        self._loop_lag = loop_lag
        self._values = _highest_values(loop_lag)
        self._prev_loop = _counts(loop_lag)
        self._prev_start: np.ndarray | None = None
        self._judge = judge

    def take(self, stats: Mapping[str, CohortStats], control: RunControl, rate: float) -> LiveSnapshot:
        loop = _counts(self._loop_lag)
        start = sum((_counts(s.histograms["lag_us"]) for s in stats.values()), np.zeros_like(loop))
        loop_ms = _p99_ms(loop - self._prev_loop, self._values)
        start_ms = _p99_ms(start - self._prev_start, self._values) if self._prev_start is not None else 0.0
        self._prev_loop, self._prev_start = loop, start
        cohorts = {
            name: cohort_snapshot(s, max(control.started_by.get(name, 0) - s.sessions, 0)) for name, s in stats.items()
        }
        return LiveSnapshot(cohorts, rate, loop_ms / 1000.0, bool(self._judge(loop_ms, start_ms)))


class LiveMetrics:
    """The serving side: the latest snapshot of each part, batches already done, the live verdict."""

    def __init__(self, flows: Mapping[str, str] | None = None) -> None:
        """``flows``: cohort -> flow, served at zero from the start, so rate() and increase() see the first sessions."""
        self._lock = threading.Lock()
        zero = {name: LiveCohort(flow, {}, 0, LiveHistogram(), LiveHistogram()) for name, flow in (flows or {}).items()}
        self._done = LiveSnapshot(zero)
        self._parts: dict[int, LiveSnapshot] = {}
        self._gauges = LiveSnapshot()  # the last live gauges, kept once a batch is done
        self._verdict: dict[str, str] = {}
        self._running = True

    def publish(self, part: int, snap: LiveSnapshot) -> None:
        with self._lock:
            self._parts[part] = snap

    def batch_done(self, cohorts: Mapping[str, CohortStats]) -> None:
        """A measurement ended: its exact final counts (the merged stats) replace its parts' last snapshots."""
        final = LiveSnapshot({name: cohort_snapshot(s, 0) for name, s in cohorts.items()})
        with self._lock:
            if self._parts:
                self._gauges = merge_snapshots(self._parts.values())
            self._done = merge_snapshots([self._done, final])
            self._parts = {}

    def set_verdict(self, levels: Mapping[str, str]) -> None:
        with self._lock:
            self._verdict = dict(levels)

    def finish(self) -> None:
        with self._lock:
            self._running = False

    def view(self) -> LiveView:
        with self._lock:
            parts = list(self._parts.values())
            done, gauges, verdict, running = self._done, self._gauges, dict(self._verdict), self._running
        if parts:
            live = merge_snapshots(parts)
            merged = merge_snapshots([done, live])
            snap = LiveSnapshot(merged.cohorts, live.offered_rate, live.generator_lag_s, live.saturated)
        else:  # between batches and after the end: nothing offered, the last lag seen
            snap = LiveSnapshot(done.cohorts, 0.0, gauges.generator_lag_s, gauges.saturated)
        return LiveView(snap, verdict, running)


def cannot_bind(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on now, else None: for a caller that serves later (the monitor
    serves inside its probe) and must refuse before anything else happens."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, port))
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


@contextmanager
def serve(endpoint: Endpoint, flows: Mapping[str, str] | None = None) -> Iterator[tuple[LiveMetrics, str]]:
    """Serve the live metrics at ``endpoint`` (OSError when it cannot bind: before any load); yields the
    sink and the URL. On leaving: the run is over (``sseprobe_running`` 0), the endpoint lingers, then stops.
    A Ctrl-C during the linger ends it at once; the run's results are already out."""
    live = LiveMetrics(flows)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(live.view))
    server, thread = start_http_server(endpoint.port, endpoint.host, registry)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"
    try:
        yield live, url
        live.finish()
        if endpoint.linger > 0:
            with suppress(KeyboardInterrupt):
                time.sleep(endpoint.linger)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
