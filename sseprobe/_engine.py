"""The load engine: schedules sessions over cohorts and hands each finished record to a sink.

No printing, no statistics: the engine only runs sessions. Two models:

- closed: ``concurrency`` users, each starting its next session when the last one ends
  (after ``think`` seconds);
- open: arrivals at the times a :class:`~._pacer.Schedule` gives, whether or not earlier
  sessions have finished. Each record keeps its *scheduled* start, so when the generator or
  ``max_in_flight`` holds an arrival back, that shows as lag and in every latency.

Cohorts interleave by weight (smooth weighted round-robin), so both see the same moment of the
service and of this machine.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from ._config import FlowOptions, Limits, Timeouts
from ._http import LeanClient
from ._pacer import Schedule
from ._record import SessionRecord
from ._session import run_session

T = TypeVar("T")

__all__ = ["run", "CohortSpec", "Load", "RunInfo", "RunControl", "run_load", "interleave"]


@dataclass(frozen=True)
class CohortSpec:
    name: str
    options: FlowOptions
    weight: float = 1.0  # share of the sessions, e.g. 5 and 95 for a 5 % rollout step


@dataclass(frozen=True)
class Load:
    """How sessions arrive and when to stop.

    Closed model (no ``schedule``): ``concurrency`` users with ``think`` seconds between
    sessions. Open model: arrivals per ``schedule``, at most ``max_in_flight`` at once.
    Stop after ``sessions`` in all (across cohorts), after ``duration`` seconds, or when the
    schedule ends, whichever comes first. ``grace``: how long in-flight sessions may finish
    once stopping; ``part``/``parts``: this process's share when several run one load.
    """

    sessions: int | None = None
    duration: float | None = None
    concurrency: int = 10
    think: float = 0.0
    schedule: Schedule | None = None
    max_in_flight: int = 15_000
    grace: float = 30.0
    part: int = 0
    parts: int = 1

    def __post_init__(self) -> None:
        if self.sessions is None and self.duration is None and self.schedule is None:
            raise ValueError("give a number of sessions, a duration or a rate")
        if self.think < 0:
            raise ValueError("think time must be >= 0 seconds")
        if self.max_in_flight < 1:
            raise ValueError("max in flight must be >= 1")
        if self.sessions is not None and self.sessions < 1:
            raise ValueError("sessions must be >= 1")
        if self.duration is not None and not self.duration > 0:
            raise ValueError("duration must be > 0 seconds")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.grace < 0:
            raise ValueError("grace must be >= 0 seconds")


@dataclass
class RunControl:
    """Shared with whoever drives the run: ``stop()`` ends arrivals (grace applies),
    ``abort()`` cancels in-flight sessions at once. Counters are for live progress."""

    started: int = 0
    finished: int = 0
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


@dataclass(frozen=True)
class RunInfo:
    started: str  # ISO 8601, UTC
    duration_s: float
    interrupted: bool
    stop_reason: str | None


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


GC_FREEZE_S = 1.0  # how often the objects that survived the young collections are set aside
GC_FULL_S = 60.0  # how often everything is collected once (the cyclic garbage set aside with them)


async def _gc_steward() -> None:
    """Keep Python's full GC collections off the timing path while sessions run.

    With thousands of sessions open (~60 tracked objects each) a full (generation 2) collection
    walks every object and stops the loop for ~100 ms, every few seconds: each event arriving then
    is stamped late (bench/README.md, "Measurement truth"). So every second the survivors are frozen
    (``gc.freeze``: moved aside in O(1), still freed by reference counting), the young collections
    go on as usual for new objects, and only once a minute is everything unfrozen and collected.
    Nested runs share one steward; the heap is unfrozen when the outermost run ends.
    """
    global _stewards
    _stewards += 1
    try:
        gc.freeze()
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(GC_FREEZE_S)
            if time.monotonic() - last_full >= GC_FULL_S:
                gc.unfreeze()
                gc.collect()
                last_full = time.monotonic()
            gc.freeze()
    finally:
        _stewards -= 1
        if not _stewards:
            gc.unfreeze()


_stewards = 0


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop's event loop when uvloop is installed: a session then costs
    about a third less CPU (bench/README.md). ``SSEPROBE_LOOP=asyncio`` keeps the standard loop."""
    if os.environ.get("SSEPROBE_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


async def _first(*aws: Any, timeout: float | None = None) -> None:
    """Wait until the first of ``aws`` is done (or the timeout). Futures passed in are left
    running; tasks made here from coroutines are cancelled."""
    futs = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(futs, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for a, f in zip(aws, futs, strict=False):
            if f is not a:
                f.cancel()


def make_client(timeouts: Timeouts, limits: Limits, clock: Callable[[], float]) -> LeanClient:
    """The sessions' HTTP client, for http:// and https:// alike (one transport, one pool)."""
    return LeanClient(timeouts.connect, timeouts.idle, limits.connections, clock=clock)


async def run_load(
    cohorts: Sequence[CohortSpec],
    load: Load,
    sink: Callable[[SessionRecord], None],
    timeouts: Timeouts = Timeouts(),
    limits: Limits = Limits(),
    control: RunControl | None = None,
    on_start: Callable[[float], None] | None = None,
) -> RunInfo:
    """Run sessions until the load says stop; every session, even a cancelled one, reaches ``sink``.
    ``on_start`` hears the run-clock time of each session's start (for per-interval counts)."""
    control = control or RunControl()
    wall_start = datetime.now(UTC)
    t0 = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - t0

    order = interleave([c.weight for c in cohorts])
    seqs = [0] * len(cohorts)
    tasks: set[asyncio.Task[None]] = set()
    stopping = False

    async def session(http: LeanClient, scheduled: float) -> None:
        i = next(order) if len(cohorts) > 1 else 0
        rec = SessionRecord(cohorts[i].name, seqs[i] * load.parts + load.part, scheduled=scheduled)
        seqs[i] += 1
        try:
            await run_session(http, cohorts[i].options, timeouts, limits, rec, clock)
        finally:
            control.finished += 1
            sink(rec)

    def spawn(http: LeanClient, scheduled: float) -> asyncio.Task[None]:
        control.started += 1
        if on_start is not None:
            on_start(clock())
        task = http.loop.create_task(session(http, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def more(t: float) -> bool:
        return not (
            stopping
            or (load.sessions is not None and control.started >= load.sessions)
            or (load.duration is not None and t >= load.duration)
        )

    async def user(http: LeanClient) -> None:
        while more(clock()):
            # shielded: stopping the users must not cancel a session before its grace
            await asyncio.shield(spawn(http, clock()))
            if load.think:
                await asyncio.sleep(load.think)

    async def arrivals(http: LeanClient, schedule: Schedule) -> None:
        for t in schedule.arrivals(part=load.part, parts=load.parts):
            if not more(t):
                return
            delay = t - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            while control.in_flight >= load.max_in_flight:  # held back: shows as lag
                await asyncio.wait(list(tasks), return_when=asyncio.FIRST_COMPLETED)
            spawn(http, t)

    async with make_client(timeouts, limits, clock) as http:
        driver: asyncio.Future[Any]
        if load.schedule is not None:
            driver = asyncio.ensure_future(arrivals(http, load.schedule))
        else:
            users = min(load.concurrency, load.sessions or load.concurrency)
            driver = asyncio.gather(*(user(http) for _ in range(users)))
        stop_wait = asyncio.ensure_future(control._stop.wait())
        abort_wait = asyncio.ensure_future(control._abort.wait())
        steward = asyncio.ensure_future(_gc_steward())
        try:
            # arrivals run until the load is spent, a stop is asked for, or the duration passes
            await asyncio.wait([driver, stop_wait], timeout=load.duration, return_when=asyncio.FIRST_COMPLETED)
            if driver.done() and tasks:
                # the load is spent: in-flight sessions run to their own end, unless stopped
                await _first(asyncio.wait(list(tasks)), stop_wait)
            stopping = True
            driver.cancel()
            if tasks:  # stopped: in-flight sessions finish within the grace, then are cancelled
                await _first(asyncio.wait(list(tasks)), abort_wait, timeout=load.grace)
        finally:
            for t in (*tasks, driver, stop_wait, abort_wait, steward):
                t.cancel()
            await asyncio.gather(*tasks, driver, steward, return_exceptions=True)
    return RunInfo(
        started=wall_start.isoformat(timespec="milliseconds"),
        duration_s=round(clock(), 3),
        interrupted=control.stop_reason is not None,
        stop_reason=control.stop_reason,
    )
