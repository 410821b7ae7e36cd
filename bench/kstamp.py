"""Benchmark 9: what kernel receive timestamps buy: TTFE error at 5,000 open streams, with and without
CPU-bound processes beside the generator, sseprobe's client (kernel receive stamps) against the same
client on the event loop's own transport (bytes stamped when the loop got to them, as before).

Method. As benchmark 4 (``bench/truth.py``): the target stamps its first event with ``time.time()``
right before the write, sseprobe's first-event observer reads the TTFE it recorded, and
R = (base + TTFE) - ts is how long after the write sseprobe stamped the event (reported - true TTFE).

Two clients, taking turns, each in a fresh process:

- ``kernel``: sseprobe as shipped: each connection's socket is read by the client itself
  (``loop.add_reader`` + ``recvmsg_into``) with ``SO_TIMESTAMPNS`` on, so every read says when its bytes
  reached the socket and a session stamps them then. The same reads give the *receive lag* (how long
  bytes waited in the socket for the loop) of every read: what the loop-lag probe estimates, measured;
- ``loop``: the connection on the event loop's (uvloop's) transport, as before kernel stamps: each chunk
  stamped in the protocol's data callback, i.e. when the loop got round to it. The bench patches
  ``LeanClient._open`` back to that; nothing else differs.

CPU per session is the worker's process CPU over the run / sessions started.

Worker: python -m bench.kstamp worker MODE URL N D_MS RATE WARM_S WINDOW_S
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from testsupport.hogs import cpu_hogs

from ._util import emit, median, pct, raise_nofile, spread
from .truth import open_run

_receive_lags: list[float] = []  # ms, every read (kernel mode)


def _install_loop_transport() -> None:
    """sseprobe's connections on the event loop's own transport, as before kernel stamps."""
    from sseprobe.wire import conn as _conn
    from sseprobe.wire import http as _http

    async def open_conn(self: Any, key: Any) -> Any:
        loop = self.loop
        host, port, tls = key
        if tls is not None:
            raise RuntimeError("this bench speaks http only")
        async with asyncio.timeout(self._connect_timeout):
            t0 = self._clock()
            sock = await self._tcp(loop, host, port)
            _, conn = await loop.create_connection(lambda: _conn.Conn(loop), sock=sock)
            conn.tcp_ms = (self._clock() - t0) * 1000.0
            return conn

    _http.LeanClient._open = open_conn  # type: ignore[method-assign]


def _note_receive_lags() -> None:
    """Every read's receive lag, as the client saw it (kernel mode)."""
    from sseprobe.wire import conn as _conn
    from sseprobe.wire import sockio as _sockio

    clients: list[Any] = []
    init, received = _sockio.SocketIO.__init__, _conn.Conn.data_received

    def socket_io(self: Any, client: Any, sock: Any, conn: Any) -> None:
        if not clients:
            clients.append(client)
        init(self, client, sock, conn)

    def data_received(self: Any, data: bytes) -> None:
        if clients:
            _receive_lags.append(clients[0].receive_lag * 1000.0)
        received(self, data)

    _sockio.SocketIO.__init__ = socket_io  # type: ignore[method-assign]
    _conn.Conn.data_received = data_received  # type: ignore[method-assign]


def worker(mode: str, url: str, n: int, delay_ms: float, rate: float, warm: float, window: float) -> dict[str, Any]:
    if mode == "loop":
        _install_loop_transport()
    else:
        _note_receive_lags()
    m, cpu, judged = open_run(url, n, delay_ms, rate, warm, window)
    r = [x[2] for x in judged]
    stats = m.cohorts["canonical"]
    gen = m.generator
    return {
        "mode": mode,
        "n": n,
        "judged": len(judged),
        "sessions": stats.sessions,
        "cpu_ms_per_session": cpu * 1000.0 / max(1, stats.sessions),
        "R_p50": pct(r, 50),
        "R_p99": pct(r, 99),
        "receive_lag_p50": pct(_receive_lags, 50),
        "receive_lag_p99": pct(_receive_lags, 99),
        "loop_lag_p99": gen["loop_lag_ms"]["p99"],
        "start_lag_p99": gen["start_lag_ms"]["p99"],
        "error_ms": gen["error_ms"],
        "saturated": gen["saturated"],
        "cpu": gen.get("cpu", {}),
        "outcomes": dict(stats.outcomes),
    }


