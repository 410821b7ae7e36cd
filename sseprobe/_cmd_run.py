"""``sseprobe run``: one cohort, one flow, one results document. Exit 2 when a rollback trigger fires."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ._cli_common import (
    EXIT_CRITICAL,
    EXIT_OK,
    EXIT_UNKNOWN,
    UsageProblem,
    answer_options,
    build_limits,
    build_load,
    build_timeouts,
    flow_from,
    flow_options,
    load_config,
    load_options,
    prepare_run,
    public_headers,
    read_policy,
    read_scenario,
    resolve,
    tls_config,
)
from ._cmd_report import attach_html
from ._config import FLOWS, FlowOptions
from ._engine import CohortSpec, RunInfo
from ._outcomes import Outcome
from ._policy import check_triggers
from ._redact import redact_url
from ._results import build_document, default_out_path, dumps, write_with_fallback
from ._runner import Measured, measure
from ._scenario import Scenario
from ._stats import CohortStats
from ._summary import render_run

__all__ = [
    "run_cmd",
    "flow_config",
    "emit",
    "unreachable",
    "results_extra",
    "said_interrupted",
    "held_signals",
    "judge_completion",
]


def flow_config(opts: FlowOptions) -> dict[str, Any]:
    """A cohort's configuration for the results document: no secrets."""
    cfg: dict[str, Any] = {
        "flow": opts.flow,
        "url": redact_url(opts.url),
        "app": opts.app,
        "messages": list(opts.messages),
        "session_create": opts.session_create,
        "headers": public_headers(opts.headers),
    }
    if opts.flow == "legacy":
        cfg["legacy_stream"] = opts.legacy_stream
    if opts.flow == "generic":
        cfg.update(
            method=opts.method,
            complete_on=opts.complete_on,
            first_answer_event=opts.first_answer_event,
            first_answer_field=opts.first_answer_field,
        )
    if (tls := tls_config(opts)) is not None:
        cfg["tls"] = tls
    return cfg


def unreachable(cohorts: dict[str, CohortStats]) -> str | None:
    """Why nothing could be measured, when every attempt failed to connect at all."""
    for name, stats in cohorts.items():
        if stats.attempts and stats.outcomes.get(Outcome.CONNECT_ERROR, 0) == stats.attempts:
            return f"cannot reach {stats.url} ({name}): every session failed to connect"
    return None


