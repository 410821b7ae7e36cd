"""One share of a cluster run, inside a Ray actor: started at one instant, kept alive by a lease.

A threaded actor: ``run`` holds one thread (the engine's own event loop) while ``poll``, ``renew``,
``stop`` and ``clock`` answer on others. No fork, no signal handlers: stops arrive as actor calls.

The lease: the driver renews it every LEASE_RENEW_S (1 s); a watchdog thread in the actor aborts
the share when no renewal came for LEASE_S (3 s), checking every 0.25 s. So the load never outlives
its driver by more than ~3.3 s plus the abort (in-flight sessions are cancelled, no grace), whatever
Ray does about an actor whose owner died (it kept sending for 52-84 s in the field, see docs/ray.md).
Three seconds tolerate two lost or late renewals on a busy node; a false lapse is not silent: the
share ends with the stop reason below, and the driver reports the run interrupted.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict

from .._config import Limits, Timeouts
from ..verdict.schema import CheckpointDoc, IntervalDoc
from ..verdict.stats import CohortStats
from .engine import CohortSpec, Load, RunControl
from .merge import SharePayload, encode_cohorts
from .progress import Progress
from .runner import RunOptions, measure_share, share_payload

__all__ = ["LEASE_RENEW_S", "LEASE_S", "LATE_LIMIT_S", "LateStart", "Polled", "Prepared", "ShareActor", "LEASE_LAPSED"]

LATE_LIMIT_S = 1.0  # an actor this late to the common start refuses: its share never runs twice or skewed
CHECKPOINT_EVERY_S = 10.0  # cumulative histograms travel to the driver this often: what a lost actor leaves
LEASE_RENEW_S = 1.0  # the driver renews every actor's lease this often
LEASE_S = 3.0  # no renewal for this long: the driver is gone, the share aborts
WATCHDOG_EVERY_S = 0.25
LEASE_LAPSED = "driver lost: its lease lapsed"


class LateStart(RuntimeError):
    """An actor reached the common start too late and refused to run its share (``late_s`` late)."""

    def __init__(self, message: str, late_s: float | None = None) -> None:
        super().__init__(message, late_s)
        self.late_s = late_s

    def __str__(self) -> str:
        return str(self.args[0])


class Prepared(TypedDict):
    """``prepare``'s answer: where the actor runs, and each target host's name resolution ("ok" or why not)."""

    node_id: str
    pid: int
    dns: dict[str, str]


class Polled(TypedDict):
    """``poll``'s answer: the latest progress, and the latest checkpoint when the driver has not seen it."""

    progress: Progress | None
    checkpoint_seq: int
    checkpoint: CheckpointDoc | None


@dataclass(frozen=True)
class _Snapshot:
    """A checkpoint as the engine's loop takes it: the cohorts copied, not yet encoded (a poll encodes)."""

    at_s: float
    started: str
    cohorts: dict[str, CohortStats]
    sessions: int
    intervals: list[IntervalDoc]

    def encoded(self) -> CheckpointDoc:
        return {
            "at_s": self.at_s,
            "started": self.started,
            "cohorts": encode_cohorts(self.cohorts),
            "sessions": self.sessions,
            "intervals": self.intervals,
        }


