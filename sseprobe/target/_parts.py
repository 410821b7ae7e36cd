"""The target's parts: SSE frames, the legacy dialects, ADK event templates, request checks, legacy runs."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, NotRequired, TypedDict

import orjson
from aiohttp import web
from hdrh.histogram import HdrHistogram

from ..verdict.schema import JSONObject

__all__ = ["PROCESSING", "UPSTREAM_500"]  # and the helpers below, for _app and _real only

VANA_APP = "vana"
UPSTREAM_500 = "Server error '500 Internal Server Error' for url 'http://127.0.0.1:8080/run_sse'"


def iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts).isoformat()


def named(event: str, data: Mapping[str, object], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\nevent: {event}\ndata: " if event_id else f"event: {event}\ndata: "
    return head.encode() + orjson.dumps(data) + b"\n\n"


def unnamed(data: Mapping[str, object]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class Dialect(NamedTuple):
    """The non-progress frames of a legacy stream endpoint: they differ between the two generations."""

    connected: Callable[[str], bytes]
    keepalive: Callable[[], bytes]
    closing: Callable[[str, bool], bytes]  # (session, abnormal end)


def connection(status: str) -> Callable[..., bytes]:
    return lambda sid, *_: named("agent_network_connection", {"status": status, "session_id": sid, "timestamp": iso()})


def older_closing(sid: str, abnormal: bool) -> bytes:
    bye = unnamed({"type": "connection", "status": "disconnected", "sessionId": sid, "timestamp": iso()})
    if not abnormal:
        return bye
    error = {"type": "error", "message": "Stream error: research task ended unexpectedly", "timestamp": iso()}
    return unnamed(error) + bye


ADK_DIALECT = Dialect(
    connection("connected"),
    lambda: named("keepalive", {"timestamp": iso()}),
    connection("disconnected"),
)
OLDER_DIALECT = Dialect(
    lambda sid: unnamed({"type": "connection", "status": "connected", "sessionId": sid, "timestamp": iso()}),
    lambda: unnamed({"type": "heartbeat", "timestamp": iso()}),
    older_closing,
)


# the legacy run's first, bookkeeping event: the team leader picks the request up (no answer content)
PROCESSING: JSONObject = {
    "agents": [
        {
            "agent_id": "team_leader",
            "agent_type": "coordinator",
            "name": "Team Leader",
            "status": "active",
            "progress": 0.1,
            "current_task": "Processing request",
        }
    ]
}


def chunk(i: int) -> str:
    return f"Finding {i + 1}: simulated research result. "


@lru_cache(maxsize=64)
def adk_templates(total: int) -> tuple[bytes, ...]:
    """A run's ADK Events serialised once per length, cut before ``timestamp`` (the clock goes last).

    ``@inv@`` stands for the session's invocation uuid, ``@id@`` for an event id (that uuid ending in the index).
    """
    out = []
    for i in range(total):
        final = i == total - 1
        text = "".join(chunk(j) for j in range(total)) if final else chunk(i)
        event: JSONObject = {"content": {"parts": [{"text": text}], "role": "model"}}
        if final:
            event["usageMetadata"] = {
                "promptTokenCount": 12,
                "candidatesTokenCount": 9 * total,
                "totalTokenCount": 12 + 9 * total,
            }
        else:
            event["partial"] = True
        event.update(
            invocationId="e-@inv@",
            author="research_agent",
            actions={"stateDelta": {}, "artifactDelta": {}, "requestedAuthConfigs": {}},
            id="@id@",
        )
        out.append(b"data: " + orjson.dumps(event)[:-1] + b',"timestamp":')
    return tuple(out)


def done_frame() -> bytes:
    return named("done", {"status": "completed", "timestamp": iso()})


class Reject(Exception):
    """Raised by handlers to answer early with a JSON error; the middleware turns it into the response."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.response = json_response(status, body, headers)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


