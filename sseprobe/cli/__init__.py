"""The command line: ``sseprobe target | run | compare | check | ...``.

Exit codes follow the monitoring-plugin convention: 0 GREEN/OK, 1 YELLOW/WARNING,
2 RED/CRITICAL, 3 UNKNOWN (bad usage, could not run). Every error is one line on stderr.
"""

from __future__ import annotations

import signal
import sys

# A Ctrl-C or SIGTERM while a module loads is remembered and answered by main() in one line, never
# raised inside the import: raised there it can end the process by SIGINT (exit -2, not 3) even when
# main() catches it (seen with signals landing while a command's modules load), or be a traceback.
_PENDING: list[int] = []
_STOPS = (signal.SIGINT, signal.SIGTERM)


def _remember(signum: int, _frame: object) -> None:
    _PENDING.append(signum)


try:
    _BEFORE = {sig: signal.signal(sig, _remember) for sig in _STOPS}
except ValueError:  # imported from a thread other than the main one: signals are not ours to catch
    _BEFORE = {}
# Started as `python -m sseprobe.cli` (sys.argv[0] is "-m" while this package loads): the handlers stay
# until main() takes them over, so a signal between this import and main() is remembered too. Imported
# as a library, the process's own handlers are back when this import ends.
_HELD = dict(_BEFORE) if sys.argv[:1] == ["-m"] else {}

import contextlib  # noqa: E402
import importlib  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import click  # noqa: E402

from .._errors import MeasuredButFailed, SseprobeError  # noqa: E402
from ..verdict.levels import EXIT_OK, EXIT_UNKNOWN  # noqa: E402

if not _HELD:
    for _sig, _handler in _BEFORE.items():
        signal.signal(_sig, _handler)

__all__ = ["main", "cli", "COMMANDS"]

# name -> (module, object, one-line summary). Each command's module is imported only when that command
# runs or shows its own help, so `--version` and `--help` load none of them (no numpy, no aiohttp) and
# `run` never loads the built-in target. The summary is the first paragraph of the command's docstring
# (a test keeps the two equal).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "baseline": (
        "._monitor",
        "baseline_group",
        "The monitor's stored baseline: a results document kept with its histograms.",
    ),
    "calibrate": (
        "._calibrate",
        "calibrate_cmd",
        "Find how much load one worker process of this machine generates and still times truly.",
    ),
    "check": (
        "._check",
        "check_cmd",
        "Pre-deploy validation of each URL: /health answers 'healthy' with every dependency true, the canonical "
        "flag as far as it shows from outside, and one end-to-end session per flow.",
    ),
    "compare": (
        "._compare",
        "compare_cmd",
        "Is canonical as good as legacy? GREEN, YELLOW (5-10 % worse), RED (worse, or a rollback trigger).",
    ),
    "demo": ("._demo", "demo_cmd", "Compare canonical with legacy on the built-in target, no external service needed."),
    "history": (
        "._monitor",
        "history_cmd",
        "Recent monitor passes (time, verdict, key metrics per cohort) and the trend of each metric.",
    ),
    "monitor": (
        "._monitor",
        "monitor_cmd",
        "One synthetic-monitor pass for cron: check, probe both cohorts, judge, record.",
    ),
    "report": (
        "._report",
        "report_cmd",
        "Render saved results documents: an HTML report and/or .hgrm histogram files.",
    ),
    "run": ("._run", "run_cmd", "Measure one flow against one URL."),
    "target": ("._target", "target_cmd", "Run the built-in reference service (PROTOCOLS.md) until Ctrl-C."),
}


def _plain_help(command: click.Command) -> None:
    """Docstrings mark code ``so`` (for the API docs); a terminal shows 'so': every command and option,
    whoever writes them."""
    command.help = command.help and _RST_CODE.sub(r"'\1'", command.help)
    for param in command.params:
        if isinstance(param, click.Option) and param.help:
            param.help = _RST_CODE.sub(r"'\1'", param.help)
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)


_RST_CODE = re.compile(r"``([^`]+)``")


class _Commands(click.Group):
    """The subcommands, each imported when first asked for (see COMMANDS)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name, _summary = COMMANDS[cmd_name]
        with _imports_uninterrupted():
            cmd = getattr(importlib.import_module(module, __name__), name)
        assert isinstance(cmd, click.Command)
        _plain_help(cmd)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lists them, from the summaries: listing the commands imports none of them."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit)) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sseprobe")
def cli() -> None:
    """sseprobe: SSE streaming health prober and load generator.

    Opens many concurrent SSE sessions against the canonical (POST /run_sse) and legacy
    (POST then GET .../run) streaming endpoints, measures connect success, time to first
    answer (TTFE: the first event with answer content) and completion, and judges canonical
    against legacy GREEN / YELLOW / RED.

    Exit codes: 0 GREEN/OK, 1 YELLOW, 2 RED/rollback trigger, 3 UNKNOWN (bad input, could not run).
    """


def main(argv: list[str] | None = None) -> int:
    """Entry point: every error is one line on stderr; bad usage exits 3, never 2.

    A failure of sseprobe itself is exit 3 too (never 1, which reads as YELLOW), and never a traceback."""
    with _sigterm_interrupts():
        if _HELD.get(signal.SIGINT) is not None:  # handed over: Ctrl-C is the process's own again
            signal.signal(signal.SIGINT, _HELD.pop(signal.SIGINT))
        if _PENDING:  # interrupted while starting: nothing was measured, nothing written
            _PENDING.clear()
            click.echo("sseprobe: interrupted", err=True)
            return EXIT_UNKNOWN
        try:
            rv = cli.main(argv, prog_name="sseprobe", standalone_mode=False)
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.exceptions.Abort:
            click.echo("sseprobe: interrupted", err=True)
            return EXIT_UNKNOWN
        except click.ClickException as exc:  # click's own: a bad flag, a missing argument
            click.echo(f"sseprobe: error: {_one_line(exc.format_message())}", err=True)
            return EXIT_UNKNOWN
        except MeasuredButFailed as exc:  # measured, then a fault of ours: the measurement is kept
            click.echo(
                f"sseprobe: error: sseprobe failed after measuring: {_one_line(str(exc))}; {_keep(exc)}", err=True
            )
            return exc.exit_code
        except SseprobeError as exc:  # every error of ours a user can see: one line, its exit code
            click.echo(f"sseprobe: error: {_one_line(str(exc))}", err=True)
            return exc.exit_code
        except KeyboardInterrupt:
            click.echo("sseprobe: interrupted", err=True)
            return EXIT_UNKNOWN
        except Exception as exc:  # noqa: BLE001 - the contract: one line and exit 3, whatever broke
            click.echo(f"sseprobe: error: sseprobe failed: {_one_line(f'{type(exc).__name__}: {exc}')}", err=True)
            return EXIT_UNKNOWN
    return rv if isinstance(rv, int) else EXIT_OK


def _keep(exc: MeasuredButFailed) -> str:
    """Write what was measured (where asked, else the temporary folder) and say where."""
    from ..report.document import default_out_path, dumps, write_with_fallback  # the failure path alone pays

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
    previous = _HELD.pop(signal.SIGTERM, previous)  # held since the import (see _HELD): the process's own
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _imports_uninterrupted() -> Iterator[None]:
    """SIGINT and SIGTERM wait while a command's modules load (a second or more on a busy machine),
    then end the command as Ctrl-C does (see _PENDING for why not inside the import)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, _remember) for sig in _STOPS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    if _PENDING:
        _PENDING.clear()
        raise KeyboardInterrupt
