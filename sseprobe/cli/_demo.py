"""``sseprobe demo``: the README's main job. Starts the built-in target (canonical a little slower
than legacy) in its own process, runs a live comparison against it, prints the verdict.

The target runs in a separate process so that its work does not share an event loop with the
measurement, just as a real service would not.
"""

from __future__ import annotations

import multiprocessing
import sys
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import click

from .._api import compare, plan_from
from .._errors import UsageProblem
from ..report.document import dumps, write_with_fallback
from ..target import CohortKnobs, TargetConfig, serve
from ..verdict.levels import EXIT_UNKNOWN

__all__ = ["demo_cmd"]


def _serve(config: TargetConfig, ready: Connection) -> None:
    serve(config, port=0, ready=ready.send)


def _start_target(legacy_ms: float, canonical_ms: float) -> tuple[BaseProcess, str]:
    """The built-in target in a forked process (no command line in between); returns it and its URL."""
    config = TargetConfig(
        canonical=CohortKnobs(ttfe_ms=canonical_ms, gap_ms=10.0), legacy=CohortKnobs(ttfe_ms=legacy_ms, gap_ms=10.0)
    )
    ctx = multiprocessing.get_context("fork")  # spawn would re-run this command's __main__
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_serve, args=(config, send), daemon=True)
    proc.start()
    if not receive.poll(_START_S):
        proc.kill()
        raise UsageProblem(f"the built-in target did not start within {_START_S:g} s")
    return proc, str(receive.recv())


_START_S = 30.0


@click.command("demo")
@click.option(
    "--slower",
    type=float,
    default=7.0,
    show_default=True,
    help="How much slower canonical's first answer is than legacy's, in percent.",
)
@click.option("--sessions", "-n", type=int, default=1500, show_default=True, help="Sessions per cohort.")
@click.option("--concurrency", "-c", type=int, default=10, show_default=True, help="Sessions in flight per cohort.")
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Results document path (default: results/compare-<time>.json).",
)
def demo_cmd(slower: float, sessions: int, concurrency: int, out: str | None) -> int:
    """Compare canonical with legacy on the built-in target, no external service needed.

    Canonical's time to first answer is set --slower percent above legacy's (100 ms median,
    lognormal spread 0.3), so the verdict is a real one: 7 % (the middle of the 5-10 % band) shows
    YELLOW, 0 GREEN, 20 RED.
    """
    if not -50 < slower < 1000:
        raise UsageProblem("--slower must be a percentage between -50 and 1000")
    legacy_ms = 100.0
    proc, url = _start_target(legacy_ms, legacy_ms * (1 + slower / 100))
    click.echo(
        f"built-in target on {url}: legacy TTFE median {legacy_ms:g} ms, canonical "
        f"{slower:+g} %; {sessions} sessions per cohort, {concurrency} in flight each",
        err=True,
    )
    given = {"canonical_url": url, "legacy_url": url, "sessions": sessions, "concurrency": concurrency, "workers": 1}
    try:
        plan = plan_from(None, {**given, **({"out": out} if out else {})}, "compare")
        for note in plan.notes:  # e.g. more per worker than this machine's calibration found
            click.echo(f"sseprobe: {note}", err=True)
        result = compare(plan)
    finally:
        proc.terminate()
        proc.join(10)
    path, failed = write_with_fallback(Path(plan.out), dumps(result.document))
    click.echo(result.text(color=sys.stdout.isatty()))
    if failed:
        click.echo(f"sseprobe: error: {failed}; the results are saved in {path}", err=True)
    click.echo(f"\nresults: {path}")
    return EXIT_UNKNOWN if failed else result.exit_code
