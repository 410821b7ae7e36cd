"""``sseprobe compare``: canonical vs legacy, live or from saved results, GREEN / YELLOW / RED.

Live: both cohorts run in the same time window, interleaved by weight, so noise on the service
or on this machine hits both alike. Offline: any cohort of one saved document against any
cohort of another (a stored baseline), or legacy against canonical within one document.
Exit code: the verdict's (0 GREEN, 1 YELLOW, 2 RED, 3 INCONCLUSIVE / could not run).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .._api import compare as compare_live
from .._api import make_plan, serving
from ..report.document import build_document, cohort_from_document, read_documents
from ..report.verdict_text import render_verdict
from ..verdict.compare import Verdict, generator_band, judge
from ..verdict.policy import Policy
from ._common import (
    EXIT_UNKNOWN,
    UsageProblem,
    check_outputs,
    flow_options,
    load_options,
    planned,
    read_policy,
    read_scenario,
    sequential_options,
)
from ._report import attach_html
from ._run import emit, said_interrupted, say_notes
from ._sources import Destination, Source, compare_source, refuse_bucketed, source_options

__all__ = ["compare_cmd"]


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
    docs = read_documents(files)
    refuse_bucketed(docs, files)  # Prometheus documents hold bucket edges: cli/_sources.py
    if len(files) == 1:  # one document: legacy is the baseline, canonical the candidate
        b_name, base = cohort_from_document(docs[0], base_cohort or "legacy", files[0])
        c_name, cand = cohort_from_document(docs[0], cand_cohort or "canonical", files[0])
    else:
        b_name, base = cohort_from_document(docs[0], base_cohort, files[0])
        c_name, cand = cohort_from_document(docs[1], cand_cohort, files[1])
    band = max(generator_band(doc.get("generator")) for doc in docs)  # either side's late clock blurs the change
    verdict = judge(base, cand, policy, generator_error_ms=band)
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
            verdict=verdict.section(),
        )
        saved = True
        if as_json or out:
            saved = emit(doc, out, "compare", as_json, lambda: text)[1]
        else:
            click.echo(text)
        attach_html(doc, "compare", html, as_json)
        if not saved:
            return EXIT_UNKNOWN
    else:
        click.echo(text)
    return verdict.exit_code


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
@sequential_options
@source_options
@click.pass_context
def compare_cmd(ctx: click.Context, /, files: tuple[str, ...], **params: Any) -> int:
    """Is canonical as good as legacy? GREEN, YELLOW (5-10 % worse), RED (worse, or a rollback trigger).

    Live: 'compare --canonical URL --legacy URL': runs both cohorts at once, interleaved.
    Load options count per cohort: --sessions 2000 runs 2,000 sessions per cohort on average
    (4,000 in all), shared by --split. Offline: 'compare BASELINE.json CANDIDATE.json' (first
    cohort of each unless named) or 'compare RESULTS.json' (legacy vs canonical within it).
    Each metric needs statistical evidence before it is worse than GREEN; a cohort too small
    to tell is INCONCLUSIVE with the sessions needed. '--until-decided' samples in batches
    and stops at the first decided verdict (the false-alarm level holds however often it looks),
    then says how many sessions it took and when each metric was decided. Real traffic:
    ``compare --from-log FILE`` or ``--from-prometheus URL`` (docs/real-traffic.md).
    Exit 0 GREEN, 1 YELLOW, 2 RED, 3 INCONCLUSIVE.
    """
    scenario = read_scenario(params["scenario"])
    policy = read_policy(params["policy_file"] or (scenario.policy if scenario else None))
    source: Source = params["source"]
    if source.wanted:  # real traffic from a log or Prometheus: cli/_sources.py
        live = any(params[k] for k in ("canonical_url", "legacy_url", "until_decided"))
        to = Destination(params["out"], params["html_path"], params["as_json"])
        return compare_source(
            files, source, policy, live=live, cohorts=(params["baseline_cohort"], params["candidate_cohort"]), to=to
        )
    if files:
        if len(files) > 2:
            raise UsageProblem("compare takes at most two results files (baseline, candidate)")
        if params["canonical_url"] or params["legacy_url"]:
            raise UsageProblem("give either results files or --canonical/--legacy URLs, not both")
        if params["until_decided"]:
            raise UsageProblem("--until-decided measures live: give --canonical/--legacy URLs, not results files")
        if params["metrics_port"] is not None:
            raise UsageProblem("--metrics-port serves a live run: give --canonical/--legacy URLs, not results files")
        return _offline(
            files,
            params["baseline_cohort"],
            params["candidate_cohort"],
            policy,
            params["out"],
            params["as_json"],
            params["html_path"],
        )
    options, given = planned(ctx, params)
    plan = make_plan(scenario, options, given, "compare")
    say_notes(plan)
    with serving(plan) as plan:  # lingers after the results are out, so the last values are scraped
        result = compare_live(plan)
        color = sys.stdout.isatty() and not plan.as_json
        path, saved = emit(result.document, plan.out, "compare", plan.as_json, lambda: result.text(color))
        attach_html(result.document, str(path), plan.html, plan.as_json)
        if result.problem:  # a typo in a URL must not read as a rollback: nothing was measured
            click.echo(f"sseprobe: error: {result.problem}", err=True)
            return EXIT_UNKNOWN
        if not saved:
            return EXIT_UNKNOWN
        said_interrupted(result.measured.info, result.document.get("generator"))
        return result.exit_code
