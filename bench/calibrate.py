"""Benchmark: does ``sseprobe calibrate`` finish in under a minute, and does its recommendation, used as
given, give an unsaturated run?

Each repeat, on this machine as it is (the load average before each step is printed beside it):

1. ``sseprobe calibrate --json --no-store``: its wall time and figures (W workers, r sessions/s and
   c streams in flight per worker, as recommended);
2. the rate as given: a fresh ``sseprobe target`` (default knobs: first answer after ~50 ms, five events
   20 ms apart) and ``sseprobe run --flow canonical --rate W*r --workers W --duration D``;
3. rate and in-flight as given: a target whose streams last c / r seconds (an event every 0.5 s), so
   that at W*r sessions/s each worker holds c streams, and the same run for c / r + D seconds.

The verdict of each run is the results document's ``generator`` block (``saturated``, ``error_ms``).
Nothing here is judged pass/fail: the figures are printed, with the load average they were taken under.

  python -m bench.calibrate [--repeats N] [--duration D]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import tempfile
import time
from typing import Any

from ._util import PY, ROOT, other_cpu_busy, raise_nofile, target


def _cli(*args: str, timeout: float) -> tuple[int, str, str, float]:
    t0 = time.perf_counter()
    r = subprocess.run(
        [PY, "-m", "sseprobe.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "SSEPROBE_CALIBRATION": "off"},
    )
    return r.returncode, r.stdout, r.stderr, time.perf_counter() - t0


def _run(url: str, rate: float, workers: int, duration: float, max_in_flight: int | None) -> dict[str, Any]:
    busy = other_cpu_busy()
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["--max-in-flight", str(max_in_flight)] if max_in_flight else []
        args = ["run", "--flow", "canonical", "--url", url, "--rate", f"{rate:g}", "--workers", str(workers)]
        code, out, err, _ = _cli(
            *args, "--duration", f"{duration:g}", *extra, "--json", "-q", "--out", f"{tmp}/r.json", timeout=600
        )
    if code not in (0, 2):
        raise RuntimeError(f"run failed ({code}): {err[-2000:]}")
    doc = json.loads(out)
    gen, cohort = doc["generator"], doc["cohorts"]["canonical"]
    return {
        "load_avg_before": round(os.getloadavg()[0], 2),
        "cpu_busy_before": round(busy, 2),
        "rate": rate,
        "workers": workers,
        "sessions": cohort["sessions"],
        "ok": cohort["outcomes"].get("ok", 0),
        "saturated": gen["saturated"],
        "error_ms": gen["error_ms"],
        "loop_lag_p99": gen["loop_lag_ms"]["p99"],
        "start_lag_p99": gen["start_lag_ms"]["p99"],
    }


def once(duration: float) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)
    code, out, err, wall = _cli("calibrate", "--json", "--no-store", "-q", timeout=300)
    if code != 0:
        return {"calibrate_s": round(wall, 1), "load_avg_before": load_before, "failed": err.strip()[-300:]}
    cal = json.loads(out)
    rec = cal["recommended"]
    workers, rate, in_flight = rec["workers"], rec["rate_per_worker"], rec["in_flight_per_worker"]
    with target() as (url, _pid):
        as_rate = _run(url, workers * rate, workers, duration, None)
    hold_s = in_flight / rate
    events = str(math.ceil(hold_s / 0.5))
    knobs = ("--canonical-ttfe-ms", "20", "--canonical-events", events, "--canonical-gap-ms", "500")
    with target(*knobs, nofile=True) as (url, _pid):
        as_both = _run(url, workers * rate, workers, hold_s + duration, workers * in_flight + 100)
    return {
        "calibrate_s": round(wall, 1),
        "load_avg_before": load_before,
        "recommended": rec,
        "limits": cal["limits"],
        "floors_p99_ms": {k: v["p99"] for k, v in cal["floors"].items()},
        "run_at_rate": as_rate,
        "run_at_rate_and_in_flight": as_both,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each run at the recommendation")
    args = parser.parse_args()
    raise_nofile()
    for i in range(args.repeats):
        print(json.dumps({"repeat": i + 1, **once(args.duration)}), flush=True)


if __name__ == "__main__":
    main()
