"""``sseprobe report RESULTS.json... --html FILE [--hgrm DIR]``: a report file people open or attach."""

from __future__ import annotations

from pathlib import Path

import click

from ..report.document import build_document, cohort_from_document, read_document
from ..report.hgrm import export_hgrm
from ..report.html import write_report
from ..verdict.compare import generator_band, judge
from ..verdict.policy import DEFAULT_POLICY
from ..verdict.schema import ResultsDocument
from ._common import EXIT_OK, UsageProblem

__all__ = ["report_cmd"]


@click.command("report")
@click.argument("files", nargs=-1, required=True, metavar="RESULTS.json...")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write one self-contained HTML report here (opens with no network).",
)
@click.option(
    "--hgrm",
    "hgrm_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write each histogram in HdrHistogram's percentile-distribution text (.hgrm, ms) into this folder.",
)
@click.option("--title", default="sseprobe report", show_default=True, help="Title of the HTML report.")
def report_cmd(files: tuple[str, ...], html_path: str | None, hgrm_dir: str | None, title: str) -> int:
    """Render saved results documents: an HTML report and/or .hgrm histogram files.

    Two documents are also judged against each other: the second's first cohort (candidate) against
    the first's (baseline), under the default policy, as 'compare A.json B.json' does.

    The HTML holds the verdict table, the percentile distribution of TTFE and completion time of
    every cohort (HdrHistogram's log-percentile plot), TTFE and outcomes over time when the run
    recorded intervals, the outcome breakdown and the run configuration (no secrets), as inline
    SVG: no script, no network. Exit 0, or 3 when a file cannot be read or written.
    """
    if not html_path and not hgrm_dir:
        raise UsageProblem("nothing to write: give --html FILE and/or --hgrm DIR")
    docs = [(f, read_document(f)) for f in files]
    # base and candidate: judged against each other, as compare A.json B.json does
    judged = [_comparison(docs[0], docs[1])] if len(docs) == 2 else []
    try:
        if html_path:
            click.echo(f"report: {write_report(docs + judged, html_path, title)}")
        if hgrm_dir:
            written = export_hgrm(docs, Path(hgrm_dir))
            click.echo(f"hgrm: {len(written)} files in {hgrm_dir}")
            for p in written:
                click.echo(f"  {p}")
    except OSError as exc:
        raise UsageProblem(f"cannot write: {exc.strerror or exc}: {exc.filename or ''}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageProblem(f"malformed results document: {exc}") from None
    return EXIT_OK


def _comparison(base: tuple[str, ResultsDocument], cand: tuple[str, ResultsDocument]) -> tuple[str, ResultsDocument]:
    """The candidate (second file, its first cohort) judged against the baseline (first file, its first
    cohort) under the default policy: a section of its own after each document's own verdict."""
    b_name, b_stats = cohort_from_document(base[1], None, base[0])
    c_name, c_stats = cohort_from_document(cand[1], None, cand[0])
    band = max(generator_band(d.get("generator")) for _, d in (base, cand))
    verdict = judge(b_stats, c_stats, DEFAULT_POLICY, generator_error_ms=band)
    click.echo(f"comparison: {cand[0]} ({c_name}) against {base[0]} ({b_name}): {verdict.overall}")
    doc = build_document(
        started=str(cand[1].get("started", "")),
        duration_s=0.0,
        config={
            "command": "compare",
            "baseline": {"file": base[0], "cohort": b_name},
            "candidate": {"file": cand[0], "cohort": c_name},
        },
        cohorts={f"baseline:{b_name}": b_stats, f"candidate:{c_name}": c_stats},
        verdict=verdict.section(),
    )
    return f"{Path(cand[0]).name} against {Path(base[0]).name}", doc


def attach_html(doc: ResultsDocument, source: str, path: str | None, quiet: bool) -> None:
    """``--html`` of run/compare: the report of the document just built. A write failure is one line on
    stderr and keeps the command's own exit code (the measurement itself succeeded)."""
    if not path:
        return
    try:
        written = write_report([(source, doc)], path)
    except OSError as exc:
        click.echo(f"sseprobe: warning: cannot write the HTML report {path}: {exc.strerror or exc}", err=True)
        return
    if not quiet:
        click.echo(f"report: {written}")
