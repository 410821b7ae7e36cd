"""Benchmark 3: idle concurrent streams held by one process, and the memory each costs.

The target (its own process) answers every canonical session with its first event and then stalls
(``--canonical-p-stall 1 --stall-max-s 900``), so every stream stays open and silent. One client
process opens N such sessions and holds them; RSS per session = (VmRSS with N open - VmRSS before) / N,
read from /proc/self/status after a warm-up (a few sessions opened and closed) and a gc pass.

- ``sseprobe``: the engine as a load run uses it (``run_load``, open model at ``--rate``), so every
  session carries its record, decoder, accounting, task and connection;
- ``aiohttp``: a bare aiohttp ClientSession doing the same two requests per session and holding the
  stream with ``await resp.content.readany()``.

Both raise RLIMIT_NOFILE to the hard limit (20,000 here: one file per stream, plus a few).

Worker: python -m bench.concurrent worker CLIENT URL N RATE
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from typing import Any

from ._util import emit, event_loop_run, raise_nofile, rss_kib, target_stats

TIMEOUT_S = 60.0


async def _wait_open(url: str, stalls: int, n: int, started: float) -> float:
    """Until the target has stalled ``stalls`` streams in all and holds n open; seconds it took."""
    loop = asyncio.get_running_loop()
    while True:
        stats = await loop.run_in_executor(None, target_stats, url)
        if stats["canonical"]["stall"] >= stalls and stats["gauges"]["open_canonical_streams"] >= n:
            return time.perf_counter() - started
        if time.perf_counter() - started > TIMEOUT_S:
            raise SystemExit(f"only {stats['canonical']['stall']} of {n} streams open after {TIMEOUT_S:g}s")
        await asyncio.sleep(0.25)


async def _sseprobe(url: str, n: int, rate: float) -> dict[str, Any]:
    from sseprobe._config import FlowOptions, Limits, Timeouts
    from sseprobe.load.engine import CohortSpec, Load, RunControl, run_load
    from sseprobe.load.pacer import Phase, Schedule

    timeouts = Timeouts(connect=30, idle=900, session=1200)
    opts = FlowOptions(flow="canonical", url=url)
    cohort = [CohortSpec("canonical", opts)]
    # warm-up: code paths, caches and pools touched once, then closed again
    warm: list[Any] = []
    await run_load(cohort, Load(sessions=20, concurrency=20), warm.append, Timeouts(connect=10, idle=0.5, session=2))
    base = await _settle(url, 20)
    gc.collect()
    before = rss_kib()
    records: list[Any] = []
    control = RunControl()
    schedule = Schedule((Phase(n / rate, rate, rate),))
    load = Load(sessions=n, schedule=schedule, max_in_flight=n + 10, grace=5.0)
    t0 = time.perf_counter()
    run = asyncio.ensure_future(run_load(cohort, load, records.append, timeouts, Limits(), control))
    took = await _wait_open(url, base + n, n, t0)
    await asyncio.sleep(1.0)
    gc.collect()
    after = rss_kib()
    control.abort("bench done")
    await run
    streaming = sum(1 for r in records if r.ttfe_ms is not None)
    return {
        "before_kib": before,
        "after_kib": after,
        "open_s": took,
        "records": len(records),
        "had_first_event": streaming,
    }


async def _settle(url: str, warm: int) -> int:
    """Stall count after the warm-up sessions (they stalled too): the baseline to wait above."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.5)
    stats = await loop.run_in_executor(None, target_stats, url)
    return int(stats["canonical"]["stall"])


async def _aiohttp(url: str, n: int, rate: float) -> dict[str, Any]:
    import random

    import aiohttp
    import orjson

    held: list[Any] = []

    async def one(http: aiohttp.ClientSession, hold: bool) -> None:
        user, sid = f"raw-{random.getrandbits(48):012x}", f"{random.getrandbits(128):032x}"
        async with http.post(
            f"{url}/apps/vana/users/{user}/sessions/{sid}", data=b"{}", headers={"Content-Type": "application/json"}
        ) as r:
            await r.read()
        body = orjson.dumps(
            {
                "appName": "vana",
                "userId": user,
                "sessionId": sid,
                "newMessage": {"role": "user", "parts": [{"text": "test"}]},
                "streaming": True,
            }
        )
        async with http.post(
            f"{url}/run_sse", data=body, headers={"Content-Type": "application/json", "Accept": "text/event-stream"}
        ) as r:
            await r.content.readany()  # the first event
            if hold:
                held.append(r)
                await r.content.readany()  # silent until the end

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=None)
    ) as http:
        warm = [asyncio.ensure_future(one(http, False)) for _ in range(20)]
        await asyncio.gather(*warm)
        base = await _settle(url, 20)
        gc.collect()
        before = rss_kib()
        t0 = time.perf_counter()
        tasks = []
        for i in range(n):  # evenly spaced starts, as the open model does
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(http, True)))
        took = await _wait_open(url, base + n, n, t0)
        await asyncio.sleep(1.0)
        gc.collect()
        after = rss_kib()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "before_kib": before,
        "after_kib": after,
        "open_s": took,
        "records": len(tasks),
        "had_first_event": len(held),
    }


def worker(client: str, url: str, n: int, rate: float) -> dict[str, Any]:
    limit = raise_nofile()
    fn = {"sseprobe": _sseprobe, "aiohttp": _aiohttp}[client]
    out = event_loop_run(fn(url, n, rate))
    out.update(client=client, n=n, nofile=limit, kib_per_session=(out["after_kib"] - out["before_kib"]) / n)
    return out


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        emit(worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
