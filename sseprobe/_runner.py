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
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from hdrh.histogram import HdrHistogram

from ._config import Limits, Timeouts
from ._engine import CohortSpec, Load, RunControl, RunInfo, run, run_load
from ._intervals import IntervalLog, merge_intervals
from ._live import LiveWindow, SustainedTrigger, progress_line
from ._policy import DEFAULT_POLICY, Policy, check_triggers
from ._record import SessionRecord
from ._redact import redact_url
from ._stats import CohortStats, new_histogram, summarize_ms

__all__ = ["Measured", "RunOptions", "measure", "default_workers"]

SATURATED_LAG_MS = 5.0  # loop or start lag p99 above this: timings may be inflated by the generator


@dataclass(frozen=True)
class RunOptions:
    """How to drive the run, beyond the load itself."""

    workers: int = 1
    progress: TextIO | None = None  # where live progress goes (a terminal); None: quiet
    abort_on_trigger: float | None = None  # seconds a rollback trigger must hold to stop the run
    policy: Policy = DEFAULT_POLICY
    interval: float = 1.0


@dataclass
class Measured:
    info: RunInfo
    cohorts: dict[str, CohortStats]
    intervals: list[dict[str, Any]] = field(default_factory=list)
    generator: dict[str, Any] = field(default_factory=dict)
    worker_errors: list[str] = field(default_factory=list)


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


async def _loop_lag(hist: HdrHistogram, period: float = 0.05) -> None:
    """How late the event loop wakes: a busy generator stamps events late, and this says by how much."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(period)
        late_us = int((time.perf_counter() - t - period) * 1e6)
        hist.record_value(min(max(late_us, 1), 3_600_000_000))


async def _measure(
    cohorts: Sequence[CohortSpec],
    load: Load,
    timeouts: Timeouts,
    limits: Limits,
    opts: RunOptions,
    signals: tuple[Sequence[signal.Signals], Sequence[signal.Signals]],
    report: Callable[[dict[str, Any]], None] | None,
) -> Measured:
    control = RunControl()
    stats = {c.name: CohortStats(flow=c.options.flow, url=redact_url(c.options.url)) for c in cohorts}
    intervals = IntervalLog(opts.interval)
    window = LiveWindow(opts.abort_on_trigger or 10.0)
    sustained = SustainedTrigger(opts.abort_on_trigger or 0.0)
    loop_lag = new_histogram()
    # the live window costs a few ms a second of loop time: only kept when someone looks at it
    live = report is not None or opts.abort_on_trigger is not None
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
            if not live:
                continue
            current = window.stats(now)
            fired = [
                f"{name}: {t['reason']}"
                for name, s in current.items()
                for t in check_triggers(s, opts.policy)
                if s.attempts >= 20
            ]
            held = sustained.update(fired, now) if opts.abort_on_trigger else []
            if held:
                control.stop(f"rollback trigger held {opts.abort_on_trigger:g}s: {held[0]}")
            schedule = load.schedule
            target = schedule.rate_at(now) / load.parts if schedule else None
            phase = ""
            if schedule and (at := schedule.phase_at(now)):
                phase = at[1].name or f"phase {at[0] + 1}"
            snapshot = {
                "elapsed": now,
                "phase": phase,
                "target": target,
                "achieved": achieved,
                "in_flight": control.in_flight,
                "window": current,
                "fired": fired,
                "totals": _totals(stats),
            }
            if report:
                report(snapshot)

    _install_signals(control, *signals, announce=opts.progress)
    tasks = [asyncio.ensure_future(tick()), asyncio.ensure_future(_loop_lag(loop_lag))]
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
    return Measured(info, stats, ivals, _generator(stats, loop_lag))


def _totals(stats: dict[str, CohortStats]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for s in stats.values():
        for k, v in s.outcomes.items():
            totals[k] = totals.get(k, 0) + v
    return totals


def _generator(stats: dict[str, CohortStats], loop_lag: HdrHistogram) -> dict[str, Any]:
    """Was the generator itself the bottleneck? Said outright, never hidden in the latencies."""
    start_lag = new_histogram()
    for s in stats.values():
        start_lag.add(s.histograms["lag_us"])
    loop = summarize_ms(loop_lag)
    start = summarize_ms(start_lag)
    worst = max(loop.get("p99") or 0.0, start.get("p99") or 0.0)
    return {
        "loop_lag_ms": loop,
        "start_lag_ms": start,
        "saturated": worst > SATURATED_LAG_MS,
        "note": (
            f"generator lag p99 {worst:.1f} ms: latencies may be late by that much"
            if worst > SATURATED_LAG_MS
            else "generator kept up"
        ),
        "loop_lag_us": loop_lag.encode().decode("ascii"),
    }


def _print_progress(out: TextIO) -> Callable[[dict[str, Any]], None]:
    def show(snap: dict[str, Any]) -> None:
        line = progress_line(
            snap["elapsed"],
            snap["phase"],
            snap["target"],
            snap["achieved"],
            snap["in_flight"],
            snap["totals"],
            snap["window"],
            snap["fired"],
        )
        out.write("\r\x1b[2K" + line[:200])
        out.flush()

    return show


def _single(
    cohorts: Sequence[CohortSpec], load: Load, timeouts: Timeouts, limits: Limits, opts: RunOptions
) -> Measured:
    report = _print_progress(opts.progress) if opts.progress else None
    signals = ((signal.SIGINT, signal.SIGTERM), ())
    measured = run(_measure(cohorts, load, timeouts, limits, opts, signals, report))
    if opts.progress:
        opts.progress.write("\n")
    return measured


# --- several processes ----------------------------------------------------------------------


def _share(total: int | None, part: int, parts: int) -> int | None:
    if total is None:
        return None
    return total // parts + (1 if part < total % parts else 0)


def _worker_load(load: Load, part: int, parts: int) -> Load:
    return replace(
        load,
        part=part,
        parts=parts,
        sessions=_share(load.sessions, part, parts),
        concurrency=max(1, _share(load.concurrency, part, parts) or 1),
        max_in_flight=max(1, load.max_in_flight // parts),
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
    """One worker process: SIGINT is the parent's to handle; SIGTERM stops, SIGUSR1 aborts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:

        def report(snap: dict[str, Any]) -> None:
            out.put(("progress", part, {k: v for k, v in snap.items() if k != "window"}))

        m = run(
            _measure(
                cohorts,
                _worker_load(load, part, parts),
                timeouts,
                limits,
                replace(opts, progress=None),
                ((signal.SIGTERM,), (signal.SIGUSR1,)),
                report if opts.progress else None,
            )
        )
        out.put(
            (
                "result",
                part,
                {
                    "info": m.info,
                    "cohorts": {k: v.to_dict() for k, v in m.cohorts.items()},
                    "intervals": m.intervals,
                    "generator": m.generator,
                },
            )
        )
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, never lost silently
        out.put(("error", part, f"{type(exc).__name__}: {exc}"[:300]))