def judge_completion(stats: CohortStats, fired: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The policy's triggers, plus one that no policy can switch off: a run where no session
    completed with an answer is RED, whatever the policy file says (all stream errors, all
    premature closes, all empty...)."""
    if stats.attempts and not stats.ok and not any(t["metric"] == "completion_rate" for t in fired):
        top = ", ".join(f"{k} {v}" for k, v in stats.outcomes.most_common(3))
        reason = f"no session of {stats.attempts} completed with an answer ({top})"
        fired = [
            *fired,
            {
                "name": "no_completion",
                "metric": "completion_rate",
                "op": "==",
                "threshold": 0.0,
                "value": 0.0,
                "reason": reason,
            },
        ]
    return fired


def results_extra(m: Measured) -> dict[str, Any]:
    return {
        "stop_reason": m.info.stop_reason,
        "generator": m.generator,
        "worker_errors": m.worker_errors,
        "intervals": m.intervals,
    }


def emit(doc: dict[str, Any], out: str | None, kind: str, as_json: bool, text: str) -> tuple[Path, bool]:
    """Write the document atomically; print it (``--json``) or the human summary. Returns where it
    is and whether that is where it was asked for (else it went to the temporary folder, said on stderr).
    Signals wait until the document is written and printed: an interrupt never loses it."""
    data = dumps(doc)
    with held_signals():
        path = Path(out or default_out_path(kind))
        try:
            path, failed = write_with_fallback(path, data)
            if failed:
                click.echo(f"sseprobe: error: {failed}; the results are saved in {path}", err=True)
        except OSError as exc:  # not even the temporary folder: stdout is all that is left
            failed = f"cannot write the results anywhere: {exc.strerror or exc}"
            click.echo(f"sseprobe: error: {failed}" + ("" if as_json else " (--json prints them)"), err=True)
        if as_json:
            click.echo(data.decode(), nl=False)
        else:
            click.echo(text)
            click.echo(f"\nresults: {path}")
    return path, failed is None


def said_interrupted(info: RunInfo) -> None:
    """An interrupted run is said on stderr in one line (its document holds what was measured)."""
    if info.interrupted:
        click.echo(f"sseprobe: run stopped early: {info.stop_reason or 'interrupted'}", err=True)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """SIGINT and SIGTERM wait (remembered, not lost) while this runs, then interrupt as usual."""
    pending: list[int] = []
    try:
        before = {sig: signal.signal(sig, lambda signum, _f: pending.append(signum)) for sig in _STOPS}
    except ValueError:  # not the main thread: signals are not ours
        before = {}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    if pending:
        raise KeyboardInterrupt


_STOPS = (signal.SIGINT, signal.SIGTERM)


def _scenario_cohort(scenario: Scenario | None, flow: str | None) -> tuple[str | None, dict[str, Any]]:
    if scenario is None or not scenario.cohorts:
        return flow, {}
    for c in scenario.cohorts:
        if flow is None or c.values.get("flow") == flow or c.name == flow:
            return c.values.get("flow", flow), c.values
    return flow, {}


@click.command("run")
@click.option(
    "--flow",
    type=click.Choice(FLOWS),
    default=None,
    help="canonical: POST /run_sse; legacy: POST then GET .../run; generic: any SSE URL. "
    "Required unless the scenario names one.",
)
@click.option("--url", default=None, help="Base URL of the service (canonical, legacy) or the full SSE URL (generic).")
@flow_options
@click.option("--method", default="GET", show_default=True, help="Generic flow: HTTP method.")
@click.option("--body", default=None, help="Generic flow: request body (text).")
@click.option(
    "--body-file", type=click.Path(dir_okay=False), default=None, help="Generic flow: request body read from a file."
)
@click.option(
    "--complete-on",
    default=None,
    metavar="EVENT",
    help="Generic flow: named event that completes a session (default: a clean close after at least one event).",
)
@answer_options
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the HTML report of this run (as sseprobe report --html).",
)
@load_options
@click.pass_context
def run_cmd(ctx: click.Context, /, **params: Any) -> int:
    """Measure one flow against one URL.

    Prints connect success, completion, TTFE and completion percentiles, 5xx and timeout
    rates and any rollback trigger; writes the results document. Exit 2 when a rollback
    trigger fires, 3 when nothing could be measured or the run was interrupted, else 0.
    """
    scenario = read_scenario(params["scenario"])
    o = resolve(ctx, params, scenario)
    flow, sc_values = _scenario_cohort(scenario, params["flow"])
    if flow is None:
        raise UsageProblem("--flow is required (canonical, legacy or generic)")
    if params["body_file"] is not None:
        try:
            params["body"] = Path(params["body_file"]).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageProblem(f"--body-file: cannot read {params['body_file']}: {exc}") from None
    opts = flow_from(ctx, params, sc_values, flow, params["url"])
    load = build_load(o, scenario.phases if scenario else ())
    timeouts, limits = build_timeouts(o), build_limits(o)
    policy = read_policy(params["policy_file"] or (scenario.policy if scenario else None))
    run_opts, load, out = prepare_run(o, policy, load, limits, "run", params["html_path"])
    measured = measure([CohortSpec(flow, opts)], load, timeouts, limits, run_opts)
    stats = measured.cohorts[flow]
    triggers = judge_completion(stats, check_triggers(stats, policy))
    config = {
        "command": "run",
        "cohorts": {flow: flow_config(opts)},
        "load": load_config(o, load, timeouts, run_opts.workers),
    }
    info = measured.info
    doc = build_document(
        started=info.started,
        duration_s=info.duration_s,
        config=config,
        cohorts=measured.cohorts,
        interrupted=info.interrupted,
        extra={"triggers": triggers, **results_extra(measured)},
    )
    path, saved = emit(
        doc,
        out,
        "run",
        o["as_json"],
        render_run(measured.cohorts, triggers, info.duration_s, info.interrupted, measured.generator),
    )
    attach_html(doc, str(path), params["html_path"], o["as_json"])
    problem = unreachable(measured.cohorts)
    if problem:
        click.echo(f"sseprobe: error: {problem}", err=True)
        return EXIT_UNKNOWN
    if not saved:
        return EXIT_UNKNOWN
    said_interrupted(info)
    if triggers:
        click.echo(f"sseprobe: RED: {'; '.join(t['reason'] for t in triggers)}", err=True)
        return EXIT_CRITICAL
    return EXIT_UNKNOWN if info.interrupted or not stats.attempts else EXIT_OK
