"""Benchmark 6: runs on Ray actors (``--cluster``) against the fork runner (``--workers``), same machine.

The same closed-model load (N canonical sessions, C users, a target answering at once) runs four ways:
forked workers 1 and 2, Ray actors 1 and 2 (``local:2`` with ``--workers-per-node`` 1 or 2). Figures:

- sessions/s: sessions / the run's own duration (actor placement and Ray's start are not in it: they
  happen once, before the common start);
- CPU ms per session: the driver's CPU while measuring plus its workers' (fork: reaped children; Ray:
  each actor process's CPU from its common start to its return, as ``generator.nodes`` reports it).
  Ray's own daemons (raylet, GCS) are not counted: they run whether or not a load does;
- start skew: how late each actor began after the common instant (its own clock), and the spread
  between the first and the last.

Workers: python -m bench.cluster fork URL N C K | python -m bench.cluster ray URL N C
"""

from __future__ import annotations

import logging
import resource
import sys
from collections.abc import Callable
from typing import Any

from ._util import emit, median, spread

Row = dict[str, Any]


def _cpu_self_and_children() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _cohorts(url: str) -> list[Any]:
    from sseprobe._config import FlowOptions
    from sseprobe.load.engine import CohortSpec

    return [CohortSpec("canonical", FlowOptions(flow="canonical", url=url))]


def _figures(m: Any, sessions: int, cpu_s: float) -> dict[str, Any]:
    ok = m.cohorts["canonical"].outcomes.get("ok", 0)
    return {"sessions_per_s": sessions / m.info.duration_s, "cpu_ms_per_session": cpu_s * 1000 / sessions, "ok": ok}


def worker_fork(url: str, sessions: int, concurrency: int, workers: int) -> dict[str, Any]:
    from sseprobe.load.engine import Load
    from sseprobe.load.runner import RunOptions, measure

    measure(_cohorts(url), Load(sessions=50, concurrency=concurrency), opts=RunOptions(workers=1))  # warm-up
    cpu0 = _cpu_self_and_children()
    m = measure(_cohorts(url), Load(sessions=sessions, concurrency=concurrency), opts=RunOptions(workers=workers))
    return _figures(m, sessions, _cpu_self_and_children() - cpu0)


def worker_ray(url: str, sessions: int, concurrency: int) -> dict[str, Any]:
    import ray

    from sseprobe.load.cluster import ClusterOptions
    from sseprobe.load.engine import Load
    from sseprobe.load.runner import RunOptions, measure

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        _node_ip_address="127.0.0.1",
        object_store_memory=100 * 1024 * 1024,
    )
    out: dict[str, Any] = {}
    try:
        warm = RunOptions(cluster=ClusterOptions("local:2", 1))
        measure(_cohorts(url), Load(sessions=50, concurrency=concurrency), opts=warm)
        for actors in (1, 2):
            opts = RunOptions(cluster=ClusterOptions("local:2", actors))
            cpu0 = _cpu_self_and_children()
            m = measure(_cohorts(url), Load(sessions=sessions, concurrency=concurrency), opts=opts)
            driver = _cpu_self_and_children() - cpu0
            (node,) = m.generator["nodes"]
            fig = _figures(m, sessions, driver + node["cpu_s"])
            fig.update(skew_ms=node["start_skew_ms"], spread_ms=m.generator["cluster"]["start_spread_ms"])
            fig["driver_cpu_ms_per_session"] = driver * 1000 / sessions
            out[str(actors)] = fig
    finally:
        ray.shutdown()
    return out


def bench_cluster(
    repeats: int,
    quick: bool,
    run_worker: Callable[..., dict[str, Any]],
    target: Callable[..., Any],
) -> list[Row]:
    sessions, concurrency = (1000, 16) if quick else (4000, 32)
    fork: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    on_ray: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    with target("--canonical-ttfe-ms", "1", "--canonical-ttfe-spread", "0", "--canonical-gap-ms", "0") as (url, _pid):
        for _ in range(repeats):  # interleaved, so noise hits every way alike
            for k in (1, 2):
                fork[k].append(run_worker("cluster", "fork", url, str(sessions), str(concurrency), str(k)))
            got = run_worker("cluster", "ray", url, str(sessions), str(concurrency), timeout=600)
            for k in (1, 2):
                on_ray[k].append(got[str(k)])
    rows: list[Row] = []
    for k in (1, 2):
        for key, label in (("sessions_per_s", "sessions/s"), ("cpu_ms_per_session", "CPU ms/session")):
            r, f = [x[key] for x in on_ray[k]], [x[key] for x in fork[k]]
            rows.append(
                {
                    "bench": f"cluster: {label}, {k} Ray actor{'s' if k > 1 else ''} (c={concurrency})",
                    "sseprobe": median(r),
                    "baseline": median(f),
                    "baseline_name": f"fork --workers {k}",
                    "ratio": median(r) / median(f),
                    "bar": "",
                    "met": None,
                    "noise": f"ray {spread(r)}; fork {spread(f)}"
                    + (
                        f"; driver {median([x['driver_cpu_ms_per_session'] for x in on_ray[k]]):.3f} ms/session"
                        if key == "cpu_ms_per_session"
                        else ""
                    ),
                }
            )
    skews = [x["skew_ms"] for x in on_ray[2]]
    spreads = [x["spread_ms"] for x in on_ray[2]]
    rows.append(
        {
            "bench": "cluster: start skew, 2 actors (ms, latest actor / spread)",
            "sseprobe": median(skews),
            "baseline": median(spreads),
            "baseline_name": "spread first-last",
            "ratio": None,
            "bar": "",
            "met": None,
            "noise": f"skew {spread(skews)}; spread {spread(spreads)}",
        }
    )
    return rows


def main(argv: list[str]) -> None:
    mode, url, sessions, concurrency = argv[0], argv[1], int(argv[2]), int(argv[3])
    if mode == "fork":
        emit(worker_fork(url, sessions, concurrency, int(argv[4])))
    else:
        emit(worker_ray(url, sessions, concurrency))


if __name__ == "__main__":
    main(sys.argv[1:])
