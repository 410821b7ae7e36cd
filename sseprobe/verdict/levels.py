"""Exit codes and levels, in one place: the monitoring-plugin convention every command and output follows."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Exit", "EXIT_OK", "EXIT_WARNING", "EXIT_CRITICAL", "EXIT_UNKNOWN", "LEVEL_EXIT", "exit_codes"]


class Exit(IntEnum):
    """0 GREEN/OK, 1 YELLOW/WARNING, 2 RED/CRITICAL, 3 UNKNOWN (bad input, could not run, could not tell)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = (int(code) for code in Exit)

# Every level any output names, and its exit code. INCONCLUSIVE (a verdict) and UNKNOWN (a pass) both mean
# "could not tell".
LEVEL_EXIT: dict[str, int] = {
    "GREEN": EXIT_OK,
    "YELLOW": EXIT_WARNING,
    "RED": EXIT_CRITICAL,
    "INCONCLUSIVE": EXIT_UNKNOWN,
    "UNKNOWN": EXIT_UNKNOWN,
}


def exit_codes(*levels: str) -> dict[str, int]:
    """The exit codes of one vocabulary's levels (a verdict's, a monitor pass's)."""
    return {level: LEVEL_EXIT[level] for level in levels}
