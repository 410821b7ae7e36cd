"""The peer: a Locust SSE user for the canonical flow, written the way Locust's docs and community do it.

FastHttpUser (geventhttpclient), session create, then ``POST /run_sse`` streamed with the client's own
``iter_lines`` helper; the time to the first ``data:`` line is fired as a request event ("SSE" / "TTFE"),
the whole session as another ("SSE" / "session"). Run by ``bench/peer.py``; not part of sseprobe.

For the truth check only, the user also notes, at its first event, the wall clock and the event's
``timestamp`` (the target's own stamp right before the write); ``SSEPROBE_BENCH_OUT`` names the JSON file
where that, the CPU time of the test and Locust's own TTFE figures are written at the end.
"""

from __future__ import annotations

import json
import os
import time
import uuid

from locust import FastHttpUser, constant, events, task

_OUT = os.environ.get("SSEPROBE_BENCH_OUT")
_truth: list[tuple[float, float, float]] = []  # (reported TTFE ms, send wall clock, the event's timestamp)
_count = {"ok": 0, "failed": 0}
_cpu: dict[str, float] = {}


class CanonicalSSEUser(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 60.0
    connection_timeout = 10.0

    @task
    def canonical_session(self) -> None:
        user, session = f"locust-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
        self.client.post(
            f"/apps/vana/users/{user}/sessions/{session}", json={}, name="/apps/vana/users/[user]/sessions/[session]"
        )
        body = {
            "appName": "vana",
            "userId": user,
            "sessionId": session,
            "newMessage": {"role": "user", "parts": [{"text": "test"}]},
            "streaming": True,
        }
        fire = self.environment.events.request.fire
        send_wall, t0 = time.time(), time.perf_counter()
        first, done = True, False
        for line in self.client.iter_lines(
            "/run_sse", method="POST", json=body, name="/run_sse", headers={"Accept": "text/event-stream"}
        ):
            if first and line.startswith("data:"):
                ttfe = (time.perf_counter() - t0) * 1000
                fire(request_type="SSE", name="TTFE", response_time=ttfe, response_length=0, exception=None, context={})
                first = False
                if _OUT:
                    stamp = json.loads(line[5:]).get("timestamp")
                    if isinstance(stamp, (int, float)):
                        _truth.append((ttfe, send_wall, float(stamp)))
            elif line.startswith("event: done"):
                done = True
        elapsed = (time.perf_counter() - t0) * 1000
        fire(
            request_type="SSE",
            name="session",
            response_time=elapsed,
            response_length=0,
            exception=None if done else RuntimeError("stream ended without done"),
            context={},
        )
        _count["ok" if done else "failed"] += 1


@events.test_start.add_listener
def _start(environment, **_kw) -> None:  # noqa: ANN001
    _cpu["start"] = time.process_time()
    _cpu["wall"] = time.perf_counter()
    _count.update(ok=0, failed=0)


@events.test_stop.add_listener
def _stop(environment, **_kw) -> None:  # noqa: ANN001
    _cpu["stop"] = time.process_time()
    _cpu["wall_stop"] = time.perf_counter()
    if not _OUT:
        return
    ttfe = environment.stats.get("TTFE", "SSE")
    doc = {
        "cpu_s": _cpu["stop"] - _cpu["start"],
        "wall_s": _cpu["wall_stop"] - _cpu["wall"],
        "ok": _count["ok"],
        "failed": _count["failed"],
        "locust_ttfe_ms": {f"p{int(p * 100)}": ttfe.get_response_time_percentile(p) for p in (0.5, 0.95, 0.99)},
        "truth": _truth,
    }
    with open(_OUT, "w") as f:
        json.dump(doc, f)
