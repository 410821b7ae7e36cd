"""``sseprobe calibrate``: how much load one worker process of this machine can generate and still time
it truly, measured against the built-in target running in its own process.

Two searches, each a geometric ramp then a bisection over short steps (each step a real load run
through :func:`~.runner.measure_share`, as one worker of ``run`` does):

- **rate**: open-model arrivals of short canonical sessions (five events); how many sessions a second
  one worker starts and times truly;
- **in flight**: sessions at the recommended rate whose streams stay open (an event at least every half
  second) long enough that N are open at once; how many one worker holds and still times truly.

A step passes when the generator is not saturated (the results document's ``generator.saturated``)
and the TTFE error p99 stays under :data:`TTFE_ERROR_LIMIT_MS`. The TTFE error is sseprobe's reported
TTFE minus the truth: the target stamps each canonical event with ``time.time()`` right before its
write, and :func:`~._session.observe_first_events` gives each session's TTFE, its origin and the run
clock's offset to the wall clock. Both processes read the same clock, so no clock sync enters.

The decisions (does a step pass, which value next, what to recommend) are pure functions of measured
figures; the measuring around them is :func:`calibrate`. The stored calibration is what lets ``run`` and
``compare`` warn, before any load, when asked for more per worker than this machine sustained.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .._config import FlowOptions, Limits, Timeouts
from .._errors import SseprobeError
from ..verdict.stats import new_histogram, summarize_ms
from ..wire.session import FirstEvent, observe_first_events
from ..wire.sse import Event
from .calibration import (
    CALIBRATION_ENV,
    SCHEMA,
    CalibrationDoc,
    FloorsDoc,
    SearchDoc,
    StepRecord,
    calibration_path,
    load_calibration,
    machine_identity,
    over_calibration,
    store_calibration,
)
from .engine import CohortSpec, Load, RunControl
from .engine import run as run_loop
from .files import raised_open_files
from .generator import SATURATED_LAG_MS, watch_loop_lag
from .pacer import Phase, Schedule
from .runner import RunOptions, measure_share
from .search import (
    HEADROOM,
    MIN_JUDGED,
    TTFE_ERROR_LIMIT_MS,
    USABLE_SHARE,
    StepFigures,
    highest_pass,
    judge_step,
    next_value,
    recommend_workers,
)

__all__ = [
    "CALIBRATION_ENV",
    "SCHEMA",
    "Calibration",
    "CalibrationFailed",
    "Search",
    "StepFigures",
    "calibrate",
    "calibration_path",
    "judge_step",
    "load_calibration",
    "machine_identity",
    "next_value",
    "over_calibration",
    "recommend_workers",
    "store_calibration",
]


RATE_START, RATE_FLOOR, RATE_CAP = 200.0, 10.0, 20_000.0
RATE_STEP_S = 2.0
IN_FLIGHT_START, IN_FLIGHT_FLOOR, IN_FLIGHT_CAP = 500.0, 10.0, 16_000.0
PROBE_S = 1.5  # the in-flight step's judged window, once its streams are open
SETTLE_S = 0.5  # after the last arrival, for its first event to come before open streams are cut
STEP_GRACE_S = 0.5
DEFAULT_BUDGET_S = 50.0

# the sessions each search runs (the target's canonical knobs): short ones to rate, held ones to hold
RATE_SHAPE = {"ttfe_ms": 20.0, "ttfe_spread": 0.0, "events": 5, "gap_ms": 10.0}
HOLD_SHAPE = {"ttfe_ms": 20.0, "ttfe_spread": 0.0}  # held streams: their length is set per step
HOLD_GAP_S = 0.5  # the most a held stream stays silent


class CalibrationFailed(SseprobeError, RuntimeError):
    """Calibration could not give a figure (the target would not start, even the lowest step failed)."""


# --- measuring ----------------------------------------------------------------------------------------


@dataclass
class Search:
    """One search's steps and figure."""

    name: str
    tried: list[tuple[float, bool]] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    stopped_by: str = "search"  # "search": bracketed; "time": the budget ran out; "cap": never failed

    def measured(self, figures: StepFigures) -> str | None:
        """Keep one step's figures; returns why it failed (None: it passed)."""
        why = judge_step(figures)
        self.steps.append(_record(figures, why))
        return why

    @property
    def found(self) -> float:
        return highest_pass(self.tried)

    def figures_at(self, value: float) -> StepRecord | None:
        return next((s for s in reversed(self.steps) if s["value"] == value and s["passed"]), None)


