"""Drive one load run: the event loop, signals, folding records, live progress, worker processes.

Sits between the CLI (options, printing of results) and the engine (sessions). Ctrl-C or SIGTERM
stops arrivals and gives in-flight sessions the grace; a second one aborts them. Either way the
run returns everything it measured. With ``workers > 1`` each process runs its share of the load
and ships back encoded histograms, which merge losslessly here.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TextIO

from hdrh.histogram import HdrHistogram

from .._config import Limits, Timeouts
from .._outcomes import Outcome
from .._record import SessionRecord
from ..verdict.intervals import IntervalLog
from ..verdict.policy import DEFAULT_POLICY, Policy
from ..verdict.stats import CohortStats, new_histogram, summarize_ms
from .engine import CohortSpec, Load, RunControl, RunInfo, run, run_load
from .merge import Measured, RunFailure, empty_stats, merge_results, now_iso, share_load
from .metrics import FORWARD, LiveProbe
from .progress import LiveWindow, MergedWindow, Progress, SustainedTrigger, judge_window, merge_progress, print_progress

if TYPE_CHECKING:
    from .cluster import ClusterOptions
    from .metrics import MetricsSink

__all__ = [
    "Measured",
    "RunOptions",
    "RunFailure",
    "measure",
    "nothing_measured",
    "default_workers",
    "run_share",
    "measure_share",
    "merged_generator",
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


# (run-clock seconds, the cohorts' cumulative stats, the intervals closed so far): a share's checkpoint
Checkpoint = Callable[[float, dict[str, CohortStats], list[dict[str, Any]]], None]


@dataclass(frozen=True)
class RunOptions:
    """How to drive the run, beyond the load itself."""

    workers: int = 1
    progress: TextIO | None = None  # where live progress goes; None: quiet
    progress_every: float | None = None  # None: one line redrawn in place (a terminal); else a plain line this often
    abort_on_trigger: float | None = None  # seconds a rollback trigger must hold to stop the run
    policy: Policy = DEFAULT_POLICY
    interval: float = 1.0
    judge: bool = True  # this process judges abort-on-trigger (False in workers: the parent judges the merge)
    cluster: ClusterOptions | None = None  # run the shares as Ray actors instead of forked workers
    metrics: MetricsSink | None = None  # live metrics: each tick's snapshot goes here (load/metrics.py)
    window: bool = True  # keep the live window when progress is reported (False: metrics alone need none)


# --- one process ----------------------------------------------------------------------------


def _install_signals(
    control: RunControl,
    stop_sig: Sequence[signal.Signals],
    abort_sig: Sequence[signal.Signals],
    announce: TextIO | None,
) -> None:
    loop = asyncio.get_running_loop()

    def on_stop(signame: str) -> None:
        if control.stop_reason is None:
            control.stop(f"interrupted by {signame}")
            if announce:
                print(
                    f"\nsseprobe: {signame}: stopping; in-flight sessions get the grace (again to abort)", file=announce
                )
        else:
            control.abort(f"aborted by {signame}")

    for sig in stop_sig:
        loop.add_signal_handler(sig, on_stop, sig.name)
    for sig in abort_sig:
        loop.add_signal_handler(sig, control.abort, f"aborted by {sig.name}")


async def _loop_lag(hist: HdrHistogram, control: RunControl, period: float = PROBE_PERIOD_S) -> None:
    """How late the event loop wakes while sessions are in flight: whatever the generator must do on
    time (start a session, write its request) waits as long. Receive stamps do not (the kernel's, see
    _http._SocketIO). Idle stretches (start-up, the end) are not the measured part."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(period)
        if control.in_flight:
            hist.record_value(lag_us(time.perf_counter() - t - period))


def lag_us(late_s: float) -> int:
    """A lateness in seconds as a histogram value: µs, at least 1 (early wake-ups of the coarse timer
    count as on time), at most an hour."""
    return min(max(int(late_s * 1e6), 1), 3_600_000_000)


