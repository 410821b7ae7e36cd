"""``target --access-log FILE``: one JSON line per stream, in Cloud Logging's LogEntry shape.

What ``sources/maps/cloud-logging.toml`` reads, so the real-traffic path is testable end to end: run
traffic at the target, then ``compare --from-log FILE --log-map cloud-logging``. One line per valid
start request (a refused one too, with its 500 or 429), written when the stream ends: a canonical
stream when its handler returns (or is cancelled: the client left), a legacy one when its producer
ends (``research_complete``, an error, a premature close or a stall's end). Fields:

  timestamp                     when the start request arrived (RFC 3339, UTC)
  httpRequest.status            the start request's status (200, or the refusal's)
  httpRequest.latency           start to the stream's end, as Cloud Logging's Duration ("0.123456s")
  jsonPayload.stream_mode       canonical | legacy
  jsonPayload.first_answer_ms   start to the first event with answer content (null: none)
  jsonPayload.completed         the stream reached its success (``done`` / ``research_complete``)
  jsonPayload.error             the in-stream error's message (null: none)

Written through a 64 KiB buffer, flushed at least once a second and when the target stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import orjson

from ._parts import Reject

__all__ = ["AccessLog", "Entry", "answered", "completed", "failed"]

LOG_NAME = "projects/sseprobe-target/logs/sse_stream"
FLUSH_S = 1.0


@dataclass(slots=True)
class Entry:
    """One stream's line, filled in as the stream goes."""

    log: AccessLog
    mode: str
    method: str
    url: str
    t0: float  # loop time of the start request
    wall: float  # its wall-clock time
    status: int = 200
    first_ms: float | None = None
    completed: bool = False
    error: str | None = None
    written: bool = False


_CURRENT: ContextVar[Entry | None] = ContextVar("sseprobe_target_access", default=None)


class AccessLog:
    def __init__(self, path: str | Path) -> None:
        self.file: IO[bytes] = open(path, "ab", buffering=1 << 16)  # noqa: SIM115 - closed by close()
        self.flushed = time.monotonic()

    @contextmanager
    def stream(self, mode: str, method: str, url: str, t0: float, handed_off: bool = False) -> Iterator[Entry]:
        """The entry of the stream this block starts; written at the block's end unless ``handed_off``
        (a legacy run: written when its producer task ends, ``written_by_task``), and always when the block raises."""
        loop_now = asyncio.get_running_loop().time()
        entry = Entry(self, mode, method, url, t0, time.time() - (loop_now - t0))
        token = _CURRENT.set(entry)
        try:
            yield entry
        except Reject as reject:
            entry.status = reject.response.status
            self.write(entry)
            raise
        except BaseException:
            self.write(entry)
            raise
        else:
            if not handed_off:
                self.write(entry)
        finally:
            _CURRENT.reset(token)

    def write(self, entry: Entry) -> None:
        if entry.written or self.file.closed:
            return
        entry.written = True
        latency = max(0.0, asyncio.get_running_loop().time() - entry.t0)
        line = {
            "timestamp": datetime.fromtimestamp(entry.wall, UTC).isoformat().replace("+00:00", "Z"),
            "severity": "ERROR" if entry.status >= 500 or entry.error else "INFO",
            "logName": LOG_NAME,
            "httpRequest": {
                "requestMethod": entry.method,
                "requestUrl": entry.url,
                "status": entry.status,
                "latency": f"{latency:.6f}s",
            },
            "jsonPayload": {
                "stream_mode": entry.mode,
                "first_answer_ms": None if entry.first_ms is None else round(entry.first_ms, 3),
                "completed": entry.completed,
                "error": entry.error,
            },
        }
        self.file.write(orjson.dumps(line) + b"\n")
        if (now := time.monotonic()) - self.flushed >= FLUSH_S:
            self.file.flush()
            self.flushed = now

    def written_by_task(self, entry: Entry) -> Callable[[asyncio.Task[None]], None]:
        """A done callback writing a handed-off entry (a legacy run's) when its producer task ends."""
        return lambda _task: self.write(entry)

    async def on_cleanup(self, _app: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


def answered() -> None:
    """The current stream sent its first event with answer content (only the first counts)."""
    entry = _CURRENT.get()
    if entry is not None and entry.first_ms is None:
        entry.first_ms = (asyncio.get_running_loop().time() - entry.t0) * 1000.0


def completed() -> None:
    entry = _CURRENT.get()
    if entry is not None:
        entry.completed = True


def failed(error: str) -> None:
    entry = _CURRENT.get()
    if entry is not None:
        entry.error = error[:200]