def _record(f: StepFigures, why: str | None) -> StepRecord:
    """One step as the calibration records it: its figures, whether it passed, why not."""
    return {
        "value": f.value,
        "sessions": f.sessions,
        "failed": f.failed,
        "judged": f.judged,
        "ttfe_error_p99_ms": f.ttfe_error_p99_ms,
        "generator_error_ms": f.generator_error_ms,
        "saturated": f.saturated,
        "cpu_share": f.cpu_share,
        "target_cpu_share": f.target_cpu_share,
        "passed": why is None,
        "reason": why,
    }


@dataclass
class Calibration:
    """The result: printed, stored, and read back by ``run`` and ``compare``."""

    doc: CalibrationDoc

    def text(self) -> str:
        d, r, lim = self.doc, self.doc["recommended"], self.doc["limits"]
        timer, lag = d["floors"]["timer_ms"], d["floors"]["loop_lag_ms"]
        lines = [
            f"calibrated in {d['elapsed_s']:.0f} s on {d['machine']['hostname']} "
            f"({d['machine']['cores']} cores, load average {d['load_average'][0]:.2f} before)",
            f"  rate per worker:      {lim['rate_per_worker']:,.0f} sessions/s unsaturated ({_bound(d['rate'])})",
            f"  in flight per worker: {lim['in_flight_per_worker']:,.0f} open streams unsaturated "
            f"({_bound(d['in_flight'])})",
            f"  timer floor:          p50 {timer['p50']:.3f} ms, p99 {timer['p99']:.3f} ms (asyncio.sleep, idle loop)",
            f"  loop-lag floor:       p50 {lag['p50']:.3f} ms, p99 {lag['p99']:.3f} ms (the run's probe, idle)",
            f"recommended: --workers {r['workers']}, up to {r['rate_per_worker']:,} sessions/s and "
            f"{r['in_flight_per_worker']:,} in flight per worker",
            f"  {r['why']}",
        ]
        if (busy := busy_floor(d)) is not None:
            lines.append(busy)
        return "\n".join(lines)


def busy_floor(doc: CalibrationDoc) -> str | None:
    """When the idle loop's own lag p99 is already over the saturation threshold, this machine is busy
    (other processes hold the CPUs): every run here would be flagged saturated whatever its own load,
    and the calibration's figures are for a busy machine. Said in one warning, with what it means."""
    lag = float((doc["floors"]["loop_lag_ms"] or {}).get("p99") or 0.0)
    if lag <= SATURATED_LAG_MS:
        return None
    load = doc.get("load_average") or [0.0]
    return (
        f"WARNING: the idle loop-lag floor (p99 {lag:.1f} ms) is already above the {SATURATED_LAG_MS:g} ms at which"
        f" a run is flagged saturated: this machine is busy (load average {load[0]:.2f}) before sseprobe adds any"
        " load. Every run here will be flagged, its latencies may be late by about that much, and comparisons"
        " widen their intervals by it (a verdict may stay INCONCLUSIVE); these figures hold only while it is"
        " this busy: calibrate again when it is quieter"
    )


def _bound(search: SearchDoc) -> str:
    steps = search["steps"]
    fails = [s for s in steps if not s["passed"] and s["value"] > search["found"]]  # a retry that passed: none
    how = {"search": "bracketed", "time": "search cut short by the time budget", "cap": "never failed: at least"}
    first_fail = min(reversed(fails), key=lambda s: s["value"], default=None)  # its last attempt
    above = f"; {first_fail['value']:,.0f} failed: {first_fail['reason']}" if first_fail else ""
    return f"{how[search['stopped_by']]}, {len(steps)} step{'s' if len(steps) != 1 else ''}{above}"


class _Truth:
    """Each session's TTFE error, from the first-event observer: (scheduled, reported - true, ms)."""

    def __init__(self) -> None:
        self.errors: list[tuple[float, float]] = []

    def __call__(self, seen: FirstEvent) -> None:
        stamp = _stamp(seen.events)
        if stamp is not None and seen.ttfe_ms is not None:
            self.errors.append((seen.scheduled, (seen.base + seen.ttfe_ms / 1000.0 + seen.wall_offset - stamp) * 1e3))

    def p99_since(self, t: float) -> tuple[int, float | None]:
        judged = sorted(e for s, e in self.errors if s >= t)
        if not judged:
            return 0, None
        return len(judged), judged[min(len(judged) - 1, math.ceil(0.99 * len(judged)) - 1)]