def _sched_ns() -> tuple[int, int, int] | None:
    """(ns on a CPU, ns runnable but waiting for one, times run) of this thread so far, from the
    kernel's scheduler statistics; None where it does not keep them (not Linux)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            ran, waited, runs = f.read().split()
        return int(ran), int(waited), int(runs)
    except (OSError, ValueError):
        return None


def _cpu_used(before: tuple[int, int, int] | None, wall_ns: int) -> dict[str, int]:
    """The loop thread's CPU time and CPU wait over ``wall_ns`` since ``before``: says whether a late
    loop was busy with its own work or kept off the CPUs by other processes. Empty when unknown."""
    after = _sched_ns()
    if before is None or after is None or wall_ns <= 0:
        return {}
    return {
        "run_ns": after[0] - before[0],
        "wait_ns": after[1] - before[1],
        "runs": after[2] - before[2],
        "wall_ns": wall_ns,
    }


async def _measure(
    cohorts: Sequence[CohortSpec],
    load: Load,
    timeouts: Timeouts,
    limits: Limits,
    opts: RunOptions,
    signals: tuple[Sequence[signal.Signals], Sequence[signal.Signals]],
    report: Callable[[Progress], None] | None,
    on_ready: Callable[[], None] | None = None,
    control: RunControl | None = None,
    checkpoint: Checkpoint | None = None,
) -> Measured:
    control = control or RunControl()
    stats = empty_stats(cohorts)
    intervals = IntervalLog(opts.interval)
    window = LiveWindow(opts.abort_on_trigger or 10.0)
    sustained = SustainedTrigger(opts.abort_on_trigger or 0.0)
    loop_lag = new_histogram()
    cpu_before, wall_before = _sched_ns(), time.perf_counter_ns()
    # the live window costs a few ms a second of loop time: only kept when someone looks at it
    live = (report is not None and opts.window) or opts.abort_on_trigger is not None
    probe = _live_probe(loop_lag) if opts.metrics is not None else None
    t0 = time.perf_counter()

    def sink(rec: SessionRecord) -> None:
        now = time.perf_counter() - t0
        stats[rec.cohort].add(rec)
        intervals.add(rec, now)
        if live:
            window.add(rec, now)

    async def tick() -> None:
        """Once a second: interval starts, live progress, and the abort-on-trigger watch."""
        last_started = 0
        while True:
            await asyncio.sleep(opts.interval)
            now = time.perf_counter() - t0
            achieved = (control.started - last_started) / opts.interval
            last_started = control.started
            if checkpoint:  # the intervals closed so far go with it: a lost share keeps its time series
                intervals.last_closed(now)
                checkpoint(now, stats, intervals.closed)
            if (why := nothing_connects(stats)) is not None:
                control.stop(why)
            snap = probe.take(stats, control, achieved) if probe is not None else None
            if snap is not None and opts.metrics is not None:
                opts.metrics.publish(load.part, snap)
            if not live and snap is None:
                continue
            current = window.stats(now) if live else {}
            fired, held = judge_window(current, opts.policy, sustained, now)
            held = held if opts.abort_on_trigger and opts.judge else []
            if held:
                control.stop(f"rollback trigger held {opts.abort_on_trigger:g}s: {held[0]}")
            if report:
                progress = _progress(load, control, stats, intervals.last_closed(now), now, achieved, fired)
                progress.metrics = snap
                if opts.abort_on_trigger is not None and not opts.judge:  # the parent judges the merged windows
                    progress = replace(progress, window={name: s.to_dict() for name, s in current.items()})
                report(progress)

    # the live view (a terminal) says at once that a stop was heard; logs get the one closing line
    _install_signals(control, *signals, announce=opts.progress if opts.progress_every is None else None)
    if on_ready is not None:
        on_ready()
    tasks = [asyncio.ensure_future(tick()), asyncio.ensure_future(_loop_lag(loop_lag, control))]
    try:
        info = await run_load(
            cohorts,
            load,
            sink,
            timeouts,
            limits,
            control,
            on_start=lambda _t: intervals.started(time.perf_counter() - t0),
        )
    finally:
        for t in tasks:
            t.cancel()
    ivals = intervals.finish(time.perf_counter() - t0)
    cpu = _cpu_used(cpu_before, time.perf_counter_ns() - wall_before)
    return Measured(info, stats, ivals, _generator(stats, loop_lag, [cpu]))


def _live_probe(loop_lag: HdrHistogram) -> LiveProbe:
    """The live-metrics probe, judging saturation per interval by this module's rule (generator_block)."""
    before, wall = _sched_ns(), time.perf_counter_ns()

    def judge(loop_p99_ms: float, start_p99_ms: float) -> bool:
        nonlocal before, wall
        now = time.perf_counter_ns()
        cpu = _cpu_used(before, now - wall)
        before, wall = _sched_ns(), now
        return bool(generator_block({"p99": loop_p99_ms}, {"p99": start_p99_ms}, cpu)["saturated"])

    return LiveProbe(loop_lag, judge)


