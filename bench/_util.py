"""Shared bench helpers: processes, CPU and memory readings, medians, the machine."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PY = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: Sequence[float]) -> str:
    """'min-max' of repeated figures: the noise next to each median."""
    if len(xs) < 2:
        return ""
    return f"{min(xs):.3g}-{max(xs):.3g}"


def pct(xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import uvloop  # noqa: F401

        loop = "uvloop" if os.environ.get("SSEPROBE_LOOP", "").lower() != "asyncio" else "asyncio"
    except ImportError:
        loop = "asyncio"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg": os.getloadavg(),
        "sseprobe_loop": loop,
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    }


def other_cpu_busy(seconds: float = 0.5) -> float:
    """Share of the machine's CPUs busy during ``seconds`` (all processes): the noise floor."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        idle = vals[3] + vals[4]
        return sum(vals), idle

    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


@contextmanager
def target(*knobs: str, nofile: bool = False) -> Iterator[tuple[str, int]]:
    """``sseprobe target`` in its own process on 127.0.0.1 (port 0): yields (url, pid)."""
    if nofile:
        raise_nofile()
    proc = subprocess.Popen(
        [PY, "-m", "sseprobe.cli", "target", "--port", "0", *knobs],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if "listening on" not in line:
            raise RuntimeError(f"target did not start: {line}{proc.stderr.read()[:2000]}")
        yield line.rsplit(" ", 1)[-1].strip(), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def target_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_target/stats", timeout=10) as r:
        return json.loads(r.read())


def run_worker(module: str, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``python -m bench.MODULE ARGS`` in a fresh process; its last stdout line is a JSON result."""
    r = subprocess.run(
        [PY, "-m", f"bench.{module}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    if r.returncode != 0:
        raise RuntimeError(f"bench.{module} {' '.join(args)} failed ({r.returncode}): {r.stderr[-3000:]}")
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    return json.loads(lines[-1])


def emit(result: dict[str, Any]) -> None:
    """A worker's result: one JSON line on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def event_loop_run(main: Any) -> Any:
    """Run a coroutine on the loop sseprobe itself would use (uvloop when installed)."""
    from sseprobe.load.engine import run

    return run(main)