def _stamp(events: list[Event]) -> float | None:
    """The ``timestamp`` the target put in the first event that has one (the truth of when it was sent)."""
    for ev in events:
        if ev.data.startswith("{"):
            try:
                stamp = orjson.loads(ev.data).get("timestamp")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if isinstance(stamp, float):
                return stamp
    return None


class _Target:
    """The built-in target in a forked process, its canonical knobs set per search, its CPU readable."""

    def __init__(self, url: str, pid: int) -> None:
        self.url, self.pid = url, pid

    def shape(self, knobs: Mapping[str, float]) -> None:
        body = orjson.dumps({"canonical": dict(knobs)})
        req = urllib.request.Request(f"{self.url}/_target/config", data=body, method="PATCH")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - our own target on loopback
            resp.read()

    def cpu_s(self) -> float | None:
        """The target's CPU seconds so far (Linux); None where the system does not say."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None


_START_S = 30.0


@contextmanager
def _built_in_target() -> Iterator[_Target]:
    """Fork the target (as ``sseprobe demo`` does); stopped however the calibration ends."""
    import multiprocessing

    from ..target import TargetConfig, serve

    def serve_here(config: TargetConfig, ready: Any, parent: int) -> None:
        _die_with(parent)
        # streams cut at a step's end are expected here: aiohttp's traceback for each is noise on stderr
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        serve(config, port=0, ready=ready.send)

    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=serve_here, args=(TargetConfig(), send, os.getpid()), daemon=True)
    proc.start()
    try:
        if not receive.poll(_START_S):
            raise CalibrationFailed(f"the built-in target did not start within {_START_S:g} s")
        yield _Target(str(receive.recv()), proc.pid or 0)
    finally:
        proc.terminate()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def _die_with(parent: int) -> None:
    """This (forked) process is killed when ``parent`` dies, even by SIGKILL, which runs no cleanup:
    Linux's PR_SET_PDEATHSIG. Elsewhere only the parent's own cleanup stops it."""
    if sys.platform != "linux":
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the call: nobody would ever stop this one
        os._exit(0)


class _Stepper:
    """Runs steps against the target, with the truth observer and the CPU clocks around each."""

    def __init__(self, target: _Target, truth: _Truth) -> None:
        self.target, self.truth = target, truth
        self.cohort = (CohortSpec("canonical", FlowOptions(flow="canonical", url=target.url)),)

    def step(self, value: float, load: Load, judged_from: float, end_s: float) -> StepFigures:
        """One load run, ended (in-flight sessions cancelled) ``end_s`` after it starts."""
        self.truth.errors.clear()
        control = RunControl()

        def end_later() -> None:
            asyncio.get_running_loop().call_later(end_s, control.abort, _STEP_OVER)

        wall, cpu, target_cpu = time.perf_counter(), time.process_time(), self.target.cpu_s()
        # no signal handlers of the run's own: a Ctrl-C raises KeyboardInterrupt here and ends calibration
        measured = measure_share(
            0, 1, self.cohort, load, _TIMEOUTS, Limits(), RunOptions(), ((), ()), None, end_later, control
        )
        spent = max(time.perf_counter() - wall, 1e-6)
        target_after = self.target.cpu_s()
        cohort, generator = measured.cohorts["canonical"], measured.generator
        failed = sum(n for outcome, n in cohort.outcomes.items() if outcome not in ("ok", "cancelled"))
        judged, p99 = self.truth.p99_since(judged_from)
        return StepFigures(
            value=value,
            sessions=cohort.sessions,
            failed=failed,
            judged=judged,
            ttfe_error_p99_ms=None if p99 is None else round(p99, 3),
            generator_error_ms=float(generator.get("error_ms") or 0.0),
            saturated=bool(generator.get("saturated")),
            cpu_share=round((time.process_time() - cpu) / spent, 3),
            target_cpu_share=None
            if target_cpu is None or target_after is None
            else round((target_after - target_cpu) / spent, 3),
        )


_STEP_OVER = "calibration step over"
_TIMEOUTS = Timeouts(connect=5, idle=10, session=60)


def rate_step_s(rate: float) -> float:
    """A rate step's length: RATE_STEP_S, longer at low rates so that enough sessions are judged."""
    return min(2 * RATE_STEP_S, max(RATE_STEP_S, 2 * MIN_JUDGED / rate))


