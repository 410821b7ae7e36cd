"""``sseprobe compare``: canonical vs legacy, live or from saved results, GREEN / YELLOW / RED.

Live: both cohorts run in the same time window, interleaved by weight, so noise on the service
or on this machine hits both alike. Offline: any cohort of one saved document against any
cohort of another (a stored baseline), or legacy against canonical within one document.
Exit code: the verdict's (0 GREEN, 1 YELLOW, 2 RED, 3 INCONCLUSIVE / could not run).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import click

from ._cli_common import (
    EXIT_UNKNOWN,
    UsageProblem,
    build_limits,
    build_load,
    build_timeouts,
    check_outputs,
    flow_from,
    flow_options,
    load_config,
    load_options,
    prepare_run,
    read_policy,
    read_scenario,
    resolve,
)
from ._cmd_report import attach_html
from ._cmd_run import emit, flow_config, results_extra, said_interrupted, unreachable
from ._compare import Verdict, compare
from ._engine import CohortSpec
from ._pacer import Phase
from ._policy import Policy
from ._results import ResultsError, build_document, cohort_from_document, read_documents
from ._runner import measure
from ._scenario import Scenario
from ._summary import render_run
from ._verdict_text import render_verdict

__all__ = ["compare_cmd", "parse_split", "verdict_section"]


def parse_split(text: str | None) -> tuple[float, float]:
    """``5/95`` -> canonical 5, legacy 95 (shares of the sessions)."""
    if text is None:
        return 1.0, 1.0
    try:
        a, b = (float(x) for x in text.split("/"))
    except ValueError:
        raise UsageProblem(f"--split expects CANONICAL/LEGACY shares such as 5/95, got {text!r}") from None
    if a <= 0 or b <= 0:
        raise UsageProblem("--split shares must both be > 0")
    return a, b


def verdict_section(verdict: Verdict) -> dict[str, Any]:
    return {**verdict.to_dict(), "reasons": verdict.reasons}


def _print_verdict(verdict: Verdict, base: str, cand: str, as_json: bool) -> str:
    return render_verdict(verdict, base, cand, color=sys.stdout.isatty() and not as_json)


def _offline(
    files: tuple[str, ...],
    base_cohort: str | None,
    cand_cohort: str | None,
    policy: Policy,
    out: str | None,
    as_json: bool,
    html: str | None = None,
) -> int:
    try:
        docs = read_documents(files)
        if len(files) == 1:  # one document: legacy is the baseline, canonical the candidate
            b_name, base = cohort_from_document(docs[0], base_cohort or "legacy", files[0])
            c_name, cand = cohort_from_document(docs[0], cand_cohort or "canonical", files[0])
        else:
            b_name, base = cohort_from_document(docs[0], base_cohort, files[0])
            c_name, cand = cohort_from_document(docs[1], cand_cohort, files[1])
    except ResultsError as exc:
        raise UsageProblem(str(exc)) from None
    verdict = compare(base, cand, policy)
    text = _print_verdict(verdict, f"baseline ({b_name})", f"candidate ({c_name})", as_json)
    check_outputs(("--out", out), ("--html", html))
    if as_json or out or html:
        doc = build_document(
            started=docs[-1].get("started", ""),
            duration_s=0.0,
            config={
                "command": "compare",
                "baseline": {"file": files[0], "cohort": b_name},
                "candidate": {"file": files[-1], "cohort": c_name},
            },
            cohorts={f"baseline:{b_name}": base, f"candidate:{c_name}": cand},
            verdict=verdict_section(verdict),
        )
        saved = True
        if as_json or out:
            saved = emit(doc, out, "compare", as_json, text)[1]
        else:
            click.echo(text)
        attach_html(doc, "compare", html, as_json)
        if not saved:
            return EXIT_UNKNOWN
    else:
        click.echo(text)
    return verdict.exit_code


def _live_cohorts(
    ctx: click.Context, params: dict[str, Any], scenario: Scenario | None, split: tuple[float, float]
) -> list[CohortSpec]:
    sc = {c.name: c for c in scenario.cohorts} if scenario else {}
    specs = []
    for name, url_opt, share in (("canonical", "canonical_url", split[0]), ("legacy", "legacy_url", split[1])):
        c = sc.get(name)
        values = c.values if c else {}
        weight = share if params["split"] is not None or c is None else c.weight
        flow = values.get("flow", name)
        opts = flow_from(ctx, params, values, flow, params[url_opt], f"--{name}")
        specs.append(CohortSpec(name, opts, weight))
    return specs


@click.command("compare")
@click.argument("files", nargs=-1, metavar="[BASELINE.json [CANDIDATE.json]]")
@click.option("--canonical", "canonical_url", default=None, help="Live: base URL of the canonical cohort.")
@click.option("--legacy", "legacy_url", default=None, help="Live: base URL of the legacy cohort.")
@click.option(
    "--split",
    default=None,
    metavar="C/L",
    help="Live: share of sessions for canonical/legacy, e.g. 5/95 at the 5 % rollout step (default: equal).",
)
@click.option("--baseline-cohort", default=None, help="Offline: cohort of the baseline document.")
@click.option("--candidate-cohort", default=None, help="Offline: cohort of the candidate document.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the HTML report of this comparison (as sseprobe report --html).",
)
@flow_options
@load_options
@click.pass_context
def compare_cmd(ctx: click.Context, /, files: tuple[str, ...], **params: Any) -> int:
    """Is canonical as good as legacy? GREEN, YELLOW (5-10 % worse), RED (worse, or a rollback trigger).

    Live: ``compare --canonical URL --legacy URL``: runs both cohorts at once, interleaved.
    Load options count per cohort: --sessions 2000 runs 2,000 sessions per cohort on average
    (4,000 in all), shared by --split. Offline: ``compare BASELINE.json CANDIDATE.json`` (first
    cohort of each unless named) or ``compare RESULTS.json`` (legacy vs canonical within it).
    Each metric needs statistical evidence before it is worse than GREEN; a cohort too small
    to tell is INCONCLUSIVE with the sessions needed. Exit 0 GREEN, 1 YELLOW, 2 RED, 3 INCONCLUSIVE.
    """
    scenario = read_scenario(params["scenario"])
    policy = read_policy(params["policy_file"] or (scenario.policy if scenario else None))
    if files:
        if len(files) > 2:
            raise UsageProblem("compare takes at most two results files (baseline, candidate)")
        if params["canonical_url"] or params["legacy_url"]:
            raise UsageProblem("give either results files or --canonical/--legacy URLs, not both")
        return _offline(
            files,
            params["baseline_cohort"],
            params["candidate_cohort"],
            policy,
            params["out"],
            params["as_json"],
            params["html_path"],
        )
    o = resolve(ctx, params, scenario)
    split = parse_split(params["split"])
    cohorts = _live_cohorts(ctx, params, scenario, split)
    n = len(cohorts)  # load options are per cohort
    for key in ("sessions", "concurrency", "rate"):
        if o.get(key) is not None:
            o[key] = o[key] * n
    load = build_load(o, tuple(_scaled(p, n) for p in scenario.phases) if scenario else ())
    timeouts, limits = build_timeouts(o), build_limits(o)
    run_opts, load, out = prepare_run(o, policy, load, limits, "compare", params["html_path"])
    measured = measure(cohorts, load, timeouts, limits, run_opts)
    base, cand = measured.cohorts["legacy"], measured.cohorts["canonical"]
    verdict = compare(base, cand, policy)
    info = measured.info
    config = {
        "command": "compare",
        "split": list(split),
        "cohorts": {c.name: flow_config(c.options) for c in cohorts},
        "load": load_config(o, load, timeouts, run_opts.workers),
    }
    doc = build_document(
        started=info.started,
        duration_s=info.duration_s,
        config=config,
        cohorts=measured.cohorts,
        verdict=verdict_section(verdict),
        interrupted=info.interrupted,
        extra=results_extra(measured),
    )
    text = (
        render_run(measured.cohorts, verdict.triggers, info.duration_s, info.interrupted, measured.generator)
        + "\n\n"
        + _print_verdict(verdict, "legacy", "canonical", o["as_json"])
    )
    path, saved = emit(doc, out, "compare", o["as_json"], text)
    attach_html(doc, str(path), params["html_path"], o["as_json"])
    problem = unreachable(measured.cohorts)
    if problem:  # a typo in a URL must not read as a rollback: nothing was measured
        click.echo(f"sseprobe: error: {problem}", err=True)
        return EXIT_UNKNOWN
    if not saved:
        return EXIT_UNKNOWN
    said_interrupted(info)
    if info.interrupted and verdict.overall != "RED":
        return EXIT_UNKNOWN
    return verdict.exit_code


def _scaled(phase: Phase, n: int) -> Phase:
    return replace(phase, start_rate=phase.start_rate * n, end_rate=phase.end_rate * n)
