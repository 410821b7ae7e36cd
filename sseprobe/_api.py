"""The library under the command line: a :class:`RunPlan` built by :func:`make_plan`, and two calls.

``make_plan(scenario, options, given)`` lays the options given explicitly over a scenario over the built-in
defaults (no click here: the command line's flags arrive as an ``Options`` and the names it was given);
``plan_from(scenario, overrides)`` is the same for a dict. :func:`run` and :func:`compare` measure
and return the stats, the verdict and the results document. Rendering and exit codes stay with the caller:
the command line prints and exits, ``monitor`` records a pass, a Python caller does what it likes.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from ._config import Limits, Timeouts
from ._errors import MeasuredButFailed, UsageProblem
from ._ranging import band as error_band
from ._ranging import range_change, ranged, watched
from ._redact import redact_url
from .load.engine import CohortSpec, Load, RunInfo
from .load.generator import merged_generator
from .load.metrics import Endpoint, LiveMetrics, serve
from .load.ranging import RangeChange
from .load.ray_session import hold_ray
from .load.runner import Measured, RunOptions, measure
from .plan.cohorts import compare_cohorts, flow_config, parse_split, run_cohort, scaled
from .plan.options import OPTION_NAMES, OPTIONS, Options, options_from
from .plan.resolve import (
    build_limits,
    build_load,
    build_timeouts,
    load_config,
    prepare_run,
    read_policy,
    read_scenario,
    resolve,
    until_decided_from,
)
from .plan.scenario import Scenario
from .report.document import SCHEMA, build_document
from .report.summary import render_run
from .report.verdict_text import render_sequential, render_verdict
from .verdict.compare import Verdict, decided, generator_band, judge
from .verdict.levels import EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN
from .verdict.policy import FiredTrigger, Policy, check_triggers, judge_completion, mark_generator_bound, unreachable
from .verdict.schema import (
    BareCohortDoc,
    BareDocument,
    CohortDoc,
    DecisionDoc,
    IntervalDoc,
    JSONObject,
    ResultsDocument,
    ResultsParts,
)
from .verdict.sequential import Looks, Stopped, UntilDecided, time_to_decide
from .verdict.stats import CohortStats

__all__ = [
    "MeasuredButFailed",
    "DEFAULTS",
    "Options",
    "RunPlan",
    "Result",
    "plan_from",
    "make_plan",
    "run",
    "compare",
    "flow_config",
    "judge_completion",
    "unreachable",
    "parse_split",
    "serving",
]

Command = Literal["run", "compare"]

# The built-in defaults of every option a plan reads, as a dict (a Python caller's view of OPTIONS).
DEFAULTS: dict[str, Any] = {f.name: getattr(OPTIONS, f.name) for f in fields(Options)}


@dataclass(frozen=True)
class RunPlan:
    """Everything one run or comparison needs, decided and checked before any load."""

    command: Command
    cohorts: tuple[CohortSpec, ...]
    load: Load
    timeouts: Timeouts
    limits: Limits
    policy: Policy
    options: RunOptions  # workers, progress, cluster, abort on trigger
    out: str  # where the results document goes
    html: str | None = None  # where the HTML report goes, if asked for
    as_json: bool = False
    config: JSONObject = field(default_factory=dict)  # the document's config (no secrets): free-form JSON
    notes: tuple[str, ...] = ()  # warnings and notes for the caller to show
    until_decided: UntilDecided | None = None  # compare: sample in batches (``load``) until decided or a cap
    traffic_rate: float | None = None  # compare: sessions/s the service sees, for the time to a decision
    self_ranging: bool = False  # compare without phases: a load-bound generator lowers its own load
    service_late: Callable[[], float] | None = None  # a service on this machine (demo): its own lateness, ms
    metrics: Endpoint | None = None  # serve live Prometheus metrics here while the run lasts


@dataclass(frozen=True)
class Result:
    """What a run or a comparison measured, how it is judged, and its results document."""

    plan: RunPlan
    measured: Measured
    document: ResultsDocument
    triggers: list[FiredTrigger]
    verdict: Verdict | None = None  # compare only
    decision: DecisionDoc = field(default_factory=lambda: DecisionDoc())  # compare: sequential, time_to_decide

    @property
    def cohorts(self) -> dict[str, CohortStats]:
        return self.measured.cohorts

    @property
    def problem(self) -> str | None:
        """Why nothing could be measured (every session failed to connect), else None."""
        return unreachable(self.measured.cohorts)

    @property
    def exit_code(self) -> int:
        """The command line's exit code for this result (0 GREEN/OK, 1 YELLOW, 2 RED, 3 could not tell)."""
        info = self.measured.info
        # a share lost (--on-node-loss continue) measured less load than asked for: like an interrupted
        # run it cannot read GREEN or YELLOW (3), while a RED or a real trigger stands (2): the service
        # failed even under the lighter load
        partial = info.interrupted or bool(self.measured.worker_errors)
        if self.problem:
            return EXIT_UNKNOWN
        if self.verdict is not None:
            return EXIT_UNKNOWN if partial and self.verdict.overall != "RED" else self.verdict.exit_code
        if self.triggers:  # generator-bound ones alone are 3: the prober could not tell, not a service failure
            return EXIT_CRITICAL if any(not t.generator_bound for t in self.triggers) else EXIT_UNKNOWN
        attempts = sum(s.attempts for s in self.measured.cohorts.values())
        return EXIT_UNKNOWN if partial or not attempts else EXIT_OK

    def text(self, color: bool = False) -> str:
        """The human summary the command line prints."""
        info = self.measured.info
        bound = self.verdict is not None and bool(self.verdict.bound_by_generator)
        summary = render_run(
            self.measured.cohorts, self.triggers, info.duration_s, info.interrupted, self.measured.generator, bound
        )
        if self.problem:  # one answer: nothing measured is no verdict on the service (exit 3), never RED
            return summary + f"\n\nUNKNOWN: {self.problem}: no verdict on the service"
        if self.verdict is None:
            return summary
        verdict = render_verdict(self.verdict, "legacy", "canonical", color=color)
        return summary + "\n\n" + verdict + render_sequential(self.decision)


