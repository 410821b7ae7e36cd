"""``sseprobe report RESULTS.json... --html FILE [--hgrm DIR]``: a report file people open or attach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..report.document import read_document
from ..report.hgrm import export_hgrm
from ..report.html import write_report
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

    The HTML holds the verdict table, the percentile distribution of TTFE and completion time of
    every cohort (HdrHistogram's log-percentile plot), TTFE and outcomes over time when the run
    recorded intervals, the outcome breakdown and the run configuration (no secrets), as inline
    SVG: no script, no network. Exit 0, or 3 when a file cannot be read or written.
    """
    if not html_path and not hgrm_dir:
        raise UsageProblem("nothing to write: give --html FILE and/or --hgrm DIR")
    docs = [(f, read_document(f)) for f in files]
    try:
        if html_path:
            click.echo(f"report: {write_report(docs, html_path, title)}")
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


def attach_html(doc: dict[str, Any], source: str, path: str | None, quiet: bool) -> None:
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
