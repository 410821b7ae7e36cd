"""``sseprobe calibrate``: how much one worker process of this machine can generate and still time truly.

Starts the built-in target in its own process, searches, prints the figures (``--json``: the document),
and stores them where ``run`` and ``compare`` look before starting (unless ``--no-store``).
"""

from __future__ import annotations

from pathlib import Path

import click

from .._errors import UsageProblem
from ..load.calibrate import (
    DEFAULT_BUDGET_S,
    IN_FLIGHT_CAP,
    CalibrationFailed,
    calibrate,
    calibration_path,
    store_calibration,
)
from ..load.files import open_file_room
from ..plan.resolve import check_outputs
from ..report.document import dumps
from ..verdict.levels import EXIT_OK, EXIT_UNKNOWN

__all__ = ["calibrate_cmd"]

_BUDGET_RANGE = (5.0, 600.0)


@click.command("calibrate")
@click.option(
    "--budget",
    type=float,
    default=DEFAULT_BUDGET_S,
    show_default=True,
    help="Hard cap on the search, in seconds (the target's start and stop come on top).",
)
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to store the calibration (default: $SSEPROBE_CALIBRATION, else "
    "$XDG_CACHE_HOME/sseprobe/calibration.json, ~/.cache by default).",
)
@click.option("--no-store", is_flag=True, help="Measure and print only; keep any stored calibration as it is.")
@click.option("--json", "as_json", is_flag=True, help="Print the calibration document on stdout and nothing else.")
@click.option("--quiet", "-q", is_flag=True, help="No line per step on stderr.")
def calibrate_cmd(budget: float, path: str | None, no_store: bool, as_json: bool, quiet: bool) -> int:
    """Find how much load one worker process of this machine generates and still times truly.

    Against the built-in target in its own process, a geometric ramp then a bisection of short load
    steps finds, per worker: the highest session rate and the most streams in flight at which the
    generator is not saturated and time to first answer (TTFE) stays within 2 ms of the truth the
    target stamps (at p99). Also measured: the timer floor (how late an idle loop's sleep wakes) and
    the loop-lag floor. Prints a recommended --workers and, unless --no-store, stores the result so
    that run and compare warn before starting when asked for more per worker than this machine
    sustained. About a minute on 2 cores; 3 on Ctrl-C or failure, nothing stored.
    """
    if not _BUDGET_RANGE[0] <= budget <= _BUDGET_RANGE[1]:
        raise UsageProblem(f"--budget must be between {_BUDGET_RANGE[0]:g} and {_BUDGET_RANGE[1]:g} seconds")
    if path is not None and not path.strip():
        raise UsageProblem("--file: an empty path (leave --file out for the default place)")
    try:
        store = None if no_store else (Path(path) if path else calibration_path())
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    if store is not None:
        check_outputs(("--file", store))  # refused now, not after a minute of measuring
    say = None if quiet else (lambda line: click.echo(f"sseprobe calibrate: {line}", err=True))
    try:
        # the target (forked) and this process each hold every stream: each within the raised open-file limit
        result = calibrate(budget, say, in_flight_cap=min(IN_FLIGHT_CAP, open_file_room()))
    except CalibrationFailed as exc:
        click.echo(f"sseprobe: error: calibration failed: {exc}", err=True)
        return EXIT_UNKNOWN
    if as_json:
        click.echo(dumps(result.doc).decode(), nl=False)
    else:
        click.echo(result.text())
    if store is None:
        return EXIT_OK
    try:
        where = store_calibration(result.doc, store)
    except OSError as exc:
        click.echo(f"sseprobe: error: cannot store the calibration in {store}: {exc.strerror or exc}", err=True)
        return EXIT_UNKNOWN
    if not as_json:
        click.echo(f"stored: {where} (run and compare warn when asked for more per worker)")
    return EXIT_OK