def plan_from(
    scenario: Scenario | str | Path | None,
    overrides: Mapping[str, object],
    command: Command = "compare",
    defaults: Mapping[str, object] | None = None,
) -> RunPlan:
    """The plan: built-in default < scenario < ``overrides`` (each key counts as given explicitly).
    Bad input raises UsageProblem. ``defaults`` (deprecated: build an :class:`Options` and call
    :func:`make_plan`) lays values under the scenario as if they were built-in defaults."""
    if defaults is not None:
        warnings.warn(
            "plan_from(defaults=...) is deprecated: make_plan(scenario, Options(...), given)",
            DeprecationWarning,
            stacklevel=2,
        )
    base = options_from(defaults or {})
    return make_plan(scenario, options_from(overrides, base), frozenset(overrides), command)


def make_plan(
    scenario: Scenario | str | Path | None,
    options: Options = OPTIONS,
    given: Collection[str] = (),
    command: Command = "compare",
) -> RunPlan:
    """The plan: built-in default < scenario < the ``options`` named in ``given`` (set explicitly: a flag
    on the command line, a key in a caller's overrides). Bad input raises UsageProblem."""
    given = frozenset(given)
    if unknown := given - OPTION_NAMES:
        raise UsageProblem(f"unknown option(s): {', '.join(sorted(unknown))}")
    if isinstance(scenario, str | Path):  # a path: read here, and named in the document's config
        options, given = replace(options, scenario=str(scenario)), given | {"scenario"}
        scenario = read_scenario(str(scenario))
    notes: list[str] = []
    resolved = resolve(options, given, scenario)
    policy = read_policy(options.policy_file or (scenario.policy if scenario else None))
    phases = scenario.phases if scenario else ()
    until, o = until_decided_from(resolved.options, given, resolved.chosen, command, bool(phases), notes)
    if until is not None:
        o = replace(o, sessions=until.look_every)  # one batch's worth per cohort: the plan's load is a batch
    split = parse_split(options.split) if command == "compare" else (1.0, 1.0)
    if command == "compare":
        cohorts = compare_cohorts(options, given, scenario, split, notes)
        n = len(cohorts)  # load options are per cohort
        o = replace(
            o,
            sessions=None if o.sessions is None else o.sessions * n,
            concurrency=o.concurrency * n,
            rate=None if o.rate is None else o.rate * n,
        )
        phases = tuple(scaled(p, n) for p in phases)
    else:
        cohorts = (run_cohort(options, given, scenario, notes),)
    load = build_load(o, phases, resolved.closed_model)
    timeouts, limits = build_timeouts(o), build_limits(o)
    run_opts, load, out = prepare_run(o, policy, load, limits, command, options.html_path, notes, resolved.chosen)
    config: JSONObject = {"command": command}
    if command == "compare":
        config["split"] = list(split)
    config["cohorts"] = {c.name: flow_config(c.options) for c in cohorts}
    config["load"] = load_config(o, load, timeouts, run_opts.workers)
    if until is not None:
        config["until_decided"] = vars(until).copy()
    if o.traffic_rate is not None:
        config["traffic_rate"] = o.traffic_rate
    ranging = command == "compare" and not (scenario and scenario.phases)
    return RunPlan(
        command=command,
        cohorts=cohorts,
        load=load,
        timeouts=timeouts,
        limits=limits,
        policy=policy,
        options=run_opts,
        out=out,
        html=options.html_path,
        as_json=bool(o.as_json),
        config=config,
        notes=tuple(notes),
        until_decided=until,
        traffic_rate=o.traffic_rate,
        self_ranging=ranging,
        metrics=_endpoint(o, resolved.chosen),
    )