def _multi(cohorts: Sequence[CohortSpec], load: Load, timeouts: Timeouts, limits: Limits, opts: RunOptions) -> Measured:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(i, opts.workers, cohorts, load, timeouts, limits, opts, out), daemon=True)
        for i in range(opts.workers)
    ]
    stops = 0
    reason: str | None = None

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stops, reason
        stops += 1
        reason = reason or f"interrupted by {signal.Signals(signum).name}"
        for p in procs:
            if p.pid and p.is_alive():
                os.kill(p.pid, signal.SIGTERM if stops == 1 else signal.SIGUSR1)
        if opts.progress and stops == 1:
            print("\nsseprobe: stopping workers; in-flight sessions get the grace (again to abort)", file=opts.progress)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    results: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    failed: set[int] = set()
    progress: dict[int, dict[str, Any]] = {}
    show = _print_progress(opts.progress) if opts.progress else None
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
            elif show:
                progress[part] = payload
                show(_sum_progress(progress))
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:
            p.join(timeout=5)
    if opts.progress:
        opts.progress.write("\n")
    measured = _merge_results(cohorts, results, errors)
    if reason:  # the workers saw the SIGTERM we forwarded; the user sent this one
        measured.info = replace(measured.info, interrupted=True, stop_reason=reason)
    return measured


def _sum_progress(progress: dict[int, dict[str, Any]]) -> dict[str, Any]:
    snaps = list(progress.values())
    totals: dict[str, int] = {}
    for s in snaps:
        for k, v in s["totals"].items():
            totals[k] = totals.get(k, 0) + v
    targets = [s["target"] for s in snaps if s["target"] is not None]
    return {
        "elapsed": max(s["elapsed"] for s in snaps),
        "phase": snaps[0]["phase"],
        "target": sum(targets) if targets else None,
        "achieved": sum(s["achieved"] for s in snaps),
        "in_flight": sum(s["in_flight"] for s in snaps),
        "totals": totals,
        "window": {},
        "fired": sorted({f for s in snaps for f in s["fired"]}),
    }


def _merge_results(cohorts: Sequence[CohortSpec], results: dict[int, dict[str, Any]], errors: list[str]) -> Measured:
    stats = {c.name: CohortStats(flow=c.options.flow, url=redact_url(c.options.url)) for c in cohorts}
    infos: list[RunInfo] = []
    loop_lag = new_histogram()
    for part in sorted(results):
        r = results[part]
        infos.append(r["info"])
        for name, d in r["cohorts"].items():
            stats[name].merge(CohortStats.from_dict(d))
        loop_lag.add(HdrHistogram.decode(r["generator"]["loop_lag_us"]))
    if not infos:
        raise RuntimeError("every worker failed: " + "; ".join(errors))
    info = RunInfo(
        started=min(i.started for i in infos),
        duration_s=max(i.duration_s for i in infos),
        interrupted=any(i.interrupted for i in infos) or bool(errors),
        stop_reason=next((i.stop_reason for i in infos if i.stop_reason), None)
        or ("; ".join(errors) if errors else None),
    )
    return Measured(
        info, stats, merge_intervals([r["intervals"] for r in results.values()]), _generator(stats, loop_lag), errors
    )


def measure(
    cohorts: Sequence[CohortSpec],
    load: Load,
    timeouts: Timeouts = Timeouts(),
    limits: Limits = Limits(),
    opts: RunOptions = RunOptions(),
) -> Measured:
    """Run the load to its end (or until stopped) and return the folded stats."""
    workers = useful_workers(load, opts.workers)
    if workers > 1:
        return _multi(cohorts, load, timeouts, limits, replace(opts, workers=workers))
    return _single(cohorts, load, timeouts, limits, opts)


def useful_workers(load: Load, workers: int) -> int:
    """Never more workers than sessions allowed in flight at once (closed-model users, or the open
    model's ``max_in_flight``): each worker gets at least one, so ``-c 1`` on two workers ran two
    sessions at once, and the server's latency under that doubled load was reported as ``-c 1``'s."""
    in_flight = load.concurrency if load.schedule is None else load.max_in_flight
    return max(1, min(workers, in_flight))


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
