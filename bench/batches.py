"""What ``compare --until-decided`` pays for measuring in batches: per-batch overhead against one run.

  python -m bench.batches [--batches 10] [--look-every 100] [--repeats 3] [--workers 1]

The same sessions (``batches * look_every`` per cohort, closed model, 48 users per cohort) against
the built-in target, run once as one measurement and once as ``batches`` measurements of
``look_every`` each (what the sequential mode does). The extra wall clock divided by the batches
is the overhead of one batch: a new event loop and fresh connections (and, with workers, a fork),
plus the ramp-down at each batch's end, when fewer users are left in flight. Medians over repeats,
with their spread; the two ways alternate within each repeat so both see the same machine.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from sseprobe._config import FlowOptions
from sseprobe.load.engine import CohortSpec, Load
from sseprobe.load.runner import RunOptions, measure

from ._util import machine, median, spread, target

USERS = 48  # per cohort, as tests/test_compare_cli.py
KNOBS = ("--legacy-ttfe-ms", "300", "--canonical-ttfe-ms", "300", "--legacy-events", "2", "--canonical-events", "2")


def _wall(cohorts: list[CohortSpec], load: Load, opts: RunOptions, parts: int) -> float:
    """Seconds to run ``load`` as ``parts`` measurements of an equal share each."""
    share = replace(load, sessions=(load.sessions or 0) // parts)
    t0 = time.perf_counter()
    for _ in range(parts):
        measure(cohorts, share, opts=opts)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--look-every", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    with target(*KNOBS) as (url, _pid):
        cohorts = [CohortSpec(name, FlowOptions(flow=name, url=url)) for name in ("canonical", "legacy")]
        load = Load(sessions=2 * args.batches * args.look_every, concurrency=2 * USERS, grace=30.0)
        opts = RunOptions(workers=args.workers)
        one, batched = [], []
        for _ in range(args.repeats):
            one.append(_wall(cohorts, load, opts, 1))
            batched.append(_wall(cohorts, load, opts, args.batches))
    per_batch = [(b - o) / args.batches for o, b in zip(one, batched, strict=True)]
    row = {
        "sessions_per_cohort": args.batches * args.look_every,
        "batches": args.batches,
        "workers": args.workers,
        "one_run_s": round(median(one), 3),
        "one_run_spread": spread(one),
        "batched_s": round(median(batched), 3),
        "batched_spread": spread(batched),
        "ratio": round(median(batched) / median(one), 3),
        "overhead_per_batch_s": round(median(per_batch), 3),
        "overhead_spread": spread(per_batch),
        "machine": machine(),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
