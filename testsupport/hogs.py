"""CPU-bound processes beside a block: the busy CI runner, for the tests and benchmarks of saturation."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cpu_hogs(count: int = 3, settle_s: float = 0.0) -> Iterator[None]:
    """``count`` processes spinning beside the block (after ``settle_s`` seconds to get going); killed
    and reaped however the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(settle_s)
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(10)
