"""Benchmark 9: what kernel receive timestamps would buy: TTFE error at 5,000 open streams, with and
without CPU-bound processes beside the generator, stamping as sseprobe does against stamping with the
time the kernel says the bytes reached the socket.

Method. As benchmark 4 (``bench/truth.py``): the target stamps its first event with ``time.time()``
right before the write, sseprobe's first-event observer reads the TTFE it recorded, and
R = (base + TTFE) - ts is how long after the write sseprobe stamped the event (reported - true TTFE).

Two clients, run in turn, each in a fresh process:

- ``current``: sseprobe as shipped: the connection is an asyncio Protocol under uvloop, each chunk
  stamped with ``perf_counter()`` in its data callback, i.e. when the loop got round to it;
- ``kernel``: the same sessions, but each connection's socket is read by a reader callback of the
  bench's own (``loop.add_reader`` + ``sock.recvmsg``) with ``SO_TIMESTAMPNS`` on: every read carries
  the CLOCK_REALTIME instant the data reached the socket, turned into the run clock by the offset
  between ``time.time()`` and ``perf_counter()`` read at that read. The session clock answers that
  instant while the chunk is handled, so TTFE is stamped at arrival however late the loop is. The
  same reads give the *receive lag* (now - arrival) of every read: the quantity the loop-lag probe
  estimates, measured directly, so the probe's p99 can be checked against it.

CPU per session is the worker's process CPU over the run / sessions started.
Nothing here changes sseprobe: the kernel client is bench code patched in (``_install_kernel_stamps``).

Worker: python -m bench.kstamp worker MODE URL N D_MS RATE WARM_S WINDOW_S
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from ._util import PY, emit, median, pct, raise_nofile, spread

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_READ = 256 * 1024
_ANC = socket.CMSG_SPACE(16)

# the instant (run clock, s) the chunk being handled reached its socket, while it is handled; and its lag
_ARRIVAL: list[float | None] = [None]
_LAG: list[float] = [0.0]
_receive_lags: list[float] = []  # ms, every read


class _SockTransport:
    """The few transport calls sseprobe's connection makes, over a raw non-blocking socket."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, conn: Any) -> None:
        self.loop, self.sock, self.conn = loop, sock, conn
        self.fd = sock.fileno()
        self.closed = False
        self.reading = False
        self.out = b""

    def start(self) -> None:
        self.resume_reading()

    def pause_reading(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False

    def resume_reading(self) -> None:
        if not self.reading and not self.closed:
            self.loop.add_reader(self.fd, self._readable)
            self.reading = True

    def _readable(self) -> None:
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(_READ, _ANC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not data:
            self._lost(None)
            return
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", raw[:16])
                lag = time.time() - (sec + nsec * 1e-9)
                _LAG[0] = lag
                _ARRIVAL[0] = _real_perf() - lag
                _receive_lags.append(lag * 1000.0)
        try:
            self.conn.data_received(data)
        finally:
            _ARRIVAL[0] = None

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.out:
            self.out += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lost(exc)
            return
        if sent < len(data):
            self.out = data[sent:]
            self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        self.out = self.out[sent:]
        if not self.out:
            self.loop.remove_writer(self.fd)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self._lost(None)

    def _lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.pause_reading()
        if self.out:
            self.loop.remove_writer(self.fd)
        self.sock.close()
        self.loop.call_soon(self.conn.connection_lost, exc)


_real_perf = time.perf_counter


class _Clock:
    """Stands in for the ``time`` module in sseprobe's engine: ``perf_counter`` answers the arrival of
    the chunk being handled (kernel stamp), else now."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def perf_counter() -> float:
        arrival = _ARRIVAL[0]
        return _real_perf() if arrival is None else arrival


def _install_kernel_stamps() -> None:
    """Patch sseprobe's client so each new connection is read by ``_SockTransport`` with kernel stamps."""
    import sseprobe._engine as engine
    from sseprobe import _http

    engine.time = _Clock()  # type: ignore[assignment,attr-defined]  # the run clock of run_load

    async def open_conn(self: Any, key: Any) -> Any:
        loop = self.loop
        host, port, tls = key
        if tls is not None:
            raise RuntimeError("the kernel-stamp bench client speaks http only")
        async with asyncio.timeout(self._connect_timeout):
            t0 = self._clock()
            sock = await self._tcp(loop, host, port)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            conn = _http._Conn(loop)
            transport = _SockTransport(loop, sock, conn)
            conn.connection_made(transport)  # type: ignore[arg-type]
            transport.start()
            conn.tcp_ms = (self._clock() - t0) * 1000.0
            return conn

    _http.LeanClient._open = open_conn  # type: ignore[method-assign]


_store: list[tuple[float, float, float]] = []  # (scheduled, ttfe ms, R ms)


def _install_hook(kernel: bool) -> None:
    from sseprobe import FirstEvent, observe_first_events

    from .truth import _first_stamp

    def note(seen: FirstEvent) -> None:
        ts = _first_stamp(seen.events)
        if ts is None or seen.ttfe_ms is None:
            return
        # with kernel stamps the run clock read the arrival, not now: the offset to the wall clock
        # taken at that read is off by the chunk's lag
        offset = seen.wall_offset - (_LAG[0] if kernel else 0.0)
        _store.append((seen.scheduled, seen.ttfe_ms, (seen.base + seen.ttfe_ms / 1000.0 + offset - ts) * 1000.0))

    observe_first_events(note)


def worker(mode: str, url: str, n: int, delay_ms: float, rate: float, warm: float, window: float) -> dict[str, Any]:
    from sseprobe import CohortSpec, FlowOptions, Limits, Load, Phase, RunOptions, Schedule, Timeouts, measure

    if mode == "kernel":
        _install_kernel_stamps()
    _install_hook(mode == "kernel")
    total = warm + window
    load = Load(
        schedule=Schedule((Phase(total + 600, rate, rate),)), duration=total, grace=0.0, max_in_flight=2 * n + 100
    )
    c0 = time.process_time()
    m = measure(
        [CohortSpec("canonical", FlowOptions(flow="canonical", url=url))],
        load,
        Timeouts(connect=10, idle=120, session=300),
        Limits(),
        RunOptions(workers=1),
    )
    cpu = time.process_time() - c0
    judged = [x for x in _store if x[0] >= warm]
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


@contextmanager
def hogs(count: int) -> Iterator[None]:
    """``count`` CPU-bound processes for the duration; killed however the block ends."""
    procs = [subprocess.Popen([PY, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def bench_kstamp(
    repeats: int,
    quick: bool,
    run_worker: Callable[..., dict[str, Any]],
    target: Callable[..., AbstractContextManager[tuple[str, int]]],
) -> list[dict[str, Any]]:
    """TTFE error p50/p99 and CPU per session, current stamping against kernel stamps, idle and with
    HOGS CPU hogs; the two clients take turns within each repeat."""
    delay = 100.0
    n, rate, length = (1000, 250.0, 4.0) if quick else (5000, 500.0, 10.0)
    window = 3.0 if quick else 6.0
    raise_nofile()
    got: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cond in ("idle", "hogs"):
        for rep in range(repeats):
            modes = ("current", "kernel") if rep % 2 == 0 else ("kernel", "current")
            for mode in modes:
                knobs: tuple[str, ...] = ("--canonical-ttfe-ms", f"{delay:g}", "--canonical-ttfe-spread", "0")
                knobs += ("--canonical-events", "2", "--canonical-gap-ms", f"{length * 1000.0 - delay:g}")
                with target(*knobs, nofile=True) as (url, _pid), hogs(HOGS if cond == "hogs" else 0):
                    load = os.getloadavg()[0]
                    args = (mode, url, str(n), f"{delay:g}", f"{rate:g}", f"{length + 1:g}", f"{window:g}")
                    r = run_worker("kstamp", "worker", *args, timeout=300)
                r["load_avg"] = load
                print(f"[kstamp] {cond} {mode}: {r}", file=sys.stderr, flush=True)
                got.setdefault((cond, mode), []).append(r)
    return [row for cond in ("idle", "hogs") for row in _rows(cond, n, got)]


def _rows(cond: str, n: int, got: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    cur, ker = got[(cond, "current")], got[(cond, "kernel")]
    where = f"{n:,} open, {cond if cond == 'idle' else f'{HOGS} CPU hogs'}"

    def fig(rows: list[dict[str, Any]], key: str) -> float:
        return median([r[key] for r in rows])

    def noise(key: str) -> str:
        return f"kernel {spread([r[key] for r in ker])}; current {spread([r[key] for r in cur])}"

    loads = [r["load_avg"] for r in cur + ker]
    lags = f"loop lag p99 {fig(cur, 'loop_lag_p99'):.1f}, measured receive lag p99 {fig(ker, 'receive_lag_p99'):.1f}"
    return [
        {
            "bench": f"TTFE error p{p} (ms), {where}: kernel stamps",
            "sseprobe": fig(ker, f"R_p{p}"),
            "baseline": fig(cur, f"R_p{p}"),
            "baseline_name": "current stamping",
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
            "baseline_name": "current stamping",
            "ratio": fig(ker, "cpu_ms_per_session") / fig(cur, "cpu_ms_per_session"),
            "bar": "",
            "met": None,
            "noise": noise("cpu_ms_per_session") + f"; saturated: current {[r['saturated'] for r in cur]}",
        }
    ]


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        a = sys.argv[2:]
        emit(worker(a[0], a[1], int(a[2]), float(a[3]), float(a[4]), float(a[5]), float(a[6])))
