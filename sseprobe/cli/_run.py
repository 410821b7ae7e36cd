"""``sseprobe run``: one cohort, one flow, one results document. Exit 2 when a rollback trigger fires."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from .._api import RunPlan, make_plan, run, serving
from .._config import FLOWS
from ..load.engine import RunInfo
from ..plan.options import OPTIONS
from ..report.document import default_out_path, dumps, write_with_fallback
from ..verdict.compare import GENERATOR_ADVICE
from ..verdict.schema import GeneratorDoc
from ._common import EXIT_UNKNOWN, answer_options, flow_options, load_options, planned
from ._report import attach_html

__all__ = ["run_cmd", "emit", "said_interrupted", "say_notes", "held_signals"]


def emit(doc: dict[str, Any], out: str | None, kind: str, as_json: bool, text: Callable[[], str]) -> tuple[Path, bool]:
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
            click.echo(text())  # rendered after the document is safe: a fault here loses nothing
            click.echo(f"\nresults: {path}")
    return path, failed is None


def say_notes(plan: RunPlan) -> None:
    """The plan's warnings and notes, one line each on stderr, before any load."""
    for note in plan.notes:
        click.echo(f"sseprobe: {note}", err=True)


def said_interrupted(info: RunInfo, generator: GeneratorDoc | None = None) -> None:
    """An interrupted run is said on stderr in one line (its document holds what was measured), and
    so is a load that ran below its target (a share lost on a cluster)."""
    if info.interrupted:
        click.echo(f"sseprobe: run stopped early: {info.stop_reason or 'interrupted'}", err=True)
    if generator and generator.get("below_target"):
        click.echo(f"sseprobe: {generator['below_target']} (exit 3 unless RED)", err=True)


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
@click.option("--method", default=OPTIONS.method, show_default=True, help="Generic flow: HTTP method.")
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
    trigger fires, 3 when nothing could be measured, the run was interrupted, or the only
    triggers are generator-bound (latency a saturated generator's own lag could explain), else 0.
    """
    options, given = planned(ctx, params)
    plan = make_plan(options.scenario, options, given, "run")
    say_notes(plan)
    with serving(plan) as plan:  # lingers after the results are out, so the last values are scraped
        result = run(plan)
        path, saved = emit(result.document, plan.out, "run", plan.as_json, result.text)
        attach_html(result.document, str(path), plan.html, plan.as_json)
        if result.problem:
            click.echo(f"sseprobe: error: {result.problem}", err=True)
            return EXIT_UNKNOWN
        if not saved:
            return EXIT_UNKNOWN
        said_interrupted(result.measured.info, result.measured.generator)
        real = [t.reason for t in result.triggers if not t.generator_bound]
        bound = [t.reason for t in result.triggers if t.generator_bound]
        if real:
            click.echo(f"sseprobe: RED: {'; '.join(real)}", err=True)
        elif bound:
            click.echo(f"sseprobe: UNKNOWN: {'; '.join(bound)}; {GENERATOR_ADVICE}", err=True)
        return result.exit_code
