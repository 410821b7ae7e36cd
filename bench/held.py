"""Benchmark 10: CPU per arrival held at ``--max-in-flight``, from 100 to 15,000 sessions in flight.

The real :class:`~sseprobe.load.drivers.OpenDriver` drives a stand-in for ``Sessions`` whose sessions are
futures: N are open and held, arrivals come due faster than sessions end, and a finisher ends one session per
loop turn. Each held arrival then waits for a slot once. The baseline is the same driver loop waiting the
way it once did, on every task in flight (``asyncio.wait(tasks, FIRST_COMPLETED)``: O(in flight) per wait).
Figures are CPU microseconds per held arrival (``time.process_time``), medians over repeats.

  python -m bench.held [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator
from typing import Any

from sseprobe.load.drivers import OpenDriver, RunControl
from sseprobe.load.pacer import constant

from ._util import median, spread


class _Sessions:
    """What OpenDriver uses of Sessions: sessions are futures a finisher completes one per loop turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop, total: int) -> None:
        self.loop = loop
        self.control = RunControl()
        self.tasks: set[asyncio.Future[None]] = set()
        self.open: list[asyncio.Future[None]] = []
        self.total = total
        self._slot: asyncio.Future[None] | None = None

    def more(self, t: float) -> bool:
        return self.control.started < self.total

    def clock(self) -> float:
        return 1e12  # every arrival is already due: the driver never sleeps

    def spawn(self, scheduled: float) -> asyncio.Future[None]:
        self.control.started += 1
        fut: asyncio.Future[None] = self.loop.create_future()
        self.tasks.add(fut)
        self.open.append(fut)
        return fut

    def slot_freed(self) -> asyncio.Future[None]:
        if self._slot is None or self._slot.done():
            self._slot = self.loop.create_future()
        return self._slot

    def finish_one(self) -> None:
        if self.open:
            fut = self.open.pop(0)
            self.tasks.discard(fut)
            self.control.finished += 1
            fut.set_result(None)
            if self._slot is not None and not self._slot.done():
                self._slot.set_result(None)


async def _old_drive(schedule: Any, cap: int, sessions: _Sessions) -> None:
    """The baseline: a held arrival waits on every task in flight."""
    for t in schedule.arrivals():
        if not sessions.more(t):
            return
        while sessions.control.in_flight >= cap:
            await asyncio.wait(list(sessions.tasks), return_when=asyncio.FIRST_COMPLETED)
        sessions.spawn(t)


def _measure(in_flight: int, held: int, old: bool) -> float:
    loop = asyncio.new_event_loop()
    sessions = _Sessions(loop, in_flight + held)
    schedule = constant(rate=1e9, duration=1e3)

    filled = [0.0]

    async def finisher() -> None:
        while sessions.control.started < in_flight:  # fill up first: not counted
            await asyncio.sleep(0)
        filled[0] = time.process_time()
        while sessions.open or sessions.control.started < sessions.total:
            sessions.finish_one()
            await asyncio.sleep(0)

    async def main() -> float:
        fin = loop.create_task(finisher())
        if old:
            await _old_drive(schedule, in_flight, sessions)
        else:
            await OpenDriver(schedule, in_flight).drive(sessions)  # type: ignore[arg-type]
        spent = time.process_time() - filled[0]
        await fin
        return spent

    try:
        return loop.run_until_complete(main()) / held * 1e6
    finally:
        loop.close()


def rows(repeats: int, sizes: Iterator[int] | tuple[int, ...] = (100, 1_000, 5_000, 15_000)) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        held = 2_000
        new = [_measure(n, held, old=False) for _ in range(repeats)]
        old = [_measure(n, held, old=True) for _ in range(max(1, repeats if n <= 5_000 else 1))]
        out.append({"in_flight": n, "new_us": median(new), "new_spread": spread(new), "old_us": median(old),
                    "old_spread": spread(old)})  # fmt: skip
    return out


def bench_rows(repeats: int, quick: bool) -> list[dict[str, Any]]:
    """``python -m bench --only held``: CPU per held arrival at 15,000 in flight against 100 (bar: flat, <= 1.5x)."""
    got = rows(repeats, (100, 1_000) if quick else (100, 15_000))
    low, high = got[0], got[-1]
    ratio = high["new_us"] / low["new_us"]
    return [
        {
            "bench": f"held arrival at {high['in_flight']:,} in flight: CPU us per arrival",
            "sseprobe": high["new_us"],
            "baseline": low["new_us"],
            "baseline_name": f"the same at {low['in_flight']:,} in flight",
            "ratio": ratio,
            "bar": "<= 1.5x (flat)",
            "met": ratio <= 1.5,
            "noise": f"now {high['new_spread']} / {low['new_spread']}; waiting on every task: "
            f"{high['old_us']:.0f} us at {high['in_flight']:,}, {low['old_us']:.0f} us at {low['in_flight']:,}",
        }
    ]


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.held", description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    import os

    print(f"load average {os.getloadavg()[0]:.2f}")
    print("in flight | CPU per held arrival: slot future (now) | wait on every task (before) | before / now")
    for r in rows(a.repeats):
        print(f"{r['in_flight']:>9,} | {r['new_us']:8.1f} us ({r['new_spread']}) | {r['old_us']:10.1f} us "
              f"({r['old_spread']}) | {r['old_us'] / r['new_us']:.0f}x")  # fmt: skip


if __name__ == "__main__":
    main()