# --- the driver (python -m bench --only kstamp) ----------------------------------------------------

HOGS = 3  # CPU-bound processes beside the generator in the loaded condition (the machine has 2 CPUs)


def bench_kstamp(
    repeats: int,
    quick: bool,
    run_worker: Callable[..., dict[str, Any]],
    target: Callable[..., AbstractContextManager[tuple[str, int]]],
) -> list[dict[str, Any]]:
    """TTFE error p50/p99 and CPU per session, the loop transport against kernel stamps, idle and with
    HOGS CPU hogs; the two clients take turns within each repeat."""
    delay = 100.0
    n, rate, length = (1000, 250.0, 4.0) if quick else (5000, 500.0, 10.0)
    window = 3.0 if quick else 6.0
    raise_nofile()
    got: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cond in ("idle", "hogs"):
        for rep in range(repeats):
            modes = ("loop", "kernel") if rep % 2 == 0 else ("kernel", "loop")
            for mode in modes:
                knobs: tuple[str, ...] = ("--canonical-ttfe-ms", f"{delay:g}", "--canonical-ttfe-spread", "0")
                knobs += ("--canonical-events", "2", "--canonical-gap-ms", f"{length * 1000.0 - delay:g}")
                with target(*knobs, nofile=True) as (url, _pid), cpu_hogs(HOGS if cond == "hogs" else 0, settle_s=0.5):
                    load = os.getloadavg()[0]
                    args = (mode, url, str(n), f"{delay:g}", f"{rate:g}", f"{length + 1:g}", f"{window:g}")
                    r = run_worker("kstamp", "worker", *args, timeout=300)
                r["load_avg"] = load
                print(f"[kstamp] {cond} {mode}: {r}", file=sys.stderr, flush=True)
                got.setdefault((cond, mode), []).append(r)
    return [row for cond in ("idle", "hogs") for row in _rows(cond, n, got)]


def _rows(cond: str, n: int, got: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    cur, ker = got[(cond, "loop")], got[(cond, "kernel")]
    where = f"{n:,} open, {cond if cond == 'idle' else f'{HOGS} CPU hogs'}"

    def fig(rows: list[dict[str, Any]], key: str) -> float:
        return median([r[key] for r in rows])

    def noise(key: str) -> str:
        return f"kernel {spread([r[key] for r in ker])}; loop {spread([r[key] for r in cur])}"

    loads = [r["load_avg"] for r in cur + ker]
    lags = f"loop lag p99 {fig(cur, 'loop_lag_p99'):.1f}, measured receive lag p99 {fig(ker, 'receive_lag_p99'):.1f}"
    return [
        {
            "bench": f"TTFE error p{p} (ms), {where}: kernel stamps",
            "sseprobe": fig(ker, f"R_p{p}"),
            "baseline": fig(cur, f"R_p{p}"),
            "baseline_name": "loop transport",
            "ratio": None,
            "bar": "",
            "met": None,
            "noise": noise(f"R_p{p}") + (f"; load avg {min(loads):.1f}-{max(loads):.1f}; {lags}" if p == 99 else ""),
        }
        for p in (50, 99)
    ] + [
        {
            "bench": f"CPU ms/session, {where}: kernel stamps",
            "sseprobe": fig(ker, "cpu_ms_per_session"),
            "baseline": fig(cur, "cpu_ms_per_session"),
            "baseline_name": "loop transport",
            "ratio": fig(ker, "cpu_ms_per_session") / fig(cur, "cpu_ms_per_session"),
            "bar": "",
            "met": None,
            "noise": noise("cpu_ms_per_session")
            + f"; saturated: loop {[r['saturated'] for r in cur]}, kernel {[r['saturated'] for r in ker]}",
        }
    ]


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        a = sys.argv[2:]
        emit(worker(a[0], a[1], int(a[2]), float(a[3]), float(a[4]), float(a[5]), float(a[6])))
