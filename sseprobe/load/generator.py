"""How well the generator kept its own time: the results document's ``generator`` block.

Every latency counts from the schedule, so a generator that is late shows inside every latency. The
loop lag (sampled every 10 ms while sessions are in flight), the start lag and the loop thread's CPU
counters say how late, and whether the generator, not the service, set the pace (``saturated``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from hdrh.histogram import HdrHistogram

from ..verdict.schema import CpuCounters, CpuShares, GeneratorDoc, LagOnlyDoc, LatencySummary
from ..verdict.stats import CohortStats, new_histogram, summarize_ms
from .engine import RunControl
from .metrics import LiveProbe

__all__ = [
    "SATURATED_LAG_MS",
    "SATURATED_START_MS",
    "SATURATED_WAIT_MS",
    "generator_block",
    "lag_us",
    "watch_loop_lag",
    "sched_ns",
    "cpu_used",
    "merged_generator",
    "RangeWatch",
    "live_probe",
    "load_bound",
    "worth_lowering",
    "measured_generator",
]

# Loop lag p99 above this while sessions are in flight: the generator's own timing is late. Measured on a
# 2-core machine against the built-in target on the same cores: the demo and the shipped scenarios 2.8-10.6 ms
# idle (load average 1-2.5), 4.5-14 ms beside other jobs (load 3.4-7.5); with three CPU-bound processes beside
# them 13.3-81 ms (bench/README.md, benchmark 9). A thin margin at both ends: this sits between them.
SATURATED_LAG_MS = 12.0
# Or: each time the loop became runnable it waited this long for a CPU, on average (the kernel's scheduler
# statistics). Measured: idle 0.05-0.24 ms; three CPU-bound processes beside the shipped scenarios 0.76-2.0 ms.
# A light generator beside them is woken ahead of the hogs and its loop lag stays low, but it still waits.
SATURATED_WAIT_MS = 0.4
# Or: sessions started this late (start lag p99): held back by --max-in-flight, or by a loop that could not
# start them on time. Every latency counts from the schedule, so that wait is in all of them, and it is the
# generator's (a real user population has no in-flight cap). Closed-model users starting together queue for
# 9-15 ms once (measured idle, 20 users): well under this.
SATURATED_START_MS = 50.0
PROBE_PERIOD_S = 0.01  # the loop-lag probe: 100 samples a second, enough for a p99 within a few seconds
_OWN_WORK = 0.5  # a late loop that ran less than this share of the run was kept off the CPUs, not overworked


async def watch_loop_lag(
    hist: HdrHistogram, control: RunControl, period: float = PROBE_PERIOD_S, also: HdrHistogram | None = None
) -> None:
    """How late the event loop wakes while sessions are in flight: whatever the generator must do on
    time (start a session, write its request) waits as long. Receive stamps do not (the kernel's, see
    _http._SocketIO). Idle stretches (start-up, the end) are not the measured part."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(period)
        if control.in_flight:
            late = lag_us(time.perf_counter() - t - period)
            hist.record_value(late)
            if also is not None:
                also.record_value(late)


def lag_us(late_s: float) -> int:
    """A lateness in seconds as a histogram value: µs, at least 1 (early wake-ups of the coarse timer
    count as on time), at most an hour."""
    return min(max(int(late_s * 1e6), 1), 3_600_000_000)


