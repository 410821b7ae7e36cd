"""The one error family: every error a user can see is a :class:`SseprobeError`, and carries its exit code.

The library raises these and never prints or exits; the command line maps any of them to one line on
stderr and the error's exit code, at one place (``sseprobe.cli.main``). The family, by where it is raised:

- :class:`UsageProblem`: bad input (flags, overrides, values out of bounds);
- ``plan.scenario.ScenarioError``, ``verdict.policy.PolicyError``, ``ops.monitor.MonitorError``:
  a scenario, policy or monitor file that is unreadable or wrong;
- ``report.document.ResultsError``, ``report.history.HistoryError``: a results document or the history
  database that cannot be read or written;
- ``load.runner.RunFailure``, ``load.cluster.ClusterError``, ``load.calibrate.CalibrationFailed``:
  the measurement could not happen (no worker ran, the Ray cluster is unusable, nothing calibrated);
- :class:`MeasuredButFailed`: judging or documenting what was measured failed (a fault of ours); it
  carries the measured document, so the caller writes it before saying so.

Each keeps the built-in base it had (``ValueError`` for bad input and files, ``RuntimeError`` for a run
that could not happen), so ``except ValueError`` in a caller's code still catches them.
"""

from __future__ import annotations

from .verdict.levels import EXIT_UNKNOWN
from .verdict.schema import BareDocument, ResultsDocument

__all__ = ["SseprobeError", "UsageProblem", "MeasuredButFailed"]


class SseprobeError(Exception):
    """An error a user sees: one line (the message), and the exit code the command line ends with.

    ``exit_code`` is 3 (UNKNOWN: bad input, could not run) for the whole family: 1 and 2 are verdicts
    (YELLOW, RED) and never mean that sseprobe failed."""

    exit_code: int = EXIT_UNKNOWN


class UsageProblem(SseprobeError, ValueError):
    """Bad input (a flag, an override, a value out of bounds): one line, exit 3; the command line prints
    it as ``sseprobe: error: ...``. Importable from ``sseprobe`` and ``sseprobe.plan.resolve`` too."""


class MeasuredButFailed(SseprobeError):
    """Judging or documenting what was measured failed (a fault of ours): ``document`` holds every
    cohort as measured, without a verdict, for the caller to write, and ``out`` where it was asked for.
    Measured results are never lost to a failure that comes after them."""

    def __init__(self, document: ResultsDocument | BareDocument, out: str | None, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.document, self.out = document, out
