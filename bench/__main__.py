"""``python -m bench``: every benchmark, side by side with its baseline, and one table of ratios.

  python -m bench                 # all benchmarks once (~4.5 minutes on 2 cores)
  python -m bench --repeats 3     # each figure the median of 3 measurements (the README's figures)
  python -m bench --quick         # a smoke run of each (~1 minute); the bars are not judged on it
  python -m bench --only decode,peer --json out.json

Benchmarks: decode (2), concurrent (3), truth (4), peer (5), tls (6), cluster (7, needs the ray extra),
adk (8, needs google-adk), kstamp (9), held (10), logs (11); see bench/README.md for methods.
Never part of the test suite's pass/fail: the exit code is 0 unless a benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from . import adk, cluster, held, kstamp, logs, peer, tls
from ._util import PY, ROOT, machine, median, other_cpu_busy, raise_nofile, run_worker, spread, target, target_stats

Row = dict[str, Any]


def _fmt(x: Any, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    if isinstance(x, float):
        if abs(x) >= 100_000:
            return f"{x / 1e6:.2f} M{unit}"
        if abs(x) >= 100:
            return f"{x:,.0f}{unit}"
        return f"{x:.2f}{unit}"
    return f"{x}{unit}"


# --- 2. decoder + accounting -------------------------------------------------------------------


def bench_decode(repeats: int, quick: bool) -> list[Row]:
    rows: list[Row] = []
    shapes = ("canonical", "token", "legacy")
    for shape in shapes:
        events = 100_000 if quick else {"canonical": 1_000_000, "token": 2_000_000, "legacy": 1_000_000}[shape]
        clients = ("sseprobe", "aiohttp-lines", "httpx-sse") if shape == "canonical" else ("sseprobe", "aiohttp-lines")
        proc = subprocess.Popen(
            [PY, "-m", "bench.bulk_server", "--events", str(events), "--shape", shape],
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert proc.stderr is not None
            url = proc.stderr.readline().rsplit(" ", 1)[-1].strip()
            got: dict[str, list[float]] = {c: [] for c in clients}
            for _ in range(repeats):
                for c in clients:  # interleaved, so noise hits every client alike
                    got[c].append(run_worker("decode", "worker", c, url, str(events))["ev_per_cpu_s"])
        finally:
            proc.terminate()
            proc.wait()
        only = [
            run_worker("decode", "decoder-only", shape, str(min(events, 1_000_000)))["ev_per_cpu_s"]
            for _ in range(1 if quick else 2)
        ]
        s = median(got["sseprobe"])
        for base in clients[1:]:
            b = median(got[base])
            headline = shape == "canonical" and base == "aiohttp-lines"
            rows.append(
                {
                    "bench": f"decode {shape}: events/s per core",
                    "sseprobe": s,
                    "baseline": b,
                    "baseline_name": base,
                    "ratio": s / b,
                    "bar": ">= 1 M/s and >= 3x aiohttp lines" if headline else "",
                    "met": (s >= 1e6 and s / b >= 3) if headline else None,
                    "noise": f"sseprobe {spread(got['sseprobe'])}; {base} {spread(got[base])}",
                }
            )
        rows.append(
            {
                "bench": f"decode {shape}: decoder + scan only, no socket",
                "sseprobe": max(only),
                "baseline": None,
                "baseline_name": "",
                "ratio": None,
                "bar": "",
                "met": None,
                "noise": spread(only),
            }
        )
    return rows


# --- 3. concurrent idle sessions -----------------------------------------------------------------


def bench_concurrent(repeats: int, quick: bool) -> list[Row]:
    rows: list[Row] = []
    counts = (500, 2000) if quick else (1000, 5000, 15000)
    rate = 1500.0
    raise_nofile()
    with target(
        "--canonical-p-stall",
        "1",
        "--stall-max-s",
        "900",
        "--canonical-ttfe-ms",
        "1",
        "--canonical-ttfe-spread",
        "0",
        nofile=True,
    ) as (url, _pid):
        for n in counts:
            got: dict[str, list[dict[str, Any]]] = {"sseprobe": [], "aiohttp": []}
            for _ in range(repeats):
                for client in ("sseprobe", "aiohttp"):
                    got[client].append(run_worker("concurrent", "worker", client, url, str(n), str(rate), timeout=300))
                    _drain(url)
            s = median([r["kib_per_session"] for r in got["sseprobe"]])
            b = median([r["kib_per_session"] for r in got["aiohttp"]])
            opened = min(r["had_first_event"] for r in got["sseprobe"])
            rows.append(
                {
                    "bench": f"{n:,} open idle sessions: RSS KiB/session",
                    "sseprobe": s,
                    "baseline": b,
                    "baseline_name": "bare aiohttp",
                    "ratio": s / b,
                    "bar": "15,000 at <= 14 KiB" if n == 15000 else "",
                    "met": (s <= 14 and opened == n) if n == 15000 else None,
                    "noise": f"all {opened:,} streaming; "
                    f"sseprobe {spread([r['kib_per_session'] for r in got['sseprobe']])}"
                    f", opened in {median([r['open_s'] for r in got['sseprobe']]):.1f}s",
                }
            )
    return rows


def _drain(url: str) -> None:
    """Wait until the target has let go of the last client's streams."""
    for _ in range(120):
        if target_stats(url)["gauges"]["open_canonical_streams"] == 0:
            return
        time.sleep(0.25)


