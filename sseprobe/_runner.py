"""Drive one load run from the CLI: signals, folding records into stats, the results document.

Sits between the CLI (options, printing) and the engine (sessions): it owns the asyncio loop
and turns Ctrl-C / SIGTERM into a graceful stop (second signal: abort), so an interrupted run
still returns everything it measured.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass
from typing import Sequence

from ._config import Limits, Timeouts
from ._engine import CohortSpec, Load, RunControl, RunInfo, run_load
from ._redact import redact_url
from ._stats import CohortStats

__all__ = ["Measured", "measure"]


@dataclass
class Measured:
    info: RunInfo
    cohorts: dict[str, CohortStats]


def _install_signals(control: RunControl) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signame: str) -> None:
        if control.stop_reason is None:
            control.stop(f"interrupted by {signame}")
            print(f"sseprobe: {signame}: stopping, in-flight sessions get a short grace "
                  "(again to abort)", file=sys.stderr)
        else:
            control.abort(f"aborted by {signame}")

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig.name)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass


async def _measure(cohorts: Sequence[CohortSpec], load: Load, timeouts: Timeouts,
                   limits: Limits) -> Measured:
    control = RunControl()
    stats = {c.name: CohortStats(flow=c.options.flow, url=redact_url(c.options.url)) for c in cohorts}

    def sink(rec: object) -> None:
        stats[rec.cohort].add(rec)  # type: ignore[attr-defined]

    _install_signals(control)
    info = await run_load(cohorts, load, sink, timeouts, limits, control)
    return Measured(info, stats)


def measure(cohorts: Sequence[CohortSpec], load: Load, timeouts: Timeouts = Timeouts(),
            limits: Limits = Limits()) -> Measured:
    """Run the load to its end (or until interrupted) and return the folded stats."""
    return asyncio.run(_measure(cohorts, load, timeouts, limits))