def _endpoint(o: Options, chosen: Collection[str]) -> Endpoint | None:
    """The live-metrics endpoint asked for (``--metrics-port``), or None; its companions set (``chosen``)
    without it are refused."""
    if o.metrics_port is None:
        if {"metrics_host", "metrics_linger"} & set(chosen):
            raise UsageProblem("--metrics-host and --metrics-linger need --metrics-port")
        return None
    host = str(o.metrics_host).strip()
    if not host:
        raise UsageProblem("--metrics-host: give an address to listen on, e.g. 127.0.0.1")
    return Endpoint(int(o.metrics_port), host, float(o.metrics_linger))


@contextlib.contextmanager
def serving(plan: RunPlan, progress: TextIO | None | Literal["plan"] = "plan") -> Iterator[RunPlan]:
    """Serve the plan's live metrics around what the block does (run, render, write), then linger: yields
    the plan with the endpoint's sink in its options. No endpoint asked for, or one already served: the plan
    as it is. A port that cannot be bound is a UsageProblem, raised before any load."""
    endpoint = plan.metrics
    if endpoint is None or plan.options.metrics is not None:
        yield plan
        return
    with contextlib.ExitStack() as stack:
        try:
            live, url = stack.enter_context(serve(endpoint, {c.name: c.options.flow for c in plan.cohorts}))
        except OSError as exc:
            where = f"{endpoint.host}:{endpoint.port}"
            raise UsageProblem(f"--metrics-port: cannot listen on {where}: {exc.strerror or exc}") from None
        out = plan.options.progress if progress == "plan" else progress
        if out is not None:
            linger = f", and {endpoint.linger:g} s after the run" if endpoint.linger else ""
            print(f"sseprobe: metrics on {url} while the run lasts{linger}", file=out, flush=True)
        yield replace(plan, options=replace(plan.options, metrics=live))


def _live(plan: RunPlan) -> LiveMetrics | None:
    return plan.options.metrics if isinstance(plan.options.metrics, LiveMetrics) else None


def _show_verdict(plan: RunPlan, verdict: Verdict) -> None:
    """The live verdict on the metrics endpoint: each metric's level and the overall one."""
    if (live := _live(plan)) is not None:
        live.set_verdict({**{m.name: m.level for m in verdict.metrics}, "overall": verdict.overall})


