"""A library call leaves the caller's process as it was: two different plans run one after the other in
one process, and the second knows nothing the first learned (per-run state), hears no observer the
first had, and neither leaves the open-file limit raised or the heap frozen."""

from __future__ import annotations

import asyncio
import gc
import resource
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sseprobe

from .test_session_create import _IdServer, only_server_ids


@contextmanager
def server_in_thread() -> Iterator[_IdServer]:
    """The ADK-only server (no backend-style create route) on its own loop in a thread, so the
    library's runs (each its own event loop) can call it from this one."""
    ready, done = threading.Event(), None
    box: list[_IdServer] = []
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        nonlocal done
        done = asyncio.Event()
        async with only_server_ids(collection_route=False) as server:
            box.append(server)
            ready.set()
            await done.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the test server did not start"
    try:
        yield box[0]
    finally:
        assert done is not None
        loop.call_soon_threadsafe(done.set)
        thread.join(30)
        loop.close()


def _plan(url: str, tmp_path: Path, name: str, sessions: int) -> sseprobe.RunPlan:
    overrides = {"flow": "canonical", "url": url, "session_create": "auto", "sessions": sessions}
    return sseprobe.plan_from(
        None,
        {**overrides, "concurrency": 1, "workers": 1, "quiet": True, "out": str(tmp_path / f"{name}.json")},
        "run",
    )


def test_two_plans_in_one_process_share_nothing(tmp_path: Path) -> None:
    limit_before = resource.getrlimit(resource.RLIMIT_NOFILE)
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    seen: list[sseprobe.FirstEvent] = []
    with server_in_thread() as server:
        stop = sseprobe.observe_first_events(seen.append)
        first = sseprobe.run(_plan(server.url, tmp_path, "first", 3), progress=None)
        stop()
        assert first.cohorts["canonical"].ok == 3
        assert server.collection_posts == 1  # the first session paid the missing route once, the rest knew
        assert len(seen) == 3
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == limit_before  # raised for the run only
        assert gc.get_freeze_count() == 0  # the heap is unfrozen once the run ends

        second = sseprobe.run(_plan(server.url, tmp_path, "second", 2), progress=None)
        assert second.cohorts["canonical"].ok == 2
        assert server.collection_posts == 2  # a new run learns again: nothing carried over from the first
        assert len(seen) == 3  # the observer stopped with the first run
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == limit_before
        assert gc.get_freeze_count() == 0
        assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers  # the run's own went


def test_making_a_plan_changes_nothing_in_the_process(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 512) if hard == resource.RLIM_INFINITY else min(soft, hard, 512)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        plan = sseprobe.plan_from(None, {"flow": "canonical", "url": "http://127.0.0.1:9", "quiet": True}, "run")
        assert plan.load.sessions == 100
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (lowered, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