def _progress(
    load: Load,
    control: RunControl,
    stats: dict[str, CohortStats],
    interval: dict[str, Any] | None,
    now: float,
    achieved: float,
    fired: list[str],
) -> Progress:
    """This process's progress now: counts so far, the interval just closed, what is left."""
    schedule = load.schedule
    at = schedule.phase_at(now) if schedule else None
    phase = (at[1].name or f"phase {at[0] + 1}") if at else ""
    ends = [load.duration] if load.duration is not None else []
    if schedule:
        ends.append(sum(p.duration for p in schedule.phases))
    return Progress(
        elapsed=now,
        phase=phase,
        target_rate=schedule.rate_at(now) / load.parts if schedule and at else None,
        achieved_rate=achieved,
        in_flight=control.in_flight,
        outcomes={name: dict(s.outcomes) for name, s in stats.items()},
        interval=interval,
        seconds_left=max(min(ends) - now, 0.0) if ends else None,
        sessions_left=max(load.sessions - control.started, 0) if load.sessions is not None else None,
        fired=fired,
    )


def _generator(stats: dict[str, CohortStats], loop_lag: HdrHistogram, cpu: Sequence[dict[str, int]]) -> dict[str, Any]:
    """Was the generator itself the bottleneck? Said outright, never hidden in the latencies."""
    start_lag = new_histogram()
    for s in stats.values():
        start_lag.add(s.histograms["lag_us"])
    return generator_block(summarize_ms(loop_lag), summarize_ms(start_lag), _sum_cpu(cpu)) | {
        "loop_lag_us": loop_lag.encode().decode("ascii"),
    }


def generator_block(
    loop: dict[str, float | int | None], start: dict[str, float | int | None], cpu: dict[str, int]
) -> dict[str, Any]:
    """The results document's ``generator`` block from the loop and start lags (ms summaries) and the
    loop thread's CPU counters.

    Saturated: the loop lag p99 while sessions were in flight passed SATURATED_LAG_MS, i.e. the
    generator did what it had to do on time that late. Start lag is not part of the decision: an open
    model held back by ``max_in_flight`` starts sessions late by design (the service is slow), and
    closed-model users starting together queue for a few ms once; both are in the latencies and in
    ``error_ms``.
    ``error_ms``: how late any one latency may be at p99: its start may be late, and its request
    written late by the loop's lag (receive stamps are the kernel's and add nothing)."""
    loop_p99, start_p99 = float(loop.get("p99") or 0.0), float(start.get("p99") or 0.0)
    error_ms = round(loop_p99 + start_p99, 3)
    shares = _cpu_shares(cpu)
    held = start_p99 > SATURATED_START_MS
    saturated = held or loop_p99 > SATURATED_LAG_MS or shares.get("wait_per_run_ms", 0.0) > SATURATED_WAIT_MS
    block: dict[str, Any] = {"loop_lag_ms": loop, "start_lag_ms": start}
    if shares:
        block["cpu"] = shares
    return block | {
        "error_ms": error_ms,
        "saturated": saturated,
        "threshold_ms": SATURATED_LAG_MS,
        "note": _generator_note(loop_p99, error_ms, shares, start_p99 if held else None)
        if saturated
        else f"generator kept up (loop lag p99 {loop_p99:.1f} ms)",
        "cpu_ns": cpu,
    }