def run(plan: RunPlan, progress: TextIO | None | Literal["plan"] = "plan") -> Result:
    """Measure the plan's one cohort; its triggers (and a run where nothing completed) judge it.
    ``progress``: where live progress goes ("plan": stderr unless the plan is quiet; None: nowhere)."""
    if plan.command != "run" or len(plan.cohorts) != 1:
        raise UsageProblem("run() takes a plan for one cohort (plan_from(..., command='run'))")
    with serving(plan, progress) as plan:
        return _run(plan, progress)


def _run(plan: RunPlan, progress: TextIO | None | Literal["plan"]) -> Result:
    measured = _measure(plan, progress)
    with _kept(plan, lambda: measured):
        stats = measured.cohorts[plan.cohorts[0].name]
        fired = judge_completion(stats, check_triggers(stats, plan.policy))
        triggers = mark_generator_bound(fired, generator_band(measured.generator))
        doc = _document(plan, measured, {"triggers": [t.to_dict() for t in triggers]})
        return Result(plan, measured, doc, triggers)


def compare(plan: RunPlan, progress: TextIO | None | Literal["plan"] = "plan") -> Result:
    """Measure canonical and legacy in the same window, interleaved, and judge canonical against legacy."""
    if plan.command != "compare":
        raise UsageProblem("compare() takes a plan for two cohorts (plan_from(..., command='compare'))")
    with serving(plan, progress) as plan:
        return _compare(plan, progress)


def _compare(plan: RunPlan, progress: TextIO | None | Literal["plan"]) -> Result:
    if plan.until_decided is not None:
        return _until_decided(plan, plan.until_decided, progress)
    measured = ranged(plan, progress, _measure)
    with _kept(plan, lambda: measured):
        band = error_band(plan, measured)  # a saturated generator's lag widens every latency interval
        verdict = judge(measured.cohorts["legacy"], measured.cohorts["canonical"], plan.policy, generator_error_ms=band)
        _show_verdict(plan, verdict)
        decision: DecisionDoc = {
            "time_to_decide": time_to_decide(verdict, decided(verdict), plan.traffic_rate, _own_rate(measured))
        }
        doc = _document(plan, measured, {}, verdict, decision)
        return Result(plan, measured, doc, verdict.triggers, verdict, decision)


@contextlib.contextmanager
def _kept(plan: RunPlan, measured: Callable[[], Measured | None]) -> Iterator[None]:
    """Any Exception inside (after measuring) becomes MeasuredButFailed carrying the bare document."""
    try:
        yield
    except Exception as exc:
        m = measured()
        if m is None:
            raise
        failure = f"{type(exc).__name__}: {exc}"[:300]
        doc: ResultsDocument | BareDocument
        try:
            doc = _document(plan, m, {"failure": failure})
        except Exception:  # noqa: BLE001 - the bare counts, at least
            doc = {"schema": SCHEMA, "failure": failure, "cohorts": {n: _bare(c) for n, c in m.cohorts.items()}}
        raise MeasuredButFailed(doc, plan.out, exc) from exc


def _bare(stats: CohortStats) -> CohortDoc | BareCohortDoc:
    try:
        return stats.to_dict()
    except Exception:  # noqa: BLE001
        return {"sessions": stats.sessions, "outcomes": dict(stats.outcomes)}


def _until_decided(plan: RunPlan, settings: UntilDecided, progress: TextIO | None | Literal["plan"]) -> Result:
    """Both cohorts in batches of ``look_every`` sessions each (a normal measurement each time),
    merged losslessly and judged after every batch, until decided or a cap. A stop asked for
    between batches (Ctrl-C, SIGTERM) ends the loop; everything measured is kept."""
    looks = Looks(settings, plan.policy)
    parts: list[Measured] = []
    started = time.monotonic()
    with _kept(plan, lambda: _merged_or_last(plan, parts, started)):
        return _looks(plan, settings, progress, looks, parts, started)