def sched_ns() -> tuple[int, int, int] | None:
    """(ns on a CPU, ns runnable but waiting for one, times run) of this thread so far, from the
    kernel's scheduler statistics; None where it does not keep them (not Linux)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            ran, waited, runs = f.read().split()
        return int(ran), int(waited), int(runs)
    except (OSError, ValueError):
        return None


# The loop thread's scheduler counters; {} when unknown (as the results document records them).
Counters = CpuCounters | dict[str, int]


def cpu_used(before: tuple[int, int, int] | None, wall_ns: int) -> Counters:
    """The loop thread's CPU time and CPU wait over ``wall_ns`` since ``before``: says whether a late
    loop was busy with its own work or kept off the CPUs by other processes. Empty when unknown."""
    after = sched_ns()
    if before is None or after is None or wall_ns <= 0:
        return {}
    return {
        "run_ns": after[0] - before[0],
        "wait_ns": after[1] - before[1],
        "runs": after[2] - before[2],
        "wall_ns": wall_ns,
    }


def measured_generator(stats: dict[str, CohortStats], loop_lag: HdrHistogram, cpu: Sequence[Counters]) -> GeneratorDoc:
    """Was the generator itself the bottleneck? Said outright, never hidden in the latencies."""
    start_lag = new_histogram()
    for s in stats.values():
        start_lag.add(s.histograms["lag_us"])
    block = generator_block(summarize_ms(loop_lag), summarize_ms(start_lag), _sum_cpu(cpu))
    block["loop_lag_us"] = loop_lag.encode().decode("ascii")
    return block


def generator_block(loop: LatencySummary, start: LatencySummary, cpu: Counters) -> GeneratorDoc:
    """The results document's ``generator`` block from the loop and start lags (ms summaries) and the
    loop thread's CPU counters (``{}`` when unknown, as the block records them).

    Saturated when any of three holds: the loop lag p99 while sessions were in flight passed
    SATURATED_LAG_MS (the generator did what it had to do on time that late); the loop thread waited
    over SATURATED_WAIT_MS for a CPU each time it woke (a light loop beside CPU hogs keeps a low lag but
    still waits); or the start lag p99 passed SATURATED_START_MS (sessions held back from their
    schedule, by ``max_in_flight`` or a loop that could not start them: every latency counts that wait,
    which a real user population does not have). A few ms of start lag (closed-model users starting
    together) stay below it.
    ``error_ms``: how late any one latency may be at p99: its start may be late, and its request
    written late by the loop's lag (receive stamps are the kernel's and add nothing)."""
    loop_p99, start_p99 = float(loop.get("p99") or 0.0), float(start.get("p99") or 0.0)
    error_ms = round(loop_p99 + start_p99, 3)
    shares = _cpu_shares(cpu)
    held = start_p99 > SATURATED_START_MS
    saturated = (
        held or loop_p99 > SATURATED_LAG_MS or (shares is not None and shares["wait_per_run_ms"] > SATURATED_WAIT_MS)
    )
    note = (
        _generator_note(loop_p99, error_ms, shares, start_p99 if held else None)
        if saturated
        else f"generator kept up (loop lag p99 {loop_p99:.1f} ms)"
    )
    block: GeneratorDoc = {
        "loop_lag_ms": loop,
        "start_lag_ms": start,
        "error_ms": error_ms,
        "saturated": saturated,
        "threshold_ms": SATURATED_LAG_MS,
        "note": note,
        "cpu_ns": cpu,
    }
    if shares is None:
        return block
    return {"loop_lag_ms": loop, "start_lag_ms": start, "cpu": shares, **block}  # "cpu" third: the document's order


def _sum_cpu(parts: Sequence[Counters]) -> Counters:
    """Several processes' CPU counters as one (empty when any is unknown: a share of it would mislead)."""
    if not parts or any(not p for p in parts):
        return {}
    return {
        "run_ns": sum(p.get("run_ns", 0) for p in parts),
        "wait_ns": sum(p.get("wait_ns", 0) for p in parts),
        "runs": sum(p.get("runs", 0) for p in parts),
        "wall_ns": sum(p.get("wall_ns", 0) for p in parts),
    }


def _cpu_shares(cpu: Counters) -> CpuShares | None:
    """Shares of the run the loop thread ran (``busy``) and waited, runnable, for a CPU (``waiting``)."""
    if not cpu or cpu["wall_ns"] <= 0:
        return None
    return {
        "busy": round(cpu["run_ns"] / cpu["wall_ns"], 3),
        "waiting": round(cpu["wait_ns"] / cpu["wall_ns"], 3),
        "wait_per_run_ms": round(cpu["wait_ns"] / max(cpu["runs"], 1) / 1e6, 3),
    }


def _generator_note(loop_p99: float, error_ms: float, shares: CpuShares | None, held_ms: float | None = None) -> str:
    """Why the generator's timings are late, and by how much, in words a user can act on: sessions held
    back from their schedule; a loop that mostly idled was kept off the CPUs by other processes; one that
    was busy had too much to do."""
    note = f"generator loop lag p99 {loop_p99:.1f} ms: latencies may be late by up to {error_ms:.1f} ms"
    if held_ms is not None and loop_p99 <= SATURATED_LAG_MS:
        return (
            f"generator start lag p99 {held_ms:.1f} ms: sessions started late (held back by --max-in-flight,"
            f" or a loop that could not start them on time), so latencies may be late by up to {error_ms:.1f} ms;"
            " raise --max-in-flight, lower the rate, or add workers"
        )
    if shares is not None and shares["busy"] < _OWN_WORK:
        return note + (
            f"; its loop ran {shares['busy']:.0%} of the run and waited {shares['wait_per_run_ms']:.2f} ms for a"
            f" CPU each time it woke ({shares['waiting']:.0%} of the run): other processes hold the CPUs"
        )
    return note + "; run with fewer sessions in flight or more workers"


