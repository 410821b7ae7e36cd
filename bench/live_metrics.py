"""What serving live metrics (``--metrics-port``) costs per session, against the same run without it.

The built-in target in its own process (1 ms to the first answer, one answer event: as little server work as
it allows), and an open-model run at ``--rate`` (2,000 sessions/s by default) for ``--duration`` seconds on one
engine process, in a fresh process each time: without metrics, then with them, scraped once a second by this
process (a fast Prometheus: 15 s is the usual interval), ``--repeats`` pairs, interleaved so a busy machine
slows both alike. A run's CPU is its process's CPU time (every thread: the loop, the snapshot once a tick, the
HTTP server's thread) around the measurement only (imports and set-up excluded), over its sessions.

Figures: the median CPU per session of each, the median of the pairwise ratios (with/without) and their
spread (min-max), the scrape's own cost, the load average. The bar: the ratio <= 1.03. A figure taken while
other processes load the machine is not that figure: re-measure on a quiet machine.

Usage: python -m bench.live_metrics [--rate 2000] [--duration 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

from ._util import emit, machine, median, run_worker, spread, target

KNOBS = (
    "--canonical-ttfe-ms",
    "1",
    "--canonical-ttfe-spread",
    "0",
    "--canonical-events",
    "1",
    "--canonical-gap-ms",
    "0",
)


def worker(url: str, rate: float, duration: float, port: int | None) -> None:
    """One run through the library; prints its CPU and sessions as one JSON line."""
    from sseprobe import _api

    overrides: dict[str, object] = {
        "flow": "canonical",
        "url": url,
        "rate": rate,
        "duration": duration,
        "workers": 1,
        "quiet": True,
        "out": os.path.join(tempfile.mkdtemp(prefix="sseprobe-bench-"), "run.json"),
    }
    if port is not None:
        overrides |= {"metrics_port": port, "metrics_linger": 0.0}
    plan = _api.plan_from(None, overrides, "run")
    with _api.serving(plan, progress=None) as served:
        c0 = time.process_time()
        result = _api.run(served, progress=None)
        cpu = time.process_time() - c0
    stats = result.cohorts["canonical"]
    emit(
        {
            "cpu_s": cpu,
            "sessions": stats.sessions,
            "ok": stats.ok,
            "cpu_per_session_us": cpu / max(stats.sessions, 1) * 1e6,
            "saturated": bool(result.measured.generator.get("saturated")),
        }
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape_while(port: int, stop: threading.Event, costs: list[float]) -> None:
    while not stop.wait(1.0):
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                r.read()
            costs.append(time.perf_counter() - t)
        except OSError:
            pass  # not up yet, or already gone


def measure(url: str, rate: float, duration: float, port: int | None, scrapes: list[float]) -> dict[str, float]:
    args = ["worker", url, str(rate), str(duration)] + ([str(port)] if port is not None else [])
    if port is None:
        return run_worker("live_metrics", *args)
    stop = threading.Event()
    t = threading.Thread(target=_scrape_while, args=(port, stop, scrapes), daemon=True)
    t.start()
    try:
        return run_worker("live_metrics", *args)
    finally:
        stop.set()
        t.join(5)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        _, _, url, rate, duration, *port = sys.argv
        worker(url, float(rate), float(duration), int(port[0]) if port else None)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    load_before = os.getloadavg()
    off: list[float] = []
    on: list[float] = []
    ratios: list[float] = []
    scrapes: list[float] = []
    saturated = 0
    with target(*KNOBS, nofile=True) as (url, _pid):
        for i in range(args.repeats):
            a = measure(url, args.rate, args.duration, None, scrapes)
            b = measure(url, args.rate, args.duration, _free_port(), scrapes)
            saturated += int(a["saturated"]) + int(b["saturated"])
            off.append(a["cpu_per_session_us"])
            on.append(b["cpu_per_session_us"])
            ratios.append(b["cpu_per_session_us"] / a["cpu_per_session_us"])
            print(
                f"pair {i + 1}: without {a['cpu_per_session_us']:.1f} µs/session ({a['sessions']:.0f} sessions), "
                f"with {b['cpu_per_session_us']:.1f} µs/session ({b['sessions']:.0f} sessions): {ratios[-1]:.3f}",
                file=sys.stderr,
            )
    m = machine()
    print(f"live metrics at {args.rate:g} sessions/s, {args.duration:g} s runs, {args.repeats} pairs")
    print(f"  CPU per session without: {median(off):.1f} µs (spread {spread(off)})")
    print(f"  CPU per session with:    {median(on):.1f} µs (spread {spread(on)})")
    print(f"  with/without (median of pairs): {median(ratios):.3f} (spread {spread(ratios)}); bar <= 1.03")
    if scrapes:
        print(f"  one scrape (wall, seen by the scraper): median {statistics.median(scrapes) * 1000:.1f} ms")
    print(f"  runs whose generator saturated: {saturated} of {2 * args.repeats}")
    print(f"  load average before {load_before}, after {m['load_avg']} on {m['nproc']} CPUs")
    if max(load_before[0], m["load_avg"][0]) > 0.5 * (m["nproc"] or 1):
        print("  the machine was busy: this is not the figure; re-measure on a quiet machine")


if __name__ == "__main__":
    main()