def rate_load(rate: float) -> Load:
    """Open-model arrivals at ``rate`` for one step; sessions end on their own (short ones)."""
    step_s = rate_step_s(rate)
    schedule = Schedule((Phase(step_s, rate, rate),))
    return Load(schedule=schedule, duration=step_s, grace=STEP_GRACE_S, max_in_flight=100_000)


def hold_load(streams: float, rate: float) -> tuple[Load, dict[str, float], float]:
    """Sessions at ``rate`` whose streams last ``streams / rate`` s: once that long has passed, ``streams``
    are open at once while new ones keep arriving at the rate. Returns the load, the target's knobs for
    such streams (an event at least every 0.5 s) and when the judged window (steady state) starts."""
    hold_s = streams / rate
    events = max(2, math.ceil(hold_s / HOLD_GAP_S) + 1)
    knobs = {**HOLD_SHAPE, "events": events, "gap_ms": hold_s * 1000.0 / (events - 1)}
    schedule = Schedule((Phase(hold_s + PROBE_S, rate, rate),))
    return Load(schedule=schedule, duration=hold_s + PROBE_S, grace=0.0, max_in_flight=100_000), knobs, hold_s


def _floors(seconds: float = 1.0) -> FloorsDoc:
    """How late ``asyncio.sleep`` wakes on an idle loop, and what the run's loop-lag probe reads idle."""

    async def sample() -> tuple[Any, Any]:
        timer, lag = new_histogram(), new_histogram()
        always = RunControl(started=1)  # the probe counts only while something is in flight: here, always
        probe = asyncio.ensure_future(watch_loop_lag(lag, always))
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            timer.record_value(max(1, int((time.perf_counter() - t - 0.001) * 1e6)))
        probe.cancel()
        return timer, lag

    timer, lag = run_loop(sample())
    return {"timer_ms": summarize_ms(timer), "loop_lag_ms": summarize_ms(lag)}


def _search(
    search: Search,
    run_step: Callable[[float], StepFigures],
    bounds: tuple[float, float, float],
    step_s: Callable[[float], float],
    deadline: float,
    say: Callable[[str], None],
) -> None:
    """Run the steps :func:`next_value` asks for while each still fits before ``deadline``. A step that
    fails is run once more: it counts as failed only when it fails twice."""
    start, floor, cap = bounds
    while (value := next_value(search.tried, start, floor, cap)) is not None:
        if time.monotonic() + step_s(value) > deadline:
            search.stopped_by = "time"
            return
        why = search.measured(run_step(value))
        if why is not None and time.monotonic() + step_s(value) <= deadline:
            # once more: one burst from a neighbour is not this machine's limit; failing twice is
            say(f"{search.name} {value:,.0f}: {why}; once more")
            why = search.measured(run_step(value))
        search.tried.append((value, why is None))
        say(f"{search.name} {value:,.0f}: {why or 'ok'}")
    if not any(not ok for _, ok in search.tried):
        search.stopped_by = "cap"


def calibrate(
    budget_s: float = DEFAULT_BUDGET_S, say: Callable[[str], None] | None = None, in_flight_cap: float = IN_FLIGHT_CAP
) -> Calibration:
    """Measure this machine (see the module's doc); ``say`` hears one line per step. Bounded by
    ``budget_s`` seconds of searching (plus the target's start and stop). KeyboardInterrupt on Ctrl-C.
    ``in_flight_cap``: the most streams a step opens (the open-file limit's room, for one)."""
    say = say or (lambda _line: None)
    began, started = time.monotonic(), datetime.now(UTC)
    load_average = list(os.getloadavg())
    truth = _Truth()
    stop_observing = observe_first_events(truth)
    try:
        floors = _floors()
        with raised_open_files(), _built_in_target() as target:  # the forked target holds every stream too
            stepper = _Stepper(target, truth)
            rate = _measure_rate(stepper, began + 0.45 * budget_s, say)
            in_flight = _measure_in_flight(stepper, rate, began + budget_s, say, in_flight_cap)
    finally:
        stop_observing()
    return Calibration(_document(rate, in_flight, floors, started, time.monotonic() - began, load_average, budget_s))


