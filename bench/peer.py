"""Benchmark 5: the peer. Locust (FastHttpUser SSE user, bench/locustfile.py) and sseprobe against
the same target, the same canonical flow (session create + ``POST /run_sse``, 5 events), the same
closed-model concurrency, one process each, taking turns.

Figures per tool: completed sessions/s, CPU seconds of the tool's process per session (from the test's
start to its stop, imports and start-up excluded for both), sessions/s at 100 % of one core
(= 1 / CPU per session), concurrent sessions per core (= concurrency / CPU share), and TTFE as the tool
reports it against the truth: the target's first-event stamp minus the tool's own send stamp
(the same method as bench/truth.py, R = reported - true). The target's CPU share says what bounds the
achieved rate.

Worker (sseprobe side): python -m bench.peer sseprobe URL CONCURRENCY SECONDS D_MS
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from ._util import PY, ROOT, emit, pct, proc_cpu


def sseprobe_worker(url: str, concurrency: int, seconds: float, delay_ms: float) -> dict[str, Any]:
    from sseprobe._config import FlowOptions, Limits, Timeouts
    from sseprobe.load.engine import CohortSpec, Load
    from sseprobe.load.runner import RunOptions, measure

    from . import truth

    truth.install_hook(delay_ms / 1000.0)
    load = Load(duration=seconds, concurrency=concurrency, grace=0.0)
    c0, w0 = time.process_time(), time.perf_counter()
    m = measure(
        [CohortSpec("canonical", FlowOptions(flow="canonical", url=url))],
        load,
        Timeouts(connect=10, idle=60, session=120),
        Limits(),
        RunOptions(workers=1),
    )
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    stats = m.cohorts["canonical"]
    rows = truth._store
    ttfe = stats.to_dict()["ttfe_ms"]
    return _figures(
        "sseprobe",
        stats.ok,
        stats.sessions - stats.ok,
        cpu,
        wall,
        concurrency,
        reported=[x[1] for x in rows],
        r=[x[2] for x in rows],
        s=[x[3] for x in rows],
        tool_p95=float(ttfe["p95"] or "nan"),  # nan: no session answered
        extra={
            "saturated": m.generator["saturated"],
            "loop_lag_p99": m.generator["loop_lag_ms"]["p99"],
            "start_lag_p99": m.generator["start_lag_ms"]["p99"],
            "start_lag_max": m.generator["start_lag_ms"]["max"],
            "outcomes": dict(stats.outcomes),
        },
    )


def locust_run(url: str, concurrency: int, seconds: float, delay_ms: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "locust.json")
        cmd = [
            PY,
            "-m",
            "locust",
            "-f",
            os.path.join(ROOT, "bench", "locustfile.py"),
            "--headless",
            "--only-summary",
            "-u",
            str(concurrency),
            "-r",
            str(concurrency),
            "-t",
            f"{seconds:g}s",
            "--host",
            url,
            "--loglevel",
            "WARNING",
            "--stop-timeout",
            "0",
        ]
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            cwd=tmp,
            env={**os.environ, "SSEPROBE_BENCH_OUT": out},
        )
        if not os.path.exists(out):
            raise RuntimeError(f"locust wrote no result ({r.returncode}): {r.stderr[-2000:]}")
        with open(out) as f:
            doc = json.load(f)
    d = delay_ms / 1000.0
    reported = [t[0] for t in doc["truth"]]
    r_ms = [(send + ttfe / 1000.0 - ts) * 1000.0 for ttfe, send, ts in doc["truth"]]
    s_ms = [(ts - d - send) * 1000.0 for _ttfe, send, ts in doc["truth"]]
    return _figures(
        "locust",
        doc["ok"],
        doc["failed"],
        doc["cpu_s"],
        doc["wall_s"],
        concurrency,
        reported=reported,
        r=r_ms,
        s=s_ms,
        tool_p95=doc["locust_ttfe_ms"]["p95"],
        extra={"cpu_warning": "CPU usage above" in r.stderr},
    )


def _figures(
    tool: str,
    ok: int,
    failed: int,
    cpu: float,
    wall: float,
    concurrency: int,
    *,
    reported: list[float],
    r: list[float],
    s: list[float],
    tool_p95: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    true = [a - b for a, b in zip(reported, r, strict=False)]
    per = cpu / ok if ok else float("nan")
    share = cpu / wall if wall else float("nan")
    return {
        "tool": tool,
        "ok": ok,
        "failed": failed,
        "cpu_s": cpu,
        "wall_s": wall,
        "sessions_per_s": ok / wall if wall else float("nan"),
        "cpu_ms_per_session": per * 1000.0,
        "sessions_per_core_s": 1.0 / per if ok else float("nan"),
        "cpu_share": share,
        "streams_per_core": concurrency / share if share else float("nan"),
        "ttfe_p95_reported": tool_p95,
        "ttfe_p95_exact_reported": pct(reported, 95),
        "ttfe_p95_true": pct(true, 95),
        "R_p50": pct(r, 50),
        "R_p95": pct(r, 95),
        "R_p99": pct(r, 99),
        "S_p50": pct(s, 50),
        "S_p99": pct(s, 99),
        **extra,
    }


def measure_pair(
    url: str, target_pid: int, concurrency: int, seconds: float, delay_ms: float, run_worker: Any
) -> dict[str, dict[str, Any]]:
    """One turn each, Locust then sseprobe, with the target's CPU share over each."""
    out: dict[str, dict[str, Any]] = {}
    for tool in ("locust", "sseprobe"):
        t0, w0 = proc_cpu(target_pid), time.perf_counter()
        if tool == "locust":
            res = locust_run(url, concurrency, seconds, delay_ms)
        else:
            res = run_worker(
                "peer", "sseprobe", url, str(concurrency), str(seconds), str(delay_ms), timeout=seconds + 120
            )
        res["target_cpu_share"] = (proc_cpu(target_pid) - t0) / (time.perf_counter() - w0)
        out[tool] = res
    return out


if __name__ == "__main__":
    if sys.argv[1] == "sseprobe":
        a = sys.argv[2:]
        emit(sseprobe_worker(a[0], int(a[1]), float(a[2]), float(a[3])))