# --- 4. TTFE truth ---------------------------------------------------------------------------------


def bench_truth(repeats: int, quick: bool) -> list[Row]:
    rows: list[Row] = []
    delay = 100.0
    # (open sessions, rate/s, session length s): rate x length = open sessions
    points = (
        ((100, 25.0, 4.0), (1000, 250.0, 4.0)) if quick else ((100, 25.0, 4.0), (1000, 250.0, 4.0), (5000, 500.0, 10.0))
    )
    window = 3.0 if quick else 6.0
    raise_nofile()
    for n, rate, length in points:
        gap_ms = (length * 1000.0) - delay
        got = []
        for _ in range(repeats):
            with target(
                "--canonical-ttfe-ms",
                f"{delay:g}",
                "--canonical-ttfe-spread",
                "0",
                "--canonical-events",
                "2",
                "--canonical-gap-ms",
                f"{gap_ms:g}",
                nofile=True,
            ) as (url, _pid):
                got.append(
                    run_worker(
                        "truth",
                        "worker",
                        url,
                        str(n),
                        f"{delay:g}",
                        f"{rate:g}",
                        f"{length + 1:g}",
                        f"{window:g}",
                        timeout=300,
                    )
                )
        r99 = median([g["R_p99"] for g in got])
        rows.append(
            {
                "bench": f"TTFE error p99 (ms), {n:,} open",
                "sseprobe": r99,
                "baseline": median([g["S_p99"] for g in got]),
                "baseline_name": "origin check S p99",
                "ratio": None,
                "bar": "p99 <= 2 ms at 5,000" if n == 5000 else "",
                "met": (r99 <= 2.0) if n == 5000 else None,
                "noise": (
                    f"R p50 {median([g['R_p50'] for g in got]):.2f}; TTFE-D p50/p99 "
                    f"{median([g['vsD_p50'] for g in got]):.2f}/{median([g['vsD_p99'] for g in got]):.2f}; "
                    f"{median([g['judged'] for g in got]):.0f} judged; saturated "
                    f"{[g['saturated'] for g in got]}; loop lag p99 {median([g['loop_lag_p99'] for g in got]):.1f}"
                ),
            }
        )
    return rows


# --- 5. the peer -----------------------------------------------------------------------------------


