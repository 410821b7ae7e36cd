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
from typing import TYPE_CHECKING, Any, Literal, TextIO

from .._config import Limits, Timeouts
from .._outcomes import Outcome
from .._record import SessionRecord
from ..verdict.intervals import IntervalLog
from ..verdict.policy import DEFAULT_POLICY, Policy
from ..verdict.schema import GeneratorDoc, IntervalDoc
from ..verdict.stats import CohortStats, new_histogram
from .engine import CohortSpec, Load, RunControl, RunInfo, run, run_load
from .generator import RangeWatch, cpu_used, live_probe, measured_generator, merged_generator, sched_ns, watch_loop_lag
from .merge import Measured, RunFailure, SharePayload, empty_stats, encode_cohorts, merge_results, now_iso, share_load
from .metrics import FORWARD
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
    "share_payload",
    "measure_share",
    "merged_generator",
]

# (run-clock seconds, the cohorts' cumulative stats, the intervals closed so far): a share's checkpoint
Checkpoint = Callable[[float, dict[str, CohortStats], list[IntervalDoc]], None]
_RANGED = "stopped for a lower load (self-ranging)"


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
    # self-ranging: stop early when a lower load would time truly (the caller lowers it); the value is the
    # error (ms) that caused the last lowering (None: none yet); False: keep the load
    self_ranging: float | None | Literal[False] = False


# --- one process ----------------------------------------------------------------------------


def _fresh_line(out: TextIO) -> str:
    """What ends the live line before a notice: on a terminal the line redrawn in place is still open (a
    newline ends it); elsewhere every progress line already ended with one, so nothing (no blank line)."""
    try:
        return "\n" if out.isatty() else ""
    except (AttributeError, ValueError):  # closed, or not a real stream
        return ""


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
                    f"{_fresh_line(announce)}sseprobe: {signame}: stopping; in-flight sessions get the grace "
                    "(again to abort)",
                    file=announce,
                )
        else:
            control.abort(f"aborted by {signame}")

    for sig in stop_sig:
        loop.add_signal_handler(sig, on_stop, sig.name)
    for sig in abort_sig:
        loop.add_signal_handler(sig, control.abort, f"aborted by {sig.name}")


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
    cpu_before, wall_before = sched_ns(), time.perf_counter_ns()
    # the live window costs a few ms a second of loop time: only kept when someone looks at it
    live = (report is not None and opts.window) or opts.abort_on_trigger is not None
    probe = live_probe(loop_lag) if opts.metrics is not None else None
    t0 = time.perf_counter()
    watch = RangeWatch(opts.self_ranging) if opts.self_ranging is not False else None
    ranged: list[GeneratorDoc] = []

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
            if watch is not None and control.stop_reason is None and (late := watch.check()):
                ranged.append(late)
                control.stop(_RANGED)
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
                    progress = replace(progress, window=encode_cohorts(current))
                report(progress)

    # the live view (a terminal) says at once that a stop was heard; logs get the one closing line
    _install_signals(control, *signals, announce=opts.progress if opts.progress_every is None else None)
    if on_ready is not None:
        on_ready()
    tasks = [
        asyncio.ensure_future(tick()),
        asyncio.ensure_future(watch_loop_lag(loop_lag, control, also=watch and watch.lag)),
    ]
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
    cpu = cpu_used(cpu_before, time.perf_counter_ns() - wall_before)
    if ranged and info.stop_reason == _RANGED:  # our own stop, not an interruption
        info = replace(info, interrupted=False, stop_reason=None)
    return Measured(
        info, stats, ivals, measured_generator(stats, loop_lag, [cpu]), ranged=ranged[0] if ranged else None
    )


def _progress(
    load: Load,
    control: RunControl,
    stats: dict[str, CohortStats],
    interval: IntervalDoc | None,
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


def share_payload(m: Measured) -> SharePayload:
    """What a forked worker or a Ray actor ships back for its share: the measurement, encoded."""
    return {
        "info": m.info,
        "cohorts": encode_cohorts(m.cohorts),
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
        payload = share_payload(
            measure_share(
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
            print(
                f"{_fresh_line(self.progress)}sseprobe: stopping workers; in-flight sessions get the grace "
                "(again to abort)",
                file=self.progress,
            )

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
    results: dict[int, SharePayload] = {}
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
    return Measured(RunInfo(now_iso(), 0.0, True, reason), stats, [], measured_generator(stats, new_histogram(), []))


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
