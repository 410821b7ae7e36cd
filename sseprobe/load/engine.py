"""The load engine: schedules sessions over cohorts and hands each finished record to a sink.

No printing, no statistics: the engine only runs sessions, under one stop/abort/grace policy, with
the load model's driver (``_drivers``) deciding when each session starts. Two models:

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
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from .._config import MAX_IN_FLIGHT, Limits, Timeouts
from .._record import SessionRecord
from ..wire.http import LeanClient
from ..wire.session import RunState
from .drivers import ClosedDriver, CohortSpec, Driver, OpenDriver, RunControl, Sessions, interleave
from .files import raised_open_files
from .pacer import Schedule

T = TypeVar("T")

__all__ = ["run", "CohortSpec", "Load", "RunInfo", "RunControl", "run_load", "interleave", "driver_for"]


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
    max_in_flight: int = MAX_IN_FLIGHT
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


@dataclass(frozen=True)
class RunInfo:
    started: str  # ISO 8601, UTC
    duration_s: float
    interrupted: bool
    stop_reason: str | None


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
    about a third less CPU (bench/README.md). ``SSEPROBE_LOOP=asyncio`` keeps the standard loop.
    A stop (Ctrl-C) that lands before ``main`` ever ran closes it, so no "never awaited" warning
    reaches stderr after the one line that says the run was interrupted."""
    try:
        if os.environ.get("SSEPROBE_LOOP", "").lower() != "asyncio":
            try:
                import uvloop
            except ImportError:
                pass
            else:
                return uvloop.run(main)
        return asyncio.run(main)
    finally:
        main.close()  # a no-op once it has run; a coroutine that never started is discarded quietly


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


def driver_for(load: Load) -> Driver:
    """The load model's driver: open when there is a schedule, closed otherwise."""
    if load.schedule is not None:
        return OpenDriver(load.schedule, load.max_in_flight, load.part, load.parts)
    return ClosedDriver(min(load.concurrency, load.sessions or load.concurrency), load.think)


def make_client(timeouts: Timeouts, limits: Limits, clock: Callable[[], float]) -> LeanClient:
    """The sessions' HTTP client, for http:// and https:// alike (one transport, one pool)."""
    return LeanClient(timeouts.connect, timeouts.idle, limits.connections, clock=clock, pin_address=limits.pin_address)


async def run_load(
    cohorts: Sequence[CohortSpec],
    load: Load,
    sink: Callable[[SessionRecord], None],
    timeouts: Timeouts = Timeouts(),
    limits: Limits = Limits(),
    control: RunControl | None = None,
    on_start: Callable[[float], None] | None = None,
    shared: RunState | None = None,
) -> RunInfo:
    """Run sessions until the load says stop; every session, even a cancelled one, reaches ``sink``.
    ``on_start`` hears the run-clock time of each session's start (for per-interval counts).
    ``shared``: what the run's sessions learn and who hears them (None: a fresh one for this run)."""
    with raised_open_files():  # each stream holds a file: raised for this run only, put back after
        control = control or RunControl()
        wall_start = datetime.now(UTC)
        t0 = time.perf_counter()

        def clock() -> float:
            return time.perf_counter() - t0

        async with make_client(timeouts, limits, clock) as http:
            sessions = Sessions(
                http,
                cohorts,
                (timeouts, limits, clock),
                (load.sessions, load.duration),
                (load.part, load.parts),
                control,
                sink,
                on_start,
                shared or RunState(),
            )
            tasks = sessions.tasks
            driver = asyncio.ensure_future(driver_for(load).drive(sessions))
            stop_wait = asyncio.ensure_future(control._stop.wait())
            abort_wait = asyncio.ensure_future(control._abort.wait())
            steward = asyncio.ensure_future(_gc_steward())
            try:
                # arrivals run until the load is spent, a stop is asked for, or the duration passes
                await asyncio.wait([driver, stop_wait], timeout=load.duration, return_when=asyncio.FIRST_COMPLETED)
                if driver.done() and tasks:
                    # the load is spent: in-flight sessions run to their own end, unless stopped
                    await _first(asyncio.wait(list(tasks)), stop_wait)
                sessions.stopping = True
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