def bench_peer(repeats: int, quick: bool) -> list[Row]:
    concurrency, seconds, delay = 200, (5.0 if quick else 15.0), 150.0
    runs: list[dict[str, dict[str, Any]]] = []
    raise_nofile()
    with target(
        "--canonical-ttfe-ms", f"{delay:g}", "--canonical-ttfe-spread", "0", "--canonical-gap-ms", "20", nofile=True
    ) as (url, pid):
        for _ in range(repeats):
            runs.append(peer.measure_pair(url, pid, concurrency, seconds, delay, run_worker))

    def m(tool: str, key: str) -> float:
        return median([r[tool][key] for r in runs])

    def sp(tool: str, key: str) -> str:
        return spread([r[tool][key] for r in runs])

    s_core, l_core = m("sseprobe", "sessions_per_core_s"), m("locust", "sessions_per_core_s")
    s_err = m("sseprobe", "ttfe_p95_exact_reported") - m("sseprobe", "ttfe_p95_true")
    l_err = m("locust", "ttfe_p95_reported") - m("locust", "ttfe_p95_true")
    return [
        {
            "bench": f"peer: canonical sessions/s at 100 % of a core (c={concurrency})",
            "sseprobe": s_core,
            "baseline": l_core,
            "baseline_name": "Locust 2.47 FastHttpUser",
            "ratio": s_core / l_core,
            "bar": ">= 2x Locust",
            "met": s_core / l_core >= 2,
            "noise": (
                f"CPU ms/session {m('sseprobe', 'cpu_ms_per_session'):.3f} vs {m('locust', 'cpu_ms_per_session'):.3f}"
                f"; spread {sp('sseprobe', 'sessions_per_core_s')} vs {sp('locust', 'sessions_per_core_s')}"
            ),
        },
        {
            "bench": "peer: achieved sessions/s (same target, same concurrency)",
            "sseprobe": m("sseprobe", "sessions_per_s"),
            "baseline": m("locust", "sessions_per_s"),
            "baseline_name": "Locust",
            "ratio": m("sseprobe", "sessions_per_s") / m("locust", "sessions_per_s"),
            "bar": "",
            "met": None,
            "noise": (
                f"bound: target CPU {m('sseprobe', 'target_cpu_share'):.0%}/{m('locust', 'target_cpu_share'):.0%}"
                f", tool CPU {m('sseprobe', 'cpu_share'):.0%}/{m('locust', 'cpu_share'):.0%}"
            ),
        },
        {
            "bench": "peer: concurrent sessions per core",
            "sseprobe": m("sseprobe", "streams_per_core"),
            "baseline": m("locust", "streams_per_core"),
            "baseline_name": "Locust",
            "ratio": m("sseprobe", "streams_per_core") / m("locust", "streams_per_core"),
            "bar": "",
            "met": None,
            "noise": "concurrency / CPU share, at the canonical session churn",
        },
        {
            "bench": "peer: TTFE p95 reported - true (ms)",
            "sseprobe": s_err,
            "baseline": l_err,
            "baseline_name": "Locust",
            "ratio": None,
            "bar": "TTFE stays true (or flagged)",
            "met": abs(s_err) <= 2.0 or all(r["sseprobe"]["saturated"] for r in runs),
            "noise": (
                f"true p95 {m('sseprobe', 'ttfe_p95_true'):.0f} / {m('locust', 'ttfe_p95_true'):.0f}; reported "
                f"{m('sseprobe', 'ttfe_p95_reported'):.0f} / {m('locust', 'ttfe_p95_reported'):.0f}; R p99 "
                f"{m('sseprobe', 'R_p99'):.1f} / {m('locust', 'R_p99'):.1f}; sseprobe flagged saturated "
                f"{[r['sseprobe']['saturated'] for r in runs]}"
            ),
        },
    ]


# --- 6. https next to http ------------------------------------------------------------------------


def bench_tls(repeats: int, quick: bool) -> list[Row]:
    concurrency, sessions = 100, (3000 if quick else 10000)
    events = 100_000 if quick else 1_000_000
    cpu: dict[tuple[str, str], list[float]] = {}
    stream: dict[str, list[float]] = {"http": [], "https": []}
    with tls.server(events) as (http_url, https_url, ca_file):
        urls = {"http": http_url, "https": https_url}
        for _ in range(repeats):
            for tool in ("sseprobe", "aiohttp", "locust"):  # interleaved, so noise hits every client alike
                for scheme, url in urls.items():
                    got = run_worker("tls", "session", tool, url, str(concurrency), str(sessions), ca_file)
                    cpu.setdefault((tool, scheme), []).append(got["cpu_ms_per_session"])
            for scheme, url in urls.items():
                stream[scheme].append(run_worker("tls", "stream", url, str(events), ca_file)["ev_per_cpu_s"])

    def m(tool: str, scheme: str) -> float:
        return median(cpu[(tool, scheme)])

    def noise(*keys: tuple[str, str]) -> str:
        return "; ".join(f"{t} {s} {spread(cpu[(t, s)])}" for t, s in keys)

    s_http, s_https = m("sseprobe", "http"), m("sseprobe", "https")
    a_https, l_https = m("aiohttp", "https"), m("locust", "https")
    return [
        {
            "bench": f"https: client CPU ms/session, kept alive (c={concurrency}; ratio = baseline / sseprobe)",
            "sseprobe": s_https,
            "baseline": a_https,
            "baseline_name": "the same sessions on aiohttp",
            "ratio": a_https / s_https,
            "bar": ">= 1.5x better than aiohttp https",
            "met": a_https / s_https >= 1.5,
            "noise": noise(("sseprobe", "https"), ("aiohttp", "https")),
        },
        {
            "bench": "https vs http: sseprobe CPU ms/session (ratio = https / http)",
            "sseprobe": s_https,
            "baseline": s_http,
            "baseline_name": "sseprobe http",
            "ratio": s_https / s_http,
            "bar": "https <= 1.5x http",
            "met": s_https / s_http <= 1.5,
            "noise": noise(("sseprobe", "http"), ("sseprobe", "https")),
        },
        {
            "bench": f"https: vs Locust (Locust at c={tls.LOCUST_USERS}; ratio = baseline / sseprobe)",
            "sseprobe": s_https,
            "baseline": l_https,
            "baseline_name": "Locust FastHttpUser iter_lines",
            "ratio": l_https / s_https,
            "bar": "",
            "met": None,
            "noise": noise(("locust", "http"), ("locust", "https")) + f"; Locust http median {m('locust', 'http'):.3f}",
        },
        {
            "bench": "http: client CPU ms/session, kept alive (ratio = baseline / sseprobe)",
            "sseprobe": s_http,
            "baseline": m("aiohttp", "http"),
            "baseline_name": "the same sessions on aiohttp",
            "ratio": m("aiohttp", "http") / s_http,
            "bar": "",
            "met": None,
            "noise": noise(("aiohttp", "http")),
        },
        {
            "bench": "one stream over https, canonical events: events/s per core",
            "sseprobe": median(stream["https"]),
            "baseline": median(stream["http"]),
            "baseline_name": "the same stream over http",
            "ratio": median(stream["https"]) / median(stream["http"]),
            "bar": "",
            "met": None,
            "noise": f"https {spread(stream['https'])}; http {spread(stream['http'])}",
        },
    ]


