"""One synthetic-monitor pass, for cron: check, probe, judge, then history, metrics and alerts.

The pass reuses what the commands use rather than re-plumbing it: ``check``'s :func:`run_checks`
for health and the flag, and the library's ``plan_from`` and ``compare`` (one worker) for the probe
of both cohorts, so a nightly pass measures exactly what an engineer measures by hand. It then judges
today against the stored baseline (same-named cohorts, same statistics as ``compare``) and against
the absolute targets and rollback triggers of the rollout checklist. Each part says why in one
line; the exit code is the worst part's (0 GREEN, 1 YELLOW, 2 RED, 3 UNKNOWN when nothing is worse).

Outputs are written only once a pass has measured something, each atomically: a pass killed
midway leaves the history, the Prometheus file and the baseline as they were. Each output is a
writer with one ``write`` method (``writers_for`` lists them in the order they run).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from .._api import RunPlan, make_plan
from .._api import compare as compare_live
from .._config import FlowName, FlowOptions
from .._errors import MeasuredButFailed, UsageProblem
from ..plan.options import Options, options_from
from ..plan.scenario import Scenario, ScenarioError, load_scenario
from ..report.document import ResultsError, dumps, read_document, write_atomic, write_with_fallback
from ..report.history import History
from ..verdict.compare import GENERATOR_ADVICE, Verdict, generator_band, judge
from ..verdict.policy import (
    Policy,
    check_triggers,
    format_metric,
    mark_generator_bound,
    metric_value,
)
from ..verdict.schema import ResultsDocument, VerdictDoc
from ..verdict.stats import CohortStats
from .check import run_checks
from .monitor_config import EXIT, MonitorConfig, MonitorError, Part, PassResult, load_monitor_config, pass_lock, worst
from .monitor_writers import FinishedPass, monitor_title, save_baseline, writers_for

__all__ = [
    "EXIT",
    "MonitorError",
    "MonitorConfig",
    "Part",
    "PassResult",
    "load_monitor_config",
    "measure",
    "monitor_plan",
    "monitor_title",
    "pass_lock",
    "run_pass",
    "save_baseline",
    "TARGETS",
    "worst",
]

# PROTOCOLS.md "What good means": (metric, op, target, words). Missing one is YELLOW.
TARGETS = (
    ("connect_success_rate", ">", 0.99, "connect success"),
    ("ttfe_p95_ms", "<", 500.0, "TTFE p95"),
    ("error_rate_5xx", "<", 0.01, "5xx rate"),
    ("completion_rate", ">", 0.98, "completion"),
)


def _level(verdict_level: str) -> str:
    return "UNKNOWN" if verdict_level == "INCONCLUSIVE" else verdict_level


# --- the parts ------------------------------------------------------------------------------------


def check_part(cfg: MonitorConfig, plan: RunPlan) -> tuple[Part, bool]:
    """Health and flag via ``check``, at the URLs and with the headers the probe uses (the plan's: the
    bearer token, credentials from the URL, a scenario's headers); returns (part, reachable)."""
    cohorts = {c.name: c.options for c in plan.cohorts}
    canonical, legacy = cohorts["canonical"], cohorts["legacy"]
    groups = (
        {("canonical", "legacy"): canonical}
        if canonical.url == legacy.url
        else {("canonical",): canonical, ("legacy",): legacy}
    )
    results = []
    for flows, sent in groups.items():
        opts = FlowOptions(
            flow=cast(FlowName, flows[0]),
            url=sent.url,
            app=cfg.app or "vana",
            user_prefix="sseprobe-monitor",
            headers=sent.headers,
        )
        found = asyncio.run(run_checks(opts, flows, cfg.check_timeout_s))
        results += found
        if any(r.level == "UNKNOWN" for r in found):
            why = "; ".join(r.detail for r in found if r.level == "UNKNOWN")
            return Part("check", "UNKNOWN", why), False
    bad = [r for r in results if r.level in ("FAIL", "WARN") and r.name not in cfg.ignore_checks]
    ignored = [r for r in results if r.level in ("FAIL", "WARN") and r.name in cfg.ignore_checks]
    level = "RED" if any(r.level == "FAIL" for r in bad) else "YELLOW" if bad else "GREEN"
    if bad:
        detail = "; ".join(f"{r.name}: {r.detail}" for r in bad)
    else:
        flag = next((r.detail.split(" ")[0] for r in results if r.name == "canonical.flag"), "?")
        sessions = sum(1 for r in results if r.name.endswith(".session") and r.level == "OK")
        detail = f"/health answered, canonical flag {flag}, {sessions} end-to-end session(s) ok"
    if ignored:
        detail += " (ignored by config: " + "; ".join(f"{r.name} {r.level}: {r.detail}" for r in ignored) + ")"
    return Part("check", level, detail), True


@dataclass(frozen=True)
class Probe:
    """What the pass's comparison gave: its exit code, its document (None if it could not run), why
    not, and whether the service answered at all (every session failing to connect is unreachable)."""

    code: int
    doc: ResultsDocument | None
    error: str = ""
    reachable: bool = True


def measure(plan: RunPlan) -> Probe:
    """Run the comparison through the library (one worker, no progress) and write its results document."""
    try:
        result = compare_live(plan, progress=None)
    except UsageProblem as exc:
        return Probe(3, None, str(exc))
    except MeasuredButFailed as exc:  # measured, then judging failed: the measurement is kept all the same
        path, _ = write_with_fallback(plan.out, dumps(exc.document))
        return Probe(3, None, f"probe failed after measuring: {exc}; the measured results are saved in {path}"[:400])
    except Exception as exc:  # noqa: BLE001 - a pass reports, it does not crash
        return Probe(3, None, f"probe failed: {type(exc).__name__}: {exc}"[:300])
    path, failed = write_with_fallback(plan.out, dumps(result.document))
    if failed:
        return Probe(3, None, f"{failed}; the results are saved in {path}")
    doc = result.document
    return Probe(result.exit_code, doc, result.problem or "", reachable=not result.problem)


def monitor_plan(cfg: MonitorConfig, out: Path, scenario: Scenario | None = None, secrets: bool = True) -> RunPlan:
    """The pass's comparison as a plan, the scenario and the policy read once for the whole pass (the probe
    runs it, the parts judge by its policy). ``scenario``: the config's, already read; else it is read here.
    ``secrets=False``: without the bearer token's source, for a plan that is only looked at, such as the
    shape ``baseline save`` holds a document against. A config that cannot plan raises MonitorError."""
    always = Options(
        canonical_url=cfg.canonical_url,
        legacy_url=cfg.legacy_url,
        quiet=True,
        out=str(out),
        workers=1,
        user_prefix="sseprobe-monitor",
    )
    optional: dict[str, object] = {
        "scenario": str(cfg.scenario) if cfg.scenario else None,
        "sessions": cfg.sessions,
        "concurrency": cfg.concurrency,
        "policy_file": str(cfg.policy) if cfg.policy else None,  # else the scenario's, if it names one
        "app": cfg.app,
        "bearer_env": cfg.bearer_env if secrets else None,
        "bearer_file": str(cfg.bearer_file) if cfg.bearer_file and secrets else None,
        "until_decided": cfg.until_decided,
        "look_every": cfg.look_every,
        "max_sessions": cfg.max_sessions,
        "max_duration": cfg.max_duration_s,
        "traffic_rate": cfg.traffic_rate,
    }
    configured = {k: v for k, v in optional.items() if v}  # what the config sets; the rest: defaults
    metrics = {
        "metrics_port": cfg.metrics_port,
        "metrics_host": cfg.metrics_host,
        "metrics_linger": cfg.metrics_linger_s,
    }
    if secrets:  # a plan only looked at serves no metrics
        configured.update({k: v for k, v in metrics.items() if v is not None})  # port 0 and linger 0 are values
    given = frozenset({"canonical_url", "legacy_url", "quiet", "out", "workers", "user_prefix", *configured})
    try:
        if scenario is None and cfg.scenario:
            scenario = load_scenario(cfg.scenario)
        return make_plan(scenario, options_from(configured, always), given, "compare")
    except (ScenarioError, UsageProblem) as exc:
        raise MonitorError(str(exc)) from None


def _first_reasons(reasons: list[str], n: int = 2) -> str:
    return "; ".join(reasons[:n]) + (f" (+{len(reasons) - n} more)" if len(reasons) > n else "")


def verdict_part(name: str, verdict: VerdictDoc | None) -> Part:
    if verdict is None:
        return Part(name, "UNKNOWN", "the comparison gave no verdict")
    return Part(name, _level(verdict["overall"]), _first_reasons(verdict.get("reasons", [])) or verdict["overall"])


def baseline_parts(doc: ResultsDocument, baseline: ResultsDocument, policy: Policy) -> list[Part]:
    """Each cohort against the baseline's same-named one. The band is tonight's generator's, and the
    baseline's own only where the baseline was saturated (``generator_band`` is 0 otherwise). What only
    a saturated baseline's band leaves undecided (its latencies read high by up to its lag) is not held
    against tonight's pass, which is not UNKNOWN every night for it: the part says so, and the pass
    warns once to re-record the baseline (``stale_baseline_note``)."""
    tonight = generator_band(doc.get("generator"))
    own = generator_band(baseline.get("generator"))
    band = max(tonight, own)
    parts = []
    for name, data in doc["cohorts"].items():
        if name not in baseline["cohorts"]:
            parts.append(
                Part(
                    f"{name} vs baseline",
                    "UNKNOWN",
                    f"the baseline has no cohort {name!r} (it has {', '.join(baseline['cohorts'])})",
                )
            )
            continue
        try:
            v = judge(
                CohortStats.from_dict(baseline["cohorts"][name]),
                CohortStats.from_dict(data),
                policy,
                generator_error_ms=band,
            )
        except ValueError as exc:  # a pass that cannot judge is UNKNOWN, and still recorded
            parts.append(Part(f"{name} vs baseline", "UNKNOWN", f"cannot compare: {exc}"))
            continue
        level, detail = _level(v.overall), _first_reasons(v.reasons)
        if level == "UNKNOWN" and own > tonight and _only_bound(v):
            level = "GREEN"
            detail = (
                f"no change beyond the baseline's own generator lag (p99 {own:.1f} ms: it was recorded saturated);"
                f" left unjudged within it: {', '.join(v.bound_by_generator)}"
            )
        rows = tuple(m.to_dict() for m in v.metrics)
        parts.append(Part(f"{name} vs baseline", level, detail, rows))
    return parts


def _only_bound(v: Verdict) -> bool:
    """Undecided only by the generator band: every undecided critical metric is generator-bound."""
    return all(m.generator_bound for m in v.metrics if m.critical and m.level == "INCONCLUSIVE")


def stale_baseline_note(path: Path, baseline: ResultsDocument) -> str | None:
    """A WARN to re-record a baseline that was stored with a saturated generator, once per stored
    baseline (a marker beside it remembers which one was warned about), not in every nightly mail."""
    own = generator_band(baseline.get("generator"))
    if own <= 0:
        return None
    stored = baseline.get("baseline")
    stamp = (stored.get("saved") if stored else "") or baseline.get("started") or ""  # a file: any key may be missing
    marker = path.with_name(path.name + ".warned")
    with contextlib.suppress(OSError):
        if marker.read_text().strip() == stamp:
            return None
    with contextlib.suppress(OSError):
        write_atomic(marker, f"{stamp}\n".encode())
    return (
        f"baseline: WARN {path} was recorded with a saturated generator (lag p99 {own:.1f} ms): its latencies read"
        " high, so changes within that are not judged; re-record the baseline (monitor --update-baseline from"
        " a GREEN pass on a quieter machine)"
    )


def target_parts(doc: ResultsDocument, policy: Policy) -> list[Part]:
    """Absolute checklist targets (missed: YELLOW) and rollback triggers (fired: RED), per cohort.
    A latency trigger or miss that a saturated generator's own lag could explain is UNKNOWN."""
    band = generator_band(doc.get("generator"))
    parts = []
    for name, data in doc["cohorts"].items():
        stats = CohortStats.from_dict(data)
        fired = mark_generator_bound(check_triggers(stats, policy), band)
        real = [f"{t.name} ({t.reason})" for t in fired if not t.generator_bound]
        misses, bound = _target_misses(stats, band)
        bound += [f"{t.name} ({t.reason})" for t in fired if t.generator_bound]
        if real:
            parts.append(Part(f"{name} targets", "RED", "rollback trigger: " + "; ".join(real)))
        elif misses:
            parts.append(Part(f"{name} targets", "YELLOW", "; ".join(misses)))
        elif bound:
            parts.append(Part(f"{name} targets", "UNKNOWN", f"generator-bound: {'; '.join(bound)}; {GENERATOR_ADVICE}"))
        else:
            parts.append(Part(f"{name} targets", "GREEN", "every checklist target met, no rollback trigger"))
    return parts


def _target_misses(stats: CohortStats, band_ms: float) -> tuple[list[str], list[str]]:
    """(targets missed, latency targets missed only by less than the generator's error band)."""
    misses: list[str] = []
    bound: list[str] = []
    for metric, op, target, _words in TARGETS:
        v = metric_value(stats, metric)
        if v is None or _meets(v, op, target):
            continue
        text = f"{metric} {format_metric(metric, v)} misses the target {op} {format_metric(metric, target)}"
        if metric.endswith("_ms") and band_ms > 0 and _meets(v - band_ms, op, target):
            bound.append(f"{text}, within the generator's own lag (p99 {format_metric(metric, band_ms)})")
        else:
            misses.append(text)
    return misses, bound


def _meets(value: float, op: str, target: float) -> bool:
    return value > target if op == ">" else value < target


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def run_pass(
    cfg: MonitorConfig,
    *,
    update_baseline: bool = False,
    force: bool = False,
    html: Path | None = None,
    echo: Callable[[str], None] = print,
) -> PassResult:
    """One whole pass under the lock. Raises MonitorError / HistoryError only before measuring."""
    with pass_lock(cfg.lock):
        started = datetime.now(UTC).replace(microsecond=0)  # as stored in the history
        t0 = time.monotonic()
        history = History(cfg.history)  # a corrupt or newer file stops the pass before any load
        try:
            plan = monitor_plan(cfg, cfg.results_dir / f"monitor-{_stamp()}.json")  # a bad config: before any load
            return _measure_and_record(cfg, history, started, t0, plan, (update_baseline, force), html, echo)
        finally:
            history.close()


def _measure_and_record(
    cfg: MonitorConfig,
    history: History,
    started: datetime,
    t0: float,
    plan: RunPlan,
    baseline_update: tuple[bool, bool],
    html: Path | None,
    echo: Callable[[str], None],
) -> PassResult:
    update_baseline = baseline_update[0]
    parts: list[Part] = []
    notes: list[str] = []
    baseline = None
    if cfg.baseline and not update_baseline:
        try:
            baseline = read_document(cfg.baseline)
        except ResultsError as exc:
            why = (
                "none saved yet (sseprobe baseline save, or monitor --update-baseline)"
                if not cfg.baseline.exists()
                else str(exc)
            )
            parts.append(Part("baseline", "UNKNOWN", f"{cfg.baseline}: {why}"))
    reachable = True
    if cfg.check:
        part, reachable = check_part(cfg, plan)
        parts.append(part)
    doc: ResultsDocument | None = None
    results_path = Path(plan.out)
    if reachable:
        found = measure(plan)
        doc = found.doc
        if doc is None:
            parts.append(Part("probe", "UNKNOWN", found.error or "the probe wrote no results"))
        elif doc["interrupted"]:
            parts.append(Part("probe", "UNKNOWN", f"interrupted: {doc.get('stop_reason') or 'stopped'}"))
            echo(_summary(PassResult(worst(parts), parts)))
            echo("  (interrupted pass: history, metrics and baseline left as they were)")
            return PassResult(worst(parts), parts, results_path)
        elif not found.reachable:
            reachable = False
            parts.append(Part("probe", "UNKNOWN", found.error))
        else:
            parts.append(verdict_part("canonical vs legacy", doc.get("verdict")))
            if baseline is not None and cfg.baseline is not None:
                parts += baseline_parts(doc, baseline, plan.policy)
                if stale := stale_baseline_note(cfg.baseline, baseline):
                    notes.append(stale)
            parts += target_parts(doc, plan.policy)
            generator = doc.get("generator")
            if generator and generator["saturated"]:  # the prober itself was the bottleneck: latencies read high
                notes.append(f"generator: WARN {generator.get('note') or 'saturated'}")
    done = FinishedPass(
        cfg, history, started, time.monotonic() - t0, parts, notes, doc, results_path, reachable and doc is not None
    )
    for writer in writers_for(cfg, history, html, baseline_update):
        writer.write(done)
    result = done.result()
    echo(_summary(result))
    for note in notes:
        echo(f"  {note}")
    return result


def _summary(result: PassResult) -> str:
    bad = [p.name for p in result.parts if p.level == result.overall and p.level != "GREEN"]
    head = f"sseprobe monitor: {result.overall}" + (f" ({', '.join(bad)})" if bad else "")
    width = max((len(p.name) for p in result.parts), default=5)
    return "\n".join([head, *(f"  {p.name:<{width}}  {p.level:<7} {p.detail}" for p in result.parts)])