def _sum_cpu(parts: Sequence[dict[str, int]]) -> dict[str, int]:
    """Several processes' CPU counters as one (empty when any is unknown: a share of it would mislead)."""
    if not parts or any(not p for p in parts):
        return {}
    return {key: sum(p.get(key, 0) for p in parts) for key in ("run_ns", "wait_ns", "runs", "wall_ns")}


def _cpu_shares(cpu: dict[str, int]) -> dict[str, float]:
    """Shares of the run the loop thread ran (``busy``) and waited, runnable, for a CPU (``waiting``)."""
    if not cpu or cpu["wall_ns"] <= 0:
        return {}
    return {
        "busy": round(cpu["run_ns"] / cpu["wall_ns"], 3),
        "waiting": round(cpu["wait_ns"] / cpu["wall_ns"], 3),
        "wait_per_run_ms": round(cpu["wait_ns"] / max(cpu["runs"], 1) / 1e6, 3),
    }


def _generator_note(loop_p99: float, error_ms: float, shares: dict[str, float], held_ms: float | None = None) -> str:
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
    if shares and shares["busy"] < _OWN_WORK:
        return note + (
            f"; its loop ran {shares['busy']:.0%} of the run and waited {shares['wait_per_run_ms']:.2f} ms for a"
            f" CPU each time it woke ({shares['waiting']:.0%} of the run): other processes hold the CPUs"
        )
    return note + "; run with fewer sessions in flight or more workers"


def _single(
    cohorts: Sequence[CohortSpec], load: Load, timeouts: Timeouts, limits: Limits, opts: RunOptions
) -> Measured:
    report = print_progress(opts.progress, opts.progress_every) if opts.progress else None
    signals = ((signal.SIGINT, signal.SIGTERM), ())
    before = {s: signal.getsignal(s) for s in signals[0]}
    try:
        measured = run(_measure(cohorts, load, timeouts, limits, opts, signals, report))
    finally:  # the loop leaves SIGTERM at its default (death, no word): the caller's handlers come back
        for sig, handler in before.items():
            if handler is not None:
                signal.signal(sig, handler)
    if opts.progress and opts.progress_every is None:
        opts.progress.write("\n")
    return measured


# --- several processes ----------------------------------------------------------------------


def run_share(
    part: int,
    parts: int,
    cohorts: Sequence[CohortSpec],
    load: Load,
    timeouts: Timeouts,
    limits: Limits,
    opts: RunOptions,
    signals: tuple[Sequence[signal.Signals], Sequence[signal.Signals]],
    report: Callable[[Progress], None] | None,
    on_ready: Callable[[], None] | None = None,
    control: RunControl | None = None,
    checkpoint: Checkpoint | None = None,
) -> dict[str, Any]:
    """One share of the load, run to its end: the payload a forked worker or a Ray actor ships back."""
    m = measure_share(
        part, parts, cohorts, load, timeouts, limits, opts, signals, report, on_ready, control, checkpoint
    )
    return {
        "info": m.info,
        "cohorts": {k: v.to_dict() for k, v in m.cohorts.items()},
        "intervals": m.intervals,
        "generator": m.generator,
    }


def measure_share(
    part: int,
    parts: int,
    cohorts: Sequence[CohortSpec],
    load: Load,
    timeouts: Timeouts,
    limits: Limits,
    opts: RunOptions,
    signals: tuple[Sequence[signal.Signals], Sequence[signal.Signals]],
    report: Callable[[Progress], None] | None,
    on_ready: Callable[[], None] | None = None,
    control: RunControl | None = None,
    checkpoint: Checkpoint | None = None,
) -> Measured:
    """One share of the load, run to its end in this process (no progress of its own)."""
    return run(
        _measure(
            cohorts,
            share_load(load, part, parts),
            timeouts,
            limits,
            replace(opts, progress=None),
            signals,
            report,
            on_ready,
            control,
            checkpoint,
        )
    )