class ShareActor:
    """One share of the load in one Ray actor process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control = RunControl()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: tuple[str, bool] | None = None  # (reason, abort) not yet handed to the loop
        self._stopped = threading.Event()
        self._progress: Progress | None = None
        self._checkpoint: _Snapshot | None = None
        self._checkpoint_seq = 0
        self._next_checkpoint = CHECKPOINT_EVERY_S
        self._started = ""
        self._ran = False
        self._renewed = time.monotonic()

    def prepare(self, hosts: Sequence[str]) -> Prepared:
        """Everything slow before the start: imports are done by now; resolve the targets' names."""
        import ray

        dns: dict[str, str] = {}
        for host in hosts:
            try:
                socket.getaddrinfo(host, None)
                dns[host] = "ok"
            except OSError as exc:
                dns[host] = f"unresolved: {exc}"
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "dns": dns}

    def clock(self) -> tuple[float, float]:
        t1 = time.time()
        return t1, time.time()

    def renew(self) -> None:
        """The driver is alive: the lease runs LEASE_S from now (this node's monotonic clock)."""
        self._renewed = time.monotonic()

    def run(
        self,
        local_start: float,
        part: int,
        parts: int,
        cohorts: Sequence[CohortSpec],
        load: Load,
        timeouts: Timeouts,
        limits: Limits,
        opts: RunOptions,
        report: bool,
    ) -> SharePayload:
        """Wait for the common instant (in this node's clock), refuse if more than a second late, run.
        ``report``: keep progress (and the live window, when the driver judges triggers) for ``poll``."""
        if self._ran:
            raise LateStart("this actor already ran its share: refused, so no share ever runs twice")
        self._ran = True
        self._renewed = time.monotonic()
        done = threading.Event()
        threading.Thread(target=self._watch, args=(done,), daemon=True, name="sseprobe-lease").start()
        try:
            self._stopped.wait(max(0.0, local_start - time.time()))
            late = time.time() - local_start
            if late > LATE_LIMIT_S:
                raise LateStart(
                    f"reached the common start {late:.2f} s late: refused, out of step with the others", late
                )
            self._started = datetime.now(UTC).isoformat(timespec="milliseconds")
            self._apply_pending()  # a stop before the start: the engine starts stopped (no loop exists yet)
            cpu0 = time.process_time()
            payload = share_payload(
                measure_share(
                    part,
                    parts,
                    cohorts,
                    load,
                    timeouts,
                    limits,
                    opts,
                    ((), ()),
                    self._on_progress if report else None,
                    control=self._control,
                    checkpoint=self._on_tick,
                )
            )
        finally:
            done.set()
        payload["start_skew_ms"] = late * 1000.0
        payload["cpu_s"] = time.process_time() - cpu0  # the whole actor process: was the node the bottleneck?
        return payload

    def poll(self, known_checkpoint: int) -> Polled:
        """Latest progress; the latest checkpoint too when the driver has not seen it yet. The
        checkpoint is encoded here, on this call's thread: the engine's loop only copied it."""
        with self._lock:
            progress, seq, copy = self._progress, self._checkpoint_seq, self._checkpoint
        if seq <= known_checkpoint or copy is None:
            return {"progress": progress, "checkpoint_seq": seq, "checkpoint": None}
        return {"progress": progress, "checkpoint_seq": seq, "checkpoint": copy.encoded()}

    def stop(self, reason: str, abort: bool = False) -> None:
        with self._lock:
            if self._pending is None or abort:
                self._pending = (reason, abort)
            loop = self._loop
        self._stopped.set()
        if loop is not None:
            loop.call_soon_threadsafe(self._apply_pending)

    def _watch(self, done: threading.Event) -> None:
        """The lease's watchdog: no renewal for LEASE_S, the share aborts (its driver is gone)."""
        while not done.wait(WATCHDOG_EVERY_S):
            quiet = time.monotonic() - self._renewed
            if quiet > LEASE_S:
                self.stop(f"{LEASE_LAPSED} (no renewal for {quiet:.1f} s)", abort=True)
                return

    # on the engine's loop

    def _apply_pending(self) -> None:
        with self._lock:
            pending = self._pending
        if pending is not None:
            reason, abort = pending
            (self._control.abort if abort else self._control.stop)(reason)

    def _on_progress(self, progress: Progress) -> None:
        with self._lock:
            self._progress = progress

    def _on_tick(self, now: float, stats: dict[str, CohortStats], intervals: list[IntervalDoc]) -> None:
        """Each interval: learn the loop (stop calls need it), hand over pending stops, checkpoint."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
        self._apply_pending()
        if now < self._next_checkpoint:
            return
        self._next_checkpoint = now + CHECKPOINT_EVERY_S
        copies = {k: _copy(v) for k, v in stats.items()}  # ~1 ms here; encoding (~50 ms) waits for a poll
        sessions = sum(c.sessions for c in stats.values())
        # closed intervals are never changed again: a shallow copy of their list is a copy
        checkpoint = _Snapshot(now, self._started, copies, sessions, list(intervals))
        with self._lock:
            self._checkpoint = checkpoint
            self._checkpoint_seq += 1


def _copy(stats: CohortStats) -> CohortStats:
    """A snapshot the loop can go on adding to the original of: merged into an empty one, losslessly."""
    snapshot = CohortStats(flow=stats.flow, url=stats.url)
    snapshot.merge(stats)
    return snapshot
