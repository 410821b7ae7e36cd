"""Profile sseprobe's hot paths: an in-process canonical load against the target (its own process).

  python -m bench.profile                    # CPU per session, then cProfile's top functions
  python -m bench.profile --pyinstrument     # a call tree instead (pip install pyinstrument)
  python -m bench.profile --sessions 4000 --concurrency 200 --bulk   # + the decoder over a bulk stream

Not a benchmark (the profiler's own overhead inflates small functions); it says where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import subprocess
import time

from ._util import PY, ROOT, event_loop_run, target


async def _load(url: str, sessions: int, concurrency: int) -> int:
    from sseprobe._config import FlowOptions
    from sseprobe.load.engine import CohortSpec, Load, run_load
    from sseprobe.verdict.stats import CohortStats

    stats = CohortStats()
    await run_load(
        [CohortSpec("canonical", FlowOptions(flow="canonical", url=url))],
        Load(sessions=sessions, concurrency=concurrency),
        stats.add,
    )
    return stats.ok


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile")
    ap.add_argument("--sessions", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--pyinstrument", action="store_true")
    ap.add_argument("--bulk", action="store_true", help="also profile one bulk stream (decoder path)")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    with target("--canonical-ttfe-ms", "50", "--canonical-ttfe-spread", "0", "--canonical-gap-ms", "20") as (url, _):
        event_loop_run(_load(url, 100, 20))  # warm-up
        c0 = time.process_time()
        ok = event_loop_run(_load(url, a.sessions, a.concurrency))
        cpu = time.process_time() - c0
        print(f"{ok} sessions ok, {cpu / max(ok, 1) * 1000:.3f} ms CPU per session (unprofiled)")
        _profile(lambda: event_loop_run(_load(url, a.sessions, a.concurrency)), a)
    if a.bulk:
        proc = subprocess.Popen(
            [PY, "-m", "bench.bulk_server", "--events", "500000"], stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        try:
            assert proc.stderr is not None
            bulk = proc.stderr.readline().rsplit(" ", 1)[-1].strip()
            from .decode import worker

            _profile(lambda: worker("sseprobe", bulk, 500000), a)
        finally:
            proc.terminate()
            proc.wait()


def _profile(fn: object, a: argparse.Namespace) -> None:
    if a.pyinstrument:
        from pyinstrument import Profiler

        p = Profiler(interval=0.0005)
        p.start()
        fn()  # type: ignore[operator]
        p.stop()
        print(p.output_text(unicode=False, color=False))
        return
    prof = cProfile.Profile()
    prof.runcall(fn)  # type: ignore[arg-type]
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(a.top)
    print(out.getvalue())


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
