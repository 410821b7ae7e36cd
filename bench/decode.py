"""Benchmark 2: decoder + per-event accounting throughput, events per CPU-second of the client.

One bulk stream (bench/bulk_server.py, its own process) read to its end by, each in a fresh process:

- ``sseprobe``: a whole sseprobe session (``run_session``, generic flow) through its HTTP client:
  transport, SSE decoder, per-event accounting (StreamRules.scan, gaps, counts, TTFE);
- ``aiohttp-lines``: ``async for line in resp.content`` counting blank lines (no decoding at all);
- ``httpx-sse``: httpx + httpx-sse, ``async for sse in aiter_sse()``;
- ``decoder-only`` (in process, no socket): SSEDecoder.feed + StreamRules.scan over 64 KiB pieces.

Figure: events / CPU seconds of the client process (user + system), i.e. events/s on one core.
All clients run on the same event loop (the one sseprobe uses: uvloop when installed).

Worker: python -m bench.decode worker CLIENT URL EVENTS
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ._util import emit, event_loop_run

CLIENTS = ("sseprobe", "aiohttp-lines", "httpx-sse")


async def _sseprobe(url: str) -> tuple[int, str]:
    from sseprobe._config import FlowOptions, Limits, Timeouts
    from sseprobe._record import SessionRecord
    from sseprobe.load.engine import make_client
    from sseprobe.wire.session import run_session

    timeouts, limits = Timeouts(connect=10, idle=60, session=600), Limits()
    opts = FlowOptions(flow="generic", url=url, method="GET")
    async with make_client(timeouts, limits, time.perf_counter) as http:
        rec = SessionRecord("bulk", 0, scheduled=time.perf_counter())
        await run_session(http, opts, timeouts, limits, rec)
    return rec.events, str(rec.outcome) + (f" {rec.error}" if rec.error else "")


async def _aiohttp_lines(url: str) -> tuple[int, str]:
    import aiohttp

    n = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
        async with http.get(url, headers={"Accept": "text/event-stream"}) as resp:
            async for line in resp.content:
                if line == b"\n":
                    n += 1
    return n, "ok"


async def _httpx_sse(url: str) -> tuple[int, str]:
    import httpx
    from httpx_sse import aconnect_sse

    n = 0
    async with httpx.AsyncClient(timeout=None) as client:
        async with aconnect_sse(client, "GET", url) as source:
            async for _sse in source.aiter_sse():
                n += 1
    return n, "ok"


def worker(client: str, url: str, events: int) -> dict[str, Any]:
    fn = {"sseprobe": _sseprobe, "aiohttp-lines": _aiohttp_lines, "httpx-sse": _httpx_sse}[client]

    async def timed() -> tuple[int, str, float, float]:
        c0, w0 = time.process_time(), time.perf_counter()
        n, outcome = await fn(url)
        return n, outcome, time.process_time() - c0, time.perf_counter() - w0

    n, outcome, cpu, wall = event_loop_run(timed())
    if n != events:
        raise SystemExit(f"{client}: {n} events of {events} ({outcome})")
    return {"client": client, "events": n, "cpu_s": cpu, "wall_s": wall, "outcome": outcome, "ev_per_cpu_s": n / cpu}


def decoder_only(shape: str, events: int) -> dict[str, Any]:
    """SSEDecoder.feed + StreamRules.scan over the bulk payload in 64 KiB pieces, no socket."""
    from sseprobe.wire.flows import StreamRules
    from sseprobe.wire.sse import SSEDecoder

    from .bulk_server import payload

    data = payload(shape, events)
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    rules = StreamRules(complete_on=None, close_ok=True)
    best = 0.0
    for _ in range(3):
        dec, scan, n = SSEDecoder(), rules.scan, 0
        c0 = time.process_time()
        for piece in pieces:
            evs = dec.feed(piece)
            if evs:
                n += len(evs)
                scan(evs)
        cpu = time.process_time() - c0
        assert n == events, n
        best = max(best, n / cpu)
    return {"client": "decoder-only", "events": events, "ev_per_cpu_s": best}


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        emit(worker(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif sys.argv[1] == "decoder-only":
        emit(decoder_only(sys.argv[2], int(sys.argv[3])))