def merged_generator(stats: dict[str, CohortStats], blocks: Sequence[GeneratorDoc | LagOnlyDoc]) -> GeneratorDoc:
    """The generator block of one run measured in several parts (the batches of ``--until-decided``, the
    shares of a cluster run): re-derived from the parts' merged histograms, so it says what one long run
    would have said; what else the last part's block says (its ranges, cluster, nodes) is kept."""
    loop_lag = new_histogram()
    for block in blocks:
        loop_lag.add(HdrHistogram.decode(block["loop_lag_us"]))
    # each part's loop-thread counters, summed
    cpu = [block["cpu_ns"] if "cpu_ns" in block else {} for block in blocks]
    merged = measured_generator(stats, loop_lag, cpu)
    return {**blocks[-1], **merged} if blocks else merged


# Self-ranging (compare, monitor, demo): judged on this many seconds in flight at a time. 3 s at 100 samples
# a second puts the p99 on the 3rd-latest sample, so one stray late wake-up (a GC pass) does not lower the load.
RANGE_WINDOW_S = 3.0


def load_bound(block: GeneratorDoc) -> bool:
    """A saturated generator that less load of its own could cure: its loop woke late (lag p99 over
    SATURATED_LAG_MS), or sessions started late (start lag p99 over SATURATED_START_MS). A loop flagged
    only for waiting on a CPU beside other processes is not: halving its load leaves the hogs where they
    are, so it keeps its load, and its own (small) lag widens the intervals instead."""
    if block.get("saturated") is not True:
        return False
    loop_p99 = float((block.get("loop_lag_ms") or {}).get("p99") or 0.0)
    start_p99 = float((block.get("start_lag_ms") or {}).get("p99") or 0.0)
    return loop_p99 > SATURATED_LAG_MS or start_p99 > SATURATED_START_MS


# Lower the load only where that can help. Measured on a 2-core machine at load average 6-8 (other jobs):
# the demo's loop ran 2-8 % of the run and its lag p99 stayed at 12-25 ms however far its rate was halved
# (38 -> 0.6 sessions/s): the other processes made it late. At 150 in flight per cohort it ran 17-28 % and
# halving took its lag from 94 to 29 to 21 ms.
RANGE_BUSY_MIN = 0.1  # the loop ran at least this share of the run: its own work is part of its lateness
RANGE_GAIN = 0.7  # and the last halving cut its error to below this share of what it was (else: stop)


def worth_lowering(block: GeneratorDoc, last_error_ms: float | None) -> bool:
    """Lower the load? Only for a load-bound generator whose own work is part of its lateness, and, after
    a first halving, only while halving still helps (``last_error_ms``: the error that caused the last)."""
    if not load_bound(block):
        return False
    shares = block.get("cpu")
    busy = shares["busy"] if shares is not None else None
    if busy is not None and busy < RANGE_BUSY_MIN:
        return False
    return last_error_ms is None or float(block.get("error_ms") or 0.0) < RANGE_GAIN * last_error_ms


class RangeWatch:
    """Watches the loop lag in windows of RANGE_WINDOW_S in flight and says when one was worth a lower
    load (``check`` returns that window's generator block), so a measurement whose job is a verdict can
    stop early and re-measure at a lower load instead of timing the rest of its sessions late."""

    def __init__(self, last_error_ms: float | None) -> None:
        self.lag = new_histogram()
        self.last_error_ms = last_error_ms
        self._cpu, self._wall = sched_ns(), time.perf_counter_ns()

    def check(self) -> GeneratorDoc | None:
        if self.lag.get_total_count() < RANGE_WINDOW_S / PROBE_PERIOD_S:
            return None
        cpu = cpu_used(self._cpu, time.perf_counter_ns() - self._wall)
        block = generator_block(summarize_ms(self.lag), {}, _sum_cpu([cpu]) if cpu else {})
        self.lag.reset()
        self._cpu, self._wall = sched_ns(), time.perf_counter_ns()
        return block if worth_lowering(block, self.last_error_ms) else None


def live_probe(loop_lag: HdrHistogram) -> LiveProbe:
    """The live-metrics probe, judging saturation per interval by generator_block's rule."""
    before, wall = sched_ns(), time.perf_counter_ns()

    def judge(loop_p99_ms: float, start_p99_ms: float) -> bool:
        nonlocal before, wall
        now = time.perf_counter_ns()
        cpu = cpu_used(before, now - wall)
        before, wall = sched_ns(), now
        return generator_block({"p99": loop_p99_ms}, {"p99": start_p99_ms}, cpu)["saturated"]

    return LiveProbe(loop_lag, judge)
