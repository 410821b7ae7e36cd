"""Benchmark 10: ``compare --from-log`` over 10 million log lines on one core, memory bounded.

Method. A Cloud Logging export of N lines (``target --access-log``'s shape, ~330 bytes a line, two
cohorts, lognormal first-answer times) is written once to a temporary file: 100,000 distinct lines
repeated, since throughput does not depend on which values the lines hold. Then the whole command,
``sseprobe compare --from-log FILE --log-map cloud-logging --json``, runs in a fresh process, and
its CPU time (user + system) and peak RSS are read from ``getrusage(RUSAGE_CHILDREN)``:
lines / CPU second is lines per second on one core (the command is one thread). Bar: 10 M lines in
under a minute, i.e. >= 167,000 lines/s, and a peak RSS that does not grow with the file (streamed).

  python -m bench --only logs          # 10 M lines (~3.3 GB of temporary file, deleted after)
  python -m bench.logs 2000000         # another size, prints the row
"""

from __future__ import annotations

import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from ._util import PY, ROOT, median, spread

LINES = 10_000_000
DISTINCT = 100_000
BAR_LINES_S = LINES / 60


def write_log(path: str, lines: int) -> int:
    """N lines of a Cloud Logging export; returns the file's size in bytes."""
    rng = random.Random(7)
    t0 = datetime(2027, 1, 15, tzinfo=UTC).timestamp()
    block = []
    for i in range(DISTINCT):
        ttfe = rng.lognormvariate(math.log(200.0), 0.4)
        entry = {
            "timestamp": datetime.fromtimestamp(t0 + i * 0.8, UTC).isoformat().replace("+00:00", "Z"),
            "severity": "INFO",
            "logName": "projects/vana/logs/sse_stream",
            "httpRequest": {
                "requestMethod": "POST",
                "requestUrl": "/run_sse",
                "status": 200 if rng.random() > 0.002 else 503,
                "latency": f"{(ttfe + 900.0) / 1000:.6f}s",
            },
            "jsonPayload": {
                "stream_mode": "canonical" if i % 20 == 0 else "legacy",  # the 5 % step
                "first_answer_ms": round(ttfe, 3),
                "completed": rng.random() > 0.01,
                "error": None,
            },
        }
        block.append(orjson.dumps(entry) + b"\n")
    chunk = b"".join(block)
    with open(path, "wb") as f:
        full, rest = divmod(lines, DISTINCT)
        for _ in range(full):
            f.write(chunk)
        f.writelines(block[:rest])
    return os.path.getsize(path)


def measure(path: str, out: str) -> dict[str, float]:
    """One run of the command in a fresh process: CPU s, wall s, peak RSS MiB of that process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(
        [PY, "-m", "sseprobe.cli", "compare", "--from-log", path, "--log-map", "cloud-logging", "--json", "--out",
         out],
        capture_output=True, cwd=ROOT, timeout=1800,
    )  # fmt: skip
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode not in (0, 1, 2, 3) or b"error" in r.stderr:
        raise RuntimeError(f"compare --from-log failed ({r.returncode}): {r.stderr[-2000:]!r}")
    doc = orjson.loads(r.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_s": cpu, "wall_s": wall, "rss_mib": after.ru_maxrss / 1024, "lines": doc["source"]["lines"]}


def bench_logs(repeats: int, quick: bool, lines: int | None = None) -> list[dict[str, Any]]:
    lines = lines or (500_000 if quick else LINES)
    fd, path = tempfile.mkstemp(prefix="sseprobe-bench-", suffix=".jsonl")
    os.close(fd)
    try:
        size = write_log(path, lines)
        got = [measure(path, path + ".json") for _ in range(repeats)]
    finally:
        os.unlink(path)
        if os.path.exists(path + ".json"):
            os.unlink(path + ".json")
    assert all(g["lines"] == lines for g in got), got
    rates = [g["lines"] / g["cpu_s"] for g in got]
    rate = median(rates)
    load = os.getloadavg()[0]
    note = (
        f"{lines:,} lines ({size / 2**30:.2f} GiB): CPU {median([g['cpu_s'] for g in got]):.1f} s, wall "
        f"{median([g['wall_s'] for g in got]):.1f} s, lines/s per core {spread(rates)}; load avg {load:.2f} at the end"
    )
    return [
        {
            "bench": "compare --from-log: Cloud Logging lines/s on one core",
            "sseprobe": rate,
            "baseline": None,
            "baseline_name": "",
            "ratio": None,
            "bar": ">= 167 k/s (10 M lines in a minute)",
            "met": None if lines < LINES else rate >= BAR_LINES_S,
            "noise": note,
        },
        {
            "bench": f"compare --from-log: peak RSS at {lines / 1e6:g} M lines (MiB)",
            "sseprobe": max(g["rss_mib"] for g in got),
            "baseline": None,
            "baseline_name": "",
            "ratio": None,
            "bar": "",
            "met": None,
            "noise": "",
        },
    ]


if __name__ == "__main__":
    for row in bench_logs(1, False, int(sys.argv[1]) if len(sys.argv) > 1 else None):
        print(orjson.dumps(row).decode())
