"""The command line: ``sseprobe target | run | compare | check | ...``.

Exit codes follow the monitoring-plugin convention: 0 GREEN/OK, 1 YELLOW/WARNING,
2 RED/CRITICAL, 3 UNKNOWN (bad usage, could not run). Every error is one line on stderr.
"""

from __future__ import annotations

import signal

# A Ctrl-C or SIGTERM while the modules below load (half a second on a busy machine) is remembered and
# answered by main() in one line, not a KeyboardInterrupt traceback from inside an import.
_PENDING: list[int] = []


def _remember(signum: int, _frame: object) -> None:
    _PENDING.append(signum)


try:
    _BEFORE = {sig: signal.signal(sig, _remember) for sig in (signal.SIGINT, signal.SIGTERM)}
except ValueError:  # imported from a thread other than the main one: signals are not ours to catch
    _BEFORE = {}

import contextlib  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import click  # noqa: E402

from .._api import MeasuredButFailed  # noqa: E402
from ..report.document import default_out_path, dumps, write_with_fallback  # noqa: E402
from ._calibrate import calibrate_cmd  # noqa: E402
from ._check import check_cmd  # noqa: E402
from ._common import EXIT_OK, EXIT_UNKNOWN, UsageProblem  # noqa: E402
from ._compare import compare_cmd  # noqa: E402
from ._demo import demo_cmd  # noqa: E402
from ._monitor import baseline_group, history_cmd, monitor_cmd  # noqa: E402
from ._report import report_cmd  # noqa: E402
from ._run import run_cmd  # noqa: E402
from ._target import target_cmd  # noqa: E402

for _sig, _handler in _BEFORE.items():
    signal.signal(_sig, _handler)

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sseprobe")
def cli() -> None:
    """sseprobe: SSE streaming health prober and load generator.

    Opens many concurrent SSE sessions against the canonical (POST /run_sse) and legacy
    (POST then GET .../run) streaming endpoints, measures connect success, time to first
    answer (TTFE: the first event with answer content) and completion, and judges canonical
    against legacy GREEN / YELLOW / RED.

    Exit codes: 0 GREEN/OK, 1 YELLOW, 2 RED/rollback trigger, 3 UNKNOWN (bad input, could not run).
    """


cli.add_command(target_cmd)
cli.add_command(run_cmd)
cli.add_command(check_cmd)
cli.add_command(compare_cmd)
cli.add_command(demo_cmd)
cli.add_command(monitor_cmd)
cli.add_command(baseline_group)
cli.add_command(history_cmd)
cli.add_command(report_cmd)
cli.add_command(calibrate_cmd)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every error is one line on stderr; bad usage exits 3, never 2.

    A failure of sseprobe itself is exit 3 too (never 1, which reads as YELLOW), and never a traceback."""
    if _PENDING:  # interrupted while starting: nothing was measured, nothing written
        _PENDING.clear()
        click.echo("sseprobe: interrupted", err=True)
        return EXIT_UNKNOWN
    with _sigterm_interrupts():
        try:
            rv = cli.main(argv, prog_name="sseprobe", standalone_mode=False)
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.exceptions.Abort:
            click.echo("sseprobe: interrupted", err=True)
            return EXIT_UNKNOWN
        except (click.ClickException, UsageProblem) as exc:
            click.echo(f"sseprobe: error: {_one_line(exc.format_message())}", err=True)
            return EXIT_UNKNOWN
        except KeyboardInterrupt:
            click.echo("sseprobe: interrupted", err=True)
            return EXIT_UNKNOWN
        except MeasuredButFailed as exc:  # measured, then a fault of ours: the measurement is kept
            click.echo(
                f"sseprobe: error: sseprobe failed after measuring: {_one_line(str(exc))}; {_keep(exc)}", err=True
            )
            return EXIT_UNKNOWN
        except Exception as exc:  # noqa: BLE001 - the contract: one line and exit 3, whatever broke
            click.echo(f"sseprobe: error: sseprobe failed: {_one_line(f'{type(exc).__name__}: {exc}')}", err=True)
            return EXIT_UNKNOWN
    return rv if isinstance(rv, int) else EXIT_OK


def _keep(exc: MeasuredButFailed) -> str:
    """Write what was measured (where asked, else the temporary folder) and say where."""
    try:
        path, _ = write_with_fallback(exc.out or default_out_path("run"), dumps(exc.document))
    except OSError as err:
        return f"the results could not be written anywhere: {err.strerror or err}"
    return f"the measured results (no verdict) are saved in {path}"


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM outside a run (start-up, writing) ends the command as Ctrl-C does: exit 3, one line,
    no half-written file. The run installs its own handlers while it measures."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
