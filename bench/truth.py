"""Benchmark 4: is the TTFE sseprobe reports true, with 100, 1,000 and 5,000 sessions open?

Method. The target injects a fixed delay D (``--canonical-ttfe-spread 0``) from the arrival of
``POST /run_sse`` to its first event, and stamps that event's ``timestamp`` with ``time.time()`` right
before the write: the truth of when the first event left. sseprobe runs an open-model load (a load run
as ``sseprobe run`` does it, through ``_runner.measure``) whose sessions last long enough that
rate x length = N sessions are open at once; only sessions scheduled after that ramp are judged.

sseprobe's first-event observer (``sseprobe.observe_first_events``, called once per session) reads,
at each session's first progress event, the event's ``timestamp`` ts, the TTFE sseprobe
recorded, its origin ``base`` (the message send it measures from) and the run clock's offset to
the wall clock (both read at the same instant). For each session:

  R = (base + TTFE) - ts        receipt error: how late sseprobe stamped the event after it was sent
                                (kernel delivery + the generator's own loop delay). This is
                                reported TTFE - true TTFE, with true TTFE = ts - base.
  S = ts - D - base             origin check: request path (sseprobe's send to the target's handler)
                                plus the target's own lateness; >= 0. Bounds any send-side error.
  TTFE - D = R + S              the error against the injected delay alone.

Both processes read the same system clock, so no clock sync enters. The generator flag (loop lag
p99 while sessions are in flight > 10 ms) is sseprobe's own, from the same run.

Worker: python -m bench.truth worker URL N D_MS RATE WARM_S WINDOW_S
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson

from ._util import emit, pct

_store: list[tuple[float, float, float, float]] = []  # (scheduled, ttfe ms, R ms, S ms)


def install_hook(delay_s: float) -> None:
    """Note the truth at each session's first progress event, through sseprobe's public observer."""
    from sseprobe import FirstEvent, observe_first_events

    def note(seen: FirstEvent) -> None:
        ts = _first_stamp(seen.events)
        if ts is not None and seen.ttfe_ms is not None:
            r_ms = (seen.base + seen.ttfe_ms / 1000.0 + seen.wall_offset - ts) * 1000.0
            s_ms = (ts - delay_s - (seen.base + seen.wall_offset)) * 1000.0
            _store.append((seen.scheduled, seen.ttfe_ms, r_ms, s_ms))

    observe_first_events(note)


def _first_stamp(events: list[Any]) -> float | None:
    for ev in events:
        if ev.data.startswith("{"):
            try:
                ts = orjson.loads(ev.data).get("timestamp")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if isinstance(ts, float):
                return ts
    return None


def open_run(
    url: str, n: int, delay_ms: float, rate: float, warm: float, window: float
) -> tuple[Any, float, list[tuple[float, float, float, float]]]:
    """One open-model run with the truth noted per session: (the measurement, its CPU seconds, the
    sessions scheduled after the warm-up as (scheduled, ttfe ms, R ms, S ms)). Benchmarks 4 and 9."""
    from sseprobe import CohortSpec, FlowOptions, Limits, Load, Phase, RunOptions, Schedule, Timeouts, measure

    install_hook(delay_ms / 1000.0)
    total = warm + window
    # the schedule runs past the duration, so the stop at ``total`` cancels the sessions in flight
    load = Load(
        schedule=Schedule((Phase(total + 600, rate, rate),)), duration=total, grace=0.0, max_in_flight=2 * n + 100
    )
    c0 = time.process_time()
    m = measure(
        [CohortSpec("canonical", FlowOptions(flow="canonical", url=url))],
        load,
        Timeouts(connect=10, idle=120, session=300),
        Limits(),
        RunOptions(workers=1),
    )
    cpu = time.process_time() - c0
    return m, cpu, [x for x in _store if x[0] >= warm]


def worker(url: str, n: int, delay_ms: float, rate: float, warm: float, window: float) -> dict[str, Any]:
    m, cpu, judged = open_run(url, n, delay_ms, rate, warm, window)
    r = [x[2] for x in judged]
    s = [x[3] for x in judged]
    err_d = [x[1] - delay_ms for x in judged]
    ttfe = m.cohorts["canonical"].to_dict()["ttfe_ms"]
    gen = m.generator
    return {
        "n": n,
        "rate": rate,
        "judged": len(judged),
        "sessions": m.cohorts["canonical"].sessions,
        "cpu_s": cpu,
        "duration_s": m.info.duration_s,
        "R_p50": pct(r, 50),
        "R_p99": pct(r, 99),
        "R_max": max(r, default=float("nan")),
        "S_p50": pct(s, 50),
        "S_p99": pct(s, 99),
        "vsD_p50": pct(err_d, 50),
        "vsD_p99": pct(err_d, 99),
        "reported_ttfe_p50": ttfe["p50"],
        "reported_ttfe_p99": ttfe["p99"],
        "loop_lag_p99": gen["loop_lag_ms"]["p99"],
        "start_lag_p99": gen["start_lag_ms"]["p99"],
        "saturated": gen["saturated"],
        "outcomes": dict(m.cohorts["canonical"].outcomes),
    }


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        a = sys.argv[2:]
        emit(worker(a[0], int(a[1]), float(a[2]), float(a[3]), float(a[4]), float(a[5])))
