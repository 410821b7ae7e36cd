"""The load engine: schedules sessions over cohorts and hands each finished record to a sink.

No printing, no statistics: the engine only runs sessions. Closed model: ``concurrency`` users,
each starting its next session as soon as the last one ends. Cohorts interleave by weight
(smooth weighted round-robin), so both see the same moment of the service and of this machine.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator, Sequence

import aiohttp

from ._config import FlowOptions, Limits, Timeouts
from ._record import SessionRecord
from ._session import connect_trace, run_session

__all__ = ["CohortSpec", "Load", "RunInfo", "RunControl", "run_load", "interleave"]


@dataclass(frozen=True)
class CohortSpec:
    name: str
    options: FlowOptions
    weight: float = 1.0  # share of the sessions, e.g. 5 and 95 for a 5 % rollout step


@dataclass(frozen=True)
class Load:
    """When to stop: after ``sessions`` in all (across cohorts) or after ``duration`` seconds,
    whichever comes first. ``grace``: how long in-flight sessions may finish once stopping."""

    sessions: int | None = None
    duration: float | None = None
    concurrency: int = 10
    grace: float = 30.0

    def __post_init__(self) -> None:
        if self.sessions is None and self.duration is None:
            raise ValueError("give a number of sessions or a duration")
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


def make_client(timeouts: Timeouts, limits: Limits, clock: Callable[[], float]) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limits.connections, limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # per-session CSRF cookies are handled by the flow
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect, sock_read=timeouts.idle),
        trace_configs=[connect_trace(clock)],
    )


async def run_load(
    cohorts: Sequence[CohortSpec],
    load: Load,
    sink: Callable[[SessionRecord], None],
    timeouts: Timeouts = Timeouts(),
    limits: Limits = Limits(),
    control: RunControl | None = None,
) -> RunInfo:
    """Run sessions until the load says stop; every session, even a cancelled one, reaches ``sink``."""
    control = control or RunControl()
    wall_start = datetime.now(timezone.utc)
    t0 = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - t0

    order = interleave([c.weight for c in cohorts])
    seqs = [0] * len(cohorts)
    deadline = load.duration

    async def user(http: aiohttp.ClientSession) -> None:
        while not control._stop.is_set():
            if load.sessions is not None and control.started >= load.sessions:
                return
            if deadline is not None and clock() >= deadline:
                return
            i = next(order)
            rec = SessionRecord(cohorts[i].name, seqs[i], scheduled=clock())
            seqs[i] += 1
            control.started += 1
            try:
                await run_session(http, cohorts[i].options, timeouts, limits, rec, clock)
            finally:
                control.finished += 1
                sink(rec)

    async with make_client(timeouts, limits, clock) as http:
        users = min(load.concurrency, load.sessions or load.concurrency)
        tasks = [asyncio.create_task(user(http)) for _ in range(users)]
        all_users = asyncio.ensure_future(asyncio.wait(tasks))
        stop_wait = asyncio.ensure_future(control._stop.wait())
        abort_wait = asyncio.ensure_future(control._abort.wait())
        try:
            # run until every user is done, a stop is asked for, or the duration has passed
            await asyncio.wait([all_users, stop_wait], timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
            if not all_users.done():  # stopping: in-flight sessions get the grace, then are cancelled
                await asyncio.wait([all_users, abort_wait], timeout=load.grace,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (*tasks, stop_wait, abort_wait):
                t.cancel()
            await asyncio.gather(*tasks, all_users, return_exceptions=True)
    return RunInfo(
        started=wall_start.isoformat(timespec="milliseconds"),
        duration_s=round(clock(), 3),
        interrupted=control.stop_reason is not None,
        stop_reason=control.stop_reason,
    )
