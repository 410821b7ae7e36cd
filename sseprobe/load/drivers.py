"""The two load models as two drivers (k6's executors), over one shared way of starting sessions.

A driver only decides *when* the next session starts: :class:`ClosedDriver` runs ``users`` loops, each
starting its next session when the last one ends (after ``think`` seconds); :class:`OpenDriver` starts
sessions at the times a :class:`~._pacer.Schedule` gives, whether or not earlier ones have finished.
Everything else is :class:`Sessions`: the cohort interleave, numbering, the run clock, the stop limits
and the set of sessions in flight, so a third load model would be a third small driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .._config import FlowOptions, Limits, Timeouts
from .._record import SessionRecord
from ..wire.http import LeanClient
from ..wire.session import RunState, run_session
from .pacer import Schedule

__all__ = ["CohortSpec", "RunControl", "interleave", "Sessions", "Driver", "ClosedDriver", "OpenDriver"]


@dataclass(frozen=True)
class CohortSpec:
    name: str
    options: FlowOptions
    weight: float = 1.0  # share of the sessions, e.g. 5 and 95 for a 5 % rollout step


@dataclass
class RunControl:
    """Shared with whoever drives the run: ``stop()`` ends arrivals (grace applies),
    ``abort()`` cancels in-flight sessions at once. Counters are for live progress."""

    started: int = 0
    finished: int = 0
    started_by: dict[str, int] = field(default_factory=dict)  # cohort -> sessions started (live metrics)
    stop_reason: str | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _abort: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def in_flight(self) -> int:
        return self.started - self.finished

    def stop(self, reason: str = "stopped") -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def abort(self, reason: str = "aborted") -> None:
        self.stop(reason)
        self._abort.set()


def interleave(weights: Sequence[float]) -> Iterator[int]:
    """Smooth weighted round-robin: indices in proportion to ``weights``, evenly spread."""
    if not weights or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError("weights must be >= 0 with a positive sum")
    current = [0.0] * len(weights)
    total = float(sum(weights))
    while True:
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=current.__getitem__)
        current[best] -= total
        yield best


class Sessions:
    """What both load models share: start a session for the next cohort in turn, count it, keep it
    in ``tasks`` until it ends, and hand its record to the sink. ``more(t)`` says whether a session
    may still start at run-clock time ``t`` (not stopping, sessions and duration not spent)."""

    def __init__(
        self,
        http: LeanClient,
        cohorts: Sequence[CohortSpec],
        run: tuple[Timeouts, Limits, Callable[[], float]],
        limit: tuple[int | None, float | None],
        numbering: tuple[int, int],
        control: RunControl,
        sink: Callable[[SessionRecord], None],
        on_start: Callable[[float], None] | None,
        shared: RunState | None = None,
    ) -> None:
        self.http = http
        self.cohorts = cohorts
        self.timeouts, self.limits, self.clock = run
        self.max_sessions, self.duration = limit
        self.part, self.parts = numbering
        self.control = control
        self.sink = sink
        self.on_start = on_start
        self.shared = shared or RunState()  # what this run's sessions learn, and who hears their first event
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self._order = interleave([c.weight for c in cohorts])
        self._seqs = [0] * len(cohorts)
        self._slot: asyncio.Future[None] | None = None

    def slot_freed(self) -> asyncio.Future[None]:
        """A future that completes when the next session in flight ends: O(1) per held arrival, where
        waiting on every task in flight costs O(in flight) (17-32 ms a wait at 5,000-15,000 in flight)."""
        if self._slot is None or self._slot.done():
            self._slot = self.http.loop.create_future()
        return self._slot

    def more(self, t: float) -> bool:
        return not (
            self.stopping
            or (self.max_sessions is not None and self.control.started >= self.max_sessions)
            or (self.duration is not None and t >= self.duration)
        )

    def spawn(self, scheduled: float) -> asyncio.Task[None]:
        """Start one session now; its latencies count from ``scheduled``, so any delay shows as lag."""
        self.control.started += 1
        if self.on_start is not None:
            self.on_start(self.clock())
        task = self.http.loop.create_task(self._session(scheduled))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _session(self, scheduled: float) -> None:
        i = next(self._order) if len(self.cohorts) > 1 else 0
        cohort = self.cohorts[i]
        self.control.started_by[cohort.name] = self.control.started_by.get(cohort.name, 0) + 1
        rec = SessionRecord(cohort.name, self._seqs[i] * self.parts + self.part, scheduled=scheduled)
        self._seqs[i] += 1
        try:
            await run_session(self.http, cohort.options, self.timeouts, self.limits, rec, self.clock, self.shared)
        finally:
            self.control.finished += 1
            if self._slot is not None and not self._slot.done():
                self._slot.set_result(None)
            self.sink(rec)


class Driver(Protocol):
    async def drive(self, sessions: Sessions) -> None:
        """Start sessions until ``sessions.more`` says no (or the driver's own plan ends)."""


@dataclass(frozen=True)
class ClosedDriver:
    """Closed model: ``users`` loops, each starting its next session when the last one ends."""

    users: int
    think: float = 0.0

    async def drive(self, sessions: Sessions) -> None:
        await asyncio.gather(*(self._user(sessions) for _ in range(self.users)))

    async def _user(self, sessions: Sessions) -> None:
        while sessions.more(sessions.clock()):
            # shielded: stopping the users must not cancel a session before its grace
            await asyncio.shield(sessions.spawn(sessions.clock()))
            if self.think:
                await asyncio.sleep(self.think)


@dataclass(frozen=True)
class OpenDriver:
    """Open model: arrivals at the schedule's times (this part's share), at most ``max_in_flight`` at once.
    An arrival held back keeps its scheduled start, so the wait shows as lag and in every latency."""

    schedule: Schedule
    max_in_flight: int
    part: int = 0
    parts: int = 1

    async def drive(self, sessions: Sessions) -> None:
        control = sessions.control
        for t in self.schedule.arrivals(part=self.part, parts=self.parts):
            if not sessions.more(t):
                return
            delay = t - sessions.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            while control.in_flight >= self.max_in_flight:  # held back: shows as lag
                await sessions.slot_freed()
            sessions.spawn(t)
