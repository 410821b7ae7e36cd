"""A/A under CPU hogs: does a saturated generator still hand out a confident verdict?

  python -m bench.aa_hogs                      # 10 runs of the demo's A/A, 3 CPU hogs beside it
  python -m bench.aa_hogs --same-flow          # both cohorts the canonical flow: two copies of one service
  python -m bench.aa_hogs --runs 3 --hogs 0    # the same on whatever the machine is doing

Each run is ``sseprobe demo --slower 0`` (the built-in target in its own process, canonical and
legacy with the same injected TTFE, 1,500 sessions per cohort) with ``--hogs`` processes spinning
``while True: pass`` beside it, started before and killed after every run. ``--same-flow``: the
same load and target knobs (TTFE median 100 ms, spread 0.3, 10 ms gaps), but both cohorts run the
canonical flow (the legacy flow's two requests meet the generator's lag twice, so canonical against
legacy is not quite A/A on a busy machine). Every saved document is
judged twice from its own histograms: as recorded (the band of its generator block), and with no
band (what sseprobe said before the verdict knew about the generator). Same data, two verdicts.
Prints one line per run and a count of levels; ``--json`` keeps the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from sseprobe.verdict.compare import generator_band, judge
from sseprobe.verdict.stats import CohortStats
from testsupport.hogs import cpu_hogs

from ._util import PY, ROOT, target

SAME_FLOW = '[cohorts.canonical]\nflow = "canonical"\n[cohorts.legacy]\nflow = "canonical"\n'


def aa_command(out: Path, sessions: int, url: str | None) -> list[str]:
    """The demo's A/A, or (with a target URL) the same load with both cohorts on the canonical flow."""
    if url is None:
        return [PY, "-m", "sseprobe.cli", "demo", "--slower", "0", "-n", str(sessions), "--out", str(out)]
    scenario = out.with_suffix(".toml")
    scenario.write_text(SAME_FLOW)
    cohorts = ["--scenario", str(scenario), "--canonical", url, "--legacy", url]
    return [PY, "-m", "sseprobe.cli", "compare", *cohorts, "-n", str(sessions), "-c", "10", "-w", "1", "-o", str(out)]


def one_run(out: Path, sessions: int, n_hogs: int, url: str | None) -> dict[str, Any]:
    """One A/A run beside the hogs; the verdict with and without the generator's band."""
    with cpu_hogs(n_hogs):
        r = subprocess.run(aa_command(out, sessions, url), capture_output=True, text=True, cwd=ROOT, timeout=600)
        load = os.getloadavg()[0]  # at the end of the run, the hogs still spinning
    doc = json.loads(out.read_text())
    legacy, canonical = (CohortStats.from_dict(doc["cohorts"][n]) for n in ("legacy", "canonical"))
    before = judge(legacy, canonical).overall
    gen = doc.get("generator") or {}
    metrics = doc["verdict"]["metrics"]
    return {
        "exit": r.returncode,
        "overall": doc["verdict"]["overall"],
        "without_band": before,
        "saturated": gen.get("saturated"),
        "error_ms": gen.get("error_ms"),
        "band_ms": generator_band(gen),
        "generator_bound": [m["name"] for m in metrics if m.get("generator_bound")],
        "not_green": {m["name"]: m["level"] for m in metrics if m["level"] != "GREEN"},
        "load_1m": round(load, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--sessions", type=int, default=1500, help="per cohort")
    ap.add_argument("--hogs", type=int, default=3)
    ap.add_argument("--same-flow", action="store_true", help="both cohorts the canonical flow")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    rows = []
    knobs = ("--canonical-ttfe-ms", "100", "--canonical-gap-ms", "10")
    with tempfile.TemporaryDirectory() as tmp, target(*knobs) if args.same_flow else nullcontext() as served:
        url = served[0] if served else None  # the demo starts its own target
        for i in range(args.runs):
            row = one_run(Path(tmp) / f"aa-{i}.json", args.sessions, args.hogs, url)
            rows.append(row)
            print(
                f"run {i + 1:>2}: {row['overall']:<12} (no band: {row['without_band']:<12}) exit {row['exit']}  "
                f"saturated {row['saturated']!s:<5} error p99 {row['error_ms']} ms  "
                f"generator-bound {','.join(row['generator_bound']) or '-'}  load {row['load_1m']}",
                flush=True,
            )
    for key, label in (("overall", "with the generator's band"), ("without_band", "without it (before)")):
        counts = Counter(r[key] for r in rows)
        levels = ", ".join(f"{lvl} {counts[lvl]}" for lvl in ("GREEN", "INCONCLUSIVE", "YELLOW", "RED"))
        print(f"{label}: {levels}")
    saturated = sum(bool(r["saturated"]) for r in rows)
    print(f"saturated in {saturated} of {len(rows)} runs; load average now {os.getloadavg()}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