def _measure_rate(stepper: _Stepper, deadline: float, say: Callable[[str], None]) -> Search:
    stepper.target.shape(RATE_SHAPE)
    search = Search("rate")
    bounds = (RATE_START, RATE_FLOOR, RATE_CAP)
    _search(
        search,
        lambda r: stepper.step(r, rate_load(r), 0.0, rate_step_s(r) + STEP_GRACE_S),
        bounds,
        lambda r: rate_step_s(r) + 1.0,
        deadline,
        say,
    )
    if search.found <= 0:
        raise CalibrationFailed(_none_passed(search, "sessions/s"))
    return search


def _measure_in_flight(
    stepper: _Stepper, rate: Search, deadline: float, say: Callable[[str], None], cap: float
) -> Search:
    fill_rate = max(HEADROOM * rate.found, RATE_FLOOR)
    search = Search("in flight")

    def run_step(streams: float) -> StepFigures:
        load, knobs, judged_from = hold_load(streams, fill_rate)
        stepper.target.shape(knobs)
        return stepper.step(streams, load, judged_from, judged_from + PROBE_S + SETTLE_S)

    # the first step opens at most a second's worth of streams: a slow machine still gets a figure in time
    bounds = (min(IN_FLIGHT_START, max(IN_FLIGHT_FLOOR, round(fill_rate)), cap), IN_FLIGHT_FLOOR, cap)
    _search(search, run_step, bounds, lambda n: n / fill_rate + PROBE_S + SETTLE_S + 1.0, deadline, say)
    if search.found <= 0:
        raise CalibrationFailed(_none_passed(search, "streams open"))
    return search


def _none_passed(search: Search, unit: str) -> str:
    if not search.steps:
        return f"the time budget left no room for a {search.name} step: give more (--budget)"
    low = min(search.steps, key=lambda s: s["value"])
    return (
        f"even {low['value']:,.0f} {unit} failed ({low['reason']}): this machine is too busy to calibrate now; "
        "try again when it is quieter"
    )


def _document(
    rate: Search,
    in_flight: Search,
    floors: FloorsDoc,
    started: datetime,
    elapsed: float,
    load_average: list[float],
    budget_s: float,
) -> CalibrationDoc:
    machine = machine_identity()
    at_rate = rate.figures_at(rate.found)
    generator_share = float((at_rate["cpu_share"] if at_rate is not None else None) or 1.0)
    target_share = at_rate["target_cpu_share"] if at_rate is not None else None
    workers = recommend_workers(machine["cores"], generator_share, target_share)
    target_said = "unknown, taken as the generator's" if target_share is None else f"{target_share:.2f}"
    return {
        "schema": SCHEMA,
        "date": started.isoformat(timespec="seconds"),
        "machine": machine,
        "load_average": [round(x, 2) for x in load_average],
        "budget_s": budget_s,
        "elapsed_s": round(elapsed, 1),
        "limits": {"rate_per_worker": rate.found, "in_flight_per_worker": in_flight.found},
        "recommended": {
            "workers": workers,
            "rate_per_worker": math.floor(HEADROOM * rate.found),
            "in_flight_per_worker": math.floor(HEADROOM * in_flight.found),
            "headroom": HEADROOM,
            "why": (
                f"at {rate.found:,.0f} sessions/s one worker used {generator_share:.2f} of a core and the target, "
                f"on this machine beside it, {target_said}; {HEADROOM:.0%} of that per worker fits "
                f"{workers} worker(s) in {USABLE_SHARE:.0%} of {machine['cores']} cores "
                "(a service on another machine leaves more room)"
            ),
        },
        "floors": floors,
        "rate": _search_doc(rate, "open model, canonical sessions of 5 events 10 ms apart", RATE_SHAPE),
        "in_flight": _search_doc(
            in_flight,
            f"sessions at {HEADROOM:.0%} of the rate found whose streams (an event every 0.5 s at most) last "
            f"N / rate s, judged over {PROBE_S:g} s once N are open",
            HOLD_SHAPE,
        ),
        "criteria": {"generator_saturated": False, "ttfe_error_p99_ms_below": TTFE_ERROR_LIMIT_MS},
    }


def _search_doc(search: Search, how: str, shape: Mapping[str, float]) -> SearchDoc:
    return {
        "found": search.found,
        "stopped_by": search.stopped_by,
        "how": how,
        "target": dict(shape),
        "steps": search.steps,
    }