def _worker(
    part: int,
    parts: int,
    cohorts: Sequence[CohortSpec],
    load: Load,
    timeouts: Timeouts,
    limits: Limits,
    opts: RunOptions,
    out: Any,
) -> None:
    """One worker process: SIGINT is the parent's to handle; SIGTERM stops, SIGUSR1 aborts.

    Until its loop handles them it ignores both: the parent forwards a stop only once it is told
    the worker is ready, so a signal during start-up is never lost nor fatal."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    judged = opts.abort_on_trigger is not None
    watched = bool(opts.progress) or judged  # else only metrics need reports, and no live window
    try:

        def report(progress: Progress) -> None:
            out.put(("progress", part, progress))

        signals = ((signal.SIGTERM,), (signal.SIGUSR1,))
        payload = run_share(
            part,
            parts,
            cohorts,
            load,
            timeouts,
            limits,
            # the parent judges abort-on-trigger on the merged windows, and serves the merged metrics
            replace(opts, judge=False, window=watched, metrics=FORWARD if opts.metrics else None),
            signals,
            report if watched or opts.metrics else None,
            on_ready=lambda: out.put(("ready", part, None)),
        )
        out.put(("result", part, payload))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, never lost silently
        out.put(("error", part, f"{type(exc).__name__}: {exc}"[:300]))


class _Workers:
    """The parent's view of its worker processes: who is ready for a signal, and the stop asked for."""

    def __init__(self, procs: list[Any], progress: TextIO | None) -> None:
        self.procs = procs
        self.ready: set[int] = set()
        self.stops = 0
        self.reason: str | None = None
        self.progress = progress

    def stop(self, reason: str, abort: bool = False) -> None:
        self.stops += 2 if abort else 1
        self.reason = self.reason or reason
        for i in list(self.ready):
            self._signal(i)
        if self.progress and self.stops == 1:
            print("\nsseprobe: stopping workers; in-flight sessions get the grace (again to abort)", file=self.progress)

    def now_ready(self, part: int) -> None:
        self.ready.add(part)
        if self.stops:  # the stop came while it was starting: it hears it now
            self._signal(part)

    def _signal(self, part: int) -> None:
        p = self.procs[part]
        if p.pid and p.is_alive():
            os.kill(p.pid, signal.SIGTERM if self.stops == 1 else signal.SIGUSR1)


NOTHING_CONNECTS_AFTER = 50  # attempts (per worker process) that all failed to connect: the run stops


def nothing_connects(stats: dict[str, CohortStats]) -> str | None:
    """Why to stop early: every one of at least NOTHING_CONNECTS_AFTER attempts, in every cohort,
    failed to connect at all (DNS, refused, TLS): more sessions would measure nothing but timeouts."""
    attempts = sum(s.attempts for s in stats.values())
    failed = sum(s.outcomes.get(Outcome.CONNECT_ERROR, 0) for s in stats.values())
    if attempts < NOTHING_CONNECTS_AFTER or failed < attempts:
        return None
    reasons = [r for s in stats.values() for r, _ in s.reasons.most_common(1)]
    first = f": {reasons[0].removeprefix('connect_error: ')}" if reasons else ""
    return f"stopped early: none of the first {attempts} attempts connected{first}"[:300]