# How late this process woke for its injected delays (µs): on a machine whose CPUs are held by other
# processes the target itself runs late, and a client on the same machine (the demo) adds that to its
# error band (the target's lateness is part of that instrument). One target per process: one histogram.
LATE = HdrHistogram(1, 3_600_000_000, 2)


def late_ms() -> dict[str, float]:
    """How late the injected delays were, p50 and p99 in ms (empty before the first)."""
    return {f"p{q:g}": LATE.get_value_at_percentile(q) / 1000 for q in (50, 99)} if LATE.total_count else {}


async def sleep_until(deadline: float) -> None:
    """Sleep to an absolute loop time, so per-event work never accumulates into the knob delays."""
    loop = asyncio.get_running_loop()
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
        LATE.record_value(min(max(int((loop.time() - deadline) * 1e6), 1), 3_600_000_000))


@dataclass(eq=False)
class Run:
    """One legacy research session: its replay history, live subscribers and background producer."""

    history: deque[bytes]
    subscribers: set[asyncio.Queue[bytes | None]] = field(default_factory=set)
    producer: asyncio.Task[None] | None = None
    closed: bool = False  # premature close: streams end after replaying the history


RUN_FIELDS = (("appName", "app_name"), ("userId", "user_id"), ("sessionId", "session_id"))


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise Reject(
            422,
            {
                "detail": [
                    {"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "ctx": {"error": str(exc)}}
                ]
            },
        ) from None


class FieldError(TypedDict):
    """One entry of a 422 answer's ``detail``, in FastAPI's shape."""

    type: str
    loc: list[str | int]
    msg: str
    input: NotRequired[object]
    ctx: NotRequired[dict[str, str]]


class AdkSession(TypedDict):
    """ADK's Session object, as ``POST .../sessions`` answers it."""

    id: str
    appName: str
    userId: str
    state: JSONObject  # the client's own
    events: list[JSONObject]
    lastUpdateTime: float


def run_request_errors(body: Any) -> list[FieldError]:
    """FastAPI-like validation of a RunAgentRequest (camelCase aliases or snake_case names)."""
    if not isinstance(body, dict):
        return [
            {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
            }
        ]
    errors = []
    for camel, snake in RUN_FIELDS:
        value = body.get(camel, body.get(snake))
        if not isinstance(value, str):
            errors.append(field_error(camel, value, "string_type", "Input should be a valid string"))
    message = body.get("newMessage", body.get("new_message"))
    if not isinstance(message, dict) or not isinstance(message.get("parts"), list) or not message["parts"]:
        errors.append(field_error("newMessage", message, "value_error", "newMessage needs a list of parts"))
    return errors


def field_error(name: str, value: Any, kind: str, msg: str) -> FieldError:
    if value is None:
        return {"type": "missing", "loc": ["body", name], "msg": "Field required"}
    return {"type": kind, "loc": ["body", name], "msg": msg, "input": value}


def require_vana(app: str) -> None:
    if app != VANA_APP:
        raise Reject(404, {"detail": f"App '{app}' not found"})


def adk_session(app: str, user: str, sid: str, state: JSONObject) -> AdkSession:
    return {"id": sid, "appName": app, "userId": user, "state": state, "events": [], "lastUpdateTime": time.time()}


def publish(run: Run, event: str, data: JSONObject) -> None:
    """Broadcast one legacy event; its id carries the truth time (``<event>_<epoch>``)."""
    now = time.time()
    frame = named(event, {**data, "timestamp": iso(now)}, f"{event}_{now!r}")
    run.history.append(frame)
    for queue in run.subscribers:
        queue.put_nowait(frame)


def legacy_fault(run: Run, fault: str) -> None:
    if fault == "stream_error":
        publish(run, "error", {"error": UPSTREAM_500})
    elif fault == "premature_close":
        close_streams(run)
    # a stall publishes nothing more: subscribers only get keepalives


def close_streams(run: Run) -> None:
    run.closed = True
    for queue in run.subscribers:
        queue.put_nowait(None)