def _merged_or_last(plan: RunPlan, parts: list[Measured], started: float) -> Measured | None:
    """For a failure between batches: every batch merged, else (merging is what failed) the last one."""
    if not parts:
        return None
    try:
        return _merge(plan, parts, time.monotonic() - started)
    except Exception:  # noqa: BLE001 - a batch measured is still worth keeping
        return parts[-1]


def _looks(
    plan: RunPlan,
    settings: UntilDecided,
    progress: TextIO | None | Literal["plan"],
    looks: Looks,
    parts: list[Measured],
    started: float,
) -> Result:
    merged: Measured | None = None
    verdict: Verdict | None = None
    stopped: Stopped = "max_sessions"
    ranges: list[RangeChange] = []
    look = 1
    with _stop_requests() as asked, hold_ray() if plan.options.cluster else contextlib.nullcontext():  # one Ray
        while look <= settings.plan.looks:
            left = _time_left(settings, started)
            if asked or left == 0.0:
                stopped = "interrupted" if asked else "max_duration"
                break
            part = _measure(watched(replace(plan, load=_batch_load(plan, settings, look, left)), ranges), progress)
            if not asked and (lower := range_change(plan, part, parts, ranges, progress)) is not None:
                plan = lower  # the look schedule goes on at the lower load; this batch is left out
                continue
            parts.append(part)
            merged = _merge(plan, parts, time.monotonic() - started, ranges)
            verdict = looks.look(merged.cohorts["legacy"], merged.cohorts["canonical"], error_band(plan, merged))
            _show_verdict(plan, verdict)
            _say_look(plan, progress, look, merged, verdict)
            look += 1
            if merged.info.interrupted or asked:
                stopped = "interrupted"
                break
            if decided(verdict):  # decided, or left undecided by a saturated generator (more cannot help)
                stopped = "generator_bound" if verdict.overall == "INCONCLUSIVE" else "decided"
                break
            if _time_left(settings, started) == 0.0:
                stopped = "max_duration"  # the batch it cut short counts, and was judged
                break
    if merged is None or verdict is None:  # stopped before the first batch: a document that says so
        merged = _merge(plan, parts, time.monotonic() - started, ranges)
        band = error_band(plan, merged)
        verdict = judge(merged.cohorts["legacy"], merged.cohorts["canonical"], plan.policy, generator_error_ms=band)
    if stopped == "interrupted" and not merged.info.interrupted:
        merged.info = replace(merged.info, interrupted=True, stop_reason=merged.info.stop_reason or "interrupted")
    sessions = {name: s.sessions for name, s in merged.cohorts.items()}
    section = looks.section(verdict, stopped, sessions)
    is_decided = stopped == "decided"
    decision: DecisionDoc = {
        "sequential": section,
        "time_to_decide": time_to_decide(verdict, is_decided, plan.traffic_rate, _own_rate(merged)),
    }
    doc = _document(plan, merged, {}, verdict, decision)
    return Result(plan, merged, doc, verdict.triggers, verdict, decision)


def _time_left(settings: UntilDecided, started: float) -> float | None:
    """Seconds left under --max-duration (0.0: none left), None without a time cap."""
    if settings.max_duration is None:
        return None
    return max(settings.max_duration - (time.monotonic() - started), 0.0)


def _batch_load(plan: RunPlan, settings: UntilDecided, look: int, left: float | None) -> Load:
    """Batch ``look``'s load: its share of sessions for every cohort, cut to the time left."""
    load = replace(plan.load, sessions=settings.batch(look) * len(plan.cohorts))
    if load.schedule is not None and load.schedule.poisson:  # each batch its own arrivals, not the first's again
        load = replace(load, schedule=replace(load.schedule, seed=load.schedule.seed + 7_919 * (look - 1)))
    return load if left is None else replace(load, duration=left)