def _multi(cohorts: Sequence[CohortSpec], load: Load, timeouts: Timeouts, limits: Limits, opts: RunOptions) -> Measured:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(i, opts.workers, cohorts, load, timeouts, limits, opts, out), daemon=True)
        for i in range(opts.workers)
    ]
    workers = _Workers(procs, opts.progress if opts.progress_every is None else None)
    judge = MergedWindow(opts.policy, opts.abort_on_trigger) if opts.abort_on_trigger is not None else None

    def on_signal(signum: int, _frame: Any) -> None:
        workers.stop(f"interrupted by {signal.Signals(signum).name}", abort=workers.stops > 0)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    results: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    failed: set[int] = set()
    progress: dict[int, Progress] = {}
    show = print_progress(opts.progress, opts.progress_every) if opts.progress else None
    try:
        for p in procs:
            p.start()
        while len(results) + len(errors) < len(procs):
            try:
                kind, part, payload = out.get(timeout=0.25)
            except queue.Empty:
                for i, p in enumerate(procs):  # died without a word (killed): its share is lost, said so
                    if not p.is_alive() and i not in results and i not in failed and out.empty():
                        failed.add(i)
                        errors.append(f"worker {i}: exited with code {p.exitcode} and no results")
                continue
            if kind == "result":
                results[part] = payload
            elif kind == "error":
                failed.add(part)
                errors.append(f"worker {part}: {payload}")
            elif kind == "ready":
                workers.now_ready(part)
            else:
                if opts.metrics is not None and payload.metrics is not None:
                    opts.metrics.publish(part, payload.metrics)
                if judge is not None and not workers.stops and (held := judge.held(part, payload)):
                    workers.stop(f"rollback trigger held {opts.abort_on_trigger:g}s: {held[0]}")
                if show:
                    progress[part] = payload
                    if len(progress) + len(failed) >= len(procs):  # shown once every worker has said something
                        show(merge_progress(list(progress.values())))
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:
            p.join(timeout=5)
    if opts.progress and opts.progress_every is None:
        opts.progress.write("\n")
    measured = merge_results(cohorts, results, errors, merged_generator, workers.reason)
    if workers.reason:  # the workers saw the SIGTERM we forwarded; this is why it was sent
        measured.info = replace(measured.info, interrupted=True, stop_reason=workers.reason)
    return measured


def nothing_measured(cohorts: Sequence[CohortSpec], reason: str) -> Measured:
    """Stopped before any session ran: still a document, interrupted, with what there is (nothing)."""
    stats = empty_stats(cohorts)
    return Measured(RunInfo(now_iso(), 0.0, True, reason), stats, [], _generator(stats, new_histogram(), []))


def measure(
    cohorts: Sequence[CohortSpec],
    load: Load,
    timeouts: Timeouts = Timeouts(),
    limits: Limits = Limits(),
    opts: RunOptions = RunOptions(),
) -> Measured:
    """Run the load to its end (or until stopped) and return the folded stats.

    An interrupt before the run's own handlers are in place (start-up, forking) still returns a
    document's worth: interrupted, with whatever was measured (nothing)."""
    try:
        if opts.cluster is not None:
            from .cluster import measure_cluster  # here, not above: _cluster builds on this module

            return measure_cluster(cohorts, load, timeouts, limits, opts)
        workers = useful_workers(load, opts.workers)  # never more processes than sessions can be in flight
        if workers > 1:
            return _multi(cohorts, load, timeouts, limits, replace(opts, workers=workers))
        return _single(cohorts, load, timeouts, limits, opts)
    except KeyboardInterrupt:
        return nothing_measured(cohorts, "interrupted while starting")


def useful_workers(load: Load, workers: int) -> int:
    """Never more workers than sessions allowed in flight at once (closed-model users, or the open
    model's ``max_in_flight``): each worker gets at least one, so ``-c 1`` on two workers ran two
    sessions at once, and the server's latency under that doubled load was reported as ``-c 1``'s."""
    in_flight = load.concurrency if load.schedule is None else load.max_in_flight
    return max(1, min(workers, in_flight))


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def merged_generator(stats: dict[str, CohortStats], blocks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The generator block of one run measured in several parts (the batches of ``--until-decided``):
    re-derived from the parts' merged histograms, so it says what one long run would have said."""
    loop_lag = new_histogram()
    for block in blocks:
        loop_lag.add(HdrHistogram.decode(block["loop_lag_us"]))
    cpu = [block.get("cpu_ns") or {} for block in blocks]  # each batch's loop-thread counters, summed
    return {**(blocks[-1] if blocks else {}), **_generator(stats, loop_lag, cpu)}
