"""The peer for benchmark 6 (bench/tls.py): a Locust FastHttpUser reading one short SSE stream per task,
``GET /sse`` through the client's own ``iter_lines``, over http or https (``--host`` says which).

Certificates are not verified (``insecure``: the bench's throwaway CA is not in certifi's bundle); a
kept-alive connection pays no verification anyway. ``BENCH_OUT`` names the JSON file where the
CPU time of the test (test start to stop) and the count of complete streams are written.
"""

from __future__ import annotations

import json
import os
import time

from locust import FastHttpUser, constant, events, task

_OUT = os.environ.get("BENCH_OUT")
_count = {"ok": 0, "failed": 0}
_cpu: dict[str, float] = {}


class StreamUser(FastHttpUser):
    wait_time = constant(0)
    insecure = True  # the bench's throwaway CA is not in certifi's bundle
    network_timeout = 30.0
    connection_timeout = 10.0

    @task
    def stream(self) -> None:
        done = False
        for line in self.client.iter_lines("/sse", headers={"Accept": "text/event-stream"}):
            if line.startswith("event: done"):
                done = True
        _count["ok" if done else "failed"] += 1


@events.test_start.add_listener
def _start(environment, **_kw) -> None:  # noqa: ANN001
    _cpu["start"] = time.process_time()
    _count.update(ok=0, failed=0)


@events.test_stop.add_listener
def _stop(environment, **_kw) -> None:  # noqa: ANN001
    if not _OUT:
        return
    with open(_OUT, "w") as f:
        json.dump({"cpu_s": time.process_time() - _cpu["start"], **_count}, f)