BENCHES: dict[str, Callable[[int, bool], list[Row]]] = {
    "decode": bench_decode,
    "concurrent": bench_concurrent,
    "truth": bench_truth,
    "peer": bench_peer,
    "tls": bench_tls,
    "cluster": lambda repeats, quick: cluster.bench_cluster(repeats, quick, run_worker, target),
    "adk": adk.bench_adk,
    "kstamp": lambda repeats, quick: kstamp.bench_kstamp(repeats, quick, run_worker, target),
    "held": lambda repeats, quick: held.bench_rows(repeats, quick),
    "logs": lambda repeats, quick: logs.bench_logs(repeats, quick),
}


def table(rows: list[Row]) -> str:
    head = ("benchmark", "sseprobe", "baseline", "ratio", "bar", "met?")
    body = [
        (
            r["bench"],
            _fmt(r["sseprobe"]),
            (f"{_fmt(r['baseline'])} ({r['baseline_name']})" if r["baseline"] is not None else "-"),
            _fmt(r["ratio"], "x") if r["ratio"] else "-",
            r["bar"] or "-",
            {True: "MET", False: "NOT MET", None: ""}[r["met"]],
        )
        for r in rows
    ]
    widths = [max(len(str(x[i])) for x in (head, *body)) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*head), line.format(*("-" * w for w in widths))]
    out += [line.format(*b) for b in body]
    notes = [f"  {r['bench']}: {r['noise']}" for r in rows if r.get("noise")]
    return "\n".join(out + ["", "notes (noise = min-max over repeats):", *notes])


def main() -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run of each benchmark")
    ap.add_argument("--repeats", type=int, default=1, help="measurements per figure (median reported)")
    ap.add_argument("--only", default="", help="comma-separated: " + ",".join(BENCHES))
    ap.add_argument("--json", default="", help="also write rows and machine info here")
    a = ap.parse_args()
    names = [n for n in (a.only.split(",") if a.only else BENCHES) if n]
    unknown = set(names) - set(BENCHES)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    info = machine()
    info["busy_before"] = other_cpu_busy(1.0)
    print(
        f"machine: {info['nproc']} x {info['cpu']}, Python {info['python']}, loop {info['sseprobe_loop']}, "
        f"load avg {info['load_avg'][0]:.2f}, CPUs busy before start {info['busy_before']:.0%}",
        flush=True,
    )
    rows: list[Row] = []
    failed: list[str] = []
    t0 = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        try:
            got = BENCHES[name](max(1, a.repeats), a.quick)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            failed.append(f"{name}: {type(exc).__name__}: {str(exc)[:800]}")
            print(f"[{name}] FAILED: {failed[-1]}", file=sys.stderr, flush=True)
            continue
        rows += got
        print(f"[{name}] done in {time.perf_counter() - t:.0f}s", file=sys.stderr, flush=True)
    info["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print()
    print(table(rows))
    print(f"\n{len(rows)} figures in {info['elapsed_s']:.0f}s; repeats {a.repeats}{'; quick' if a.quick else ''}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {"machine": info, "repeats": a.repeats, "quick": a.quick, "rows": rows, "failed": failed},
                f,
                indent=1,
                default=str,
            )
            f.write("\n")  # a text file ends with a newline (.ci/leftovers.py)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