def _merge(plan: RunPlan, parts: list[Measured], elapsed: float, ranges: Sequence[RangeChange] = ()) -> Measured:
    """The batches as one measurement: counts and histograms added, the generator re-derived from
    the merged histograms, intervals laid end to end, the last stop's reason."""
    cohorts = {c.name: CohortStats(flow=c.options.flow, url=redact_url(c.options.url)) for c in plan.cohorts}
    intervals: list[IntervalDoc] = []
    offset = 0.0
    for part in parts:
        for name, stats in part.cohorts.items():
            cohorts[name].merge(stats)
        intervals += [{**i, "t": round(i["t"] + offset, 3)} for i in part.intervals]
        offset += math.ceil(part.info.duration_s)
    generator = merged_generator(cohorts, [p.generator for p in parts])
    if lost := [p.generator["below_target"] for p in parts if p.generator.get("below_target")]:
        generator["below_target"] = lost[-1]  # a batch that ran below its target (a lost actor) says so
    if ranges:
        generator["ranges"] = [r.to_dict() for r in ranges]
    if not parts:
        info = RunInfo(_now_iso(), round(elapsed, 3), True, "interrupted before the first batch")
        return Measured(info, cohorts, [], generator)
    last = parts[-1].info
    info = RunInfo(parts[0].info.started, round(elapsed, 3), last.interrupted, last.stop_reason)
    errors = [e for p in parts for e in p.worker_errors]
    return Measured(info, cohorts, intervals, generator, errors)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _own_rate(measured: Measured) -> float | None:
    """This run's own sessions per second, all cohorts together."""
    n = sum(s.attempts for s in measured.cohorts.values())
    return n / measured.info.duration_s if n and measured.info.duration_s > 0 else None


def _say_look(
    plan: RunPlan, progress: TextIO | None | Literal["plan"], look: int, merged: Measured, verdict: Verdict
) -> None:
    """One line per look where progress goes: how far, and what it says so far."""
    out = plan.options.progress if progress == "plan" else progress
    if out is None:
        return
    n = min(s.attempts for s in merged.cohorts.values())
    undecided = [m.name for m in verdict.metrics if m.critical and m.level == "INCONCLUSIVE"]
    if not decided(verdict):
        state = f"undecided: {', '.join(undecided)}"
    elif verdict.overall == "INCONCLUSIVE":  # stopped: the generator's own lag is what hides the answer
        state = "stopping: the generator is saturated, more sessions cannot decide"
    else:
        state = "decided"
    print(f"sseprobe: look {look}: {n:,} sessions per cohort, {verdict.overall} ({state})", file=out, flush=True)


@contextlib.contextmanager
def _stop_requests() -> Iterator[list[str]]:
    """SIGINT/SIGTERM between batches: remembered (the list is non-empty), never a traceback.
    During a batch the runner's own handlers stop it, and hand these back afterwards."""
    asked: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def on_signal(signum: int, _frame: Any) -> None:
        asked.append(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _measure(plan: RunPlan, progress: TextIO | None | Literal["plan"]) -> Measured:
    opts = plan.options if progress == "plan" else replace(plan.options, progress=progress)
    measured = measure(list(plan.cohorts), plan.load, plan.timeouts, plan.limits, opts)
    if (live := _live(plan)) is not None:  # the exact final counts replace the last live snapshots
        live.batch_done(measured.cohorts)
    return measured


def _document(
    plan: RunPlan,
    measured: Measured,
    extra: ResultsParts,
    verdict: Verdict | None = None,
    decision: DecisionDoc | None = None,
) -> ResultsDocument:
    info = measured.info
    judged = None if verdict is None else verdict.section(decision)
    problem = unreachable(measured.cohorts)
    if problem:  # the document says what the exit code says: could not tell (3), not RED
        extra = {**extra, "unreachable": problem}
        if judged is not None and verdict is not None:
            judged = {**judged, "overall": "UNKNOWN", "reasons": [problem, *verdict.reasons]}
    return build_document(
        started=info.started,
        duration_s=info.duration_s,
        config=plan.config,
        cohorts=measured.cohorts,
        verdict=judged,
        interrupted=info.interrupted,
        extra={**extra, **_results_extra(measured)},
    )


def _results_extra(m: Measured) -> ResultsParts:
    return {
        "stop_reason": m.info.stop_reason,
        "generator": m.generator,
        "worker_errors": m.worker_errors,
        "intervals": m.intervals,
    }
