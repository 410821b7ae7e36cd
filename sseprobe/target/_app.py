"""Built-in reference target: an aiohttp app emulating the "Vana" service of PROTOCOLS.md.

It serves the README demo, every test and the benchmarks, so it must be faithful on the wire,
reproducible (all randomness from one ``numpy`` generator seeded by ``TargetConfig.seed``),
cheap per event, and bounded in memory however many sessions a load run pushes through it.
Canonical events carry ``timestamp`` = ``time.time()`` taken right before their write, and
legacy events carry it in their ``id`` (``<event>_<epoch>``): that is the truth TTFE is checked against.
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import orjson
from aiohttp import web
from hdrh.histogram import HdrHistogram

__all__ = ["CohortKnobs", "TargetConfig", "TargetStats", "Target", "PROFILES", "make_app", "running_target", "serve"]

VANA_APP = "vana"
REPLAY = 10  # events replayed to a new legacy subscriber
PROFILES = ("default", "vana-real")  # vana-real: what the real backend was seen doing (target/_real.py)
SESSION_TTL_S = 600.0  # a session unused this long is forgotten
MAX_SESSIONS = 100_000  # beyond, the least recently used session is forgotten
MAX_RUNS = 50_000  # legacy runs kept at once; the oldest is evicted beyond
RUN_LINGER_S = 30.0  # a finished legacy run nobody watches stays this long for a late subscriber
STREAM_FAULTS = ("stream_error", "premature_close", "stall")
_COHORTS = ("canonical", "legacy")
_UPSTREAM_500 = "Server error '500 Internal Server Error' for url 'http://127.0.0.1:8080/run_sse'"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _validate(obj: Any) -> None:
    """Reject wrong types and out-of-range knobs up front: the CLI and PATCH both rely on it."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        kind = str(f.type)  # annotations are strings here (from __future__ import annotations)
        if not isinstance(value, _KINDS[kind]) or isinstance(value, bool) and kind != "bool":
            raise TypeError(f"{f.name}: expected {kind}, got {value!r}")
        if kind == "float":
            setattr(obj, f.name, float(value))
        low, high = _bounds(f.name)
        if kind in ("float", "int", "float | None") and value is not None and not low <= float(value) <= high:
            raise ValueError(f"{f.name}: {value!r} outside [{low}, {high}]")


def _bounds(name: str) -> tuple[float, float]:
    """Probabilities (``p_*``, ``*_rate``) lie in [0, 1], a run has at least one event, the rest is >= 0."""
    if name.startswith("p_") or name.endswith("_rate"):
        return 0, 1
    return (1, math.inf) if name == "events" else (0, math.inf)


@dataclass
class CohortKnobs:
    """Latency and fault knobs of one cohort. Faults are drawn exclusively, so each group sums to <= 1."""

    ttfe_ms: float = 50.0
    ttfe_spread: float = 0.3
    events: int = 5
    gap_ms: float = 20.0
    p_5xx: float = 0.0
    p_429: float = 0.0
    p_stream_error: float = 0.0
    p_premature_close: float = 0.0
    p_stall: float = 0.0

    def __post_init__(self) -> None:
        _validate(self)
        if self.p_5xx + self.p_429 > 1 or sum(getattr(self, "p_" + name) for name in STREAM_FAULTS) > 1:
            raise ValueError("p_5xx + p_429 and p_stream_error + p_premature_close + p_stall must each be <= 1")


_KINDS: dict[str, tuple[type[Any], ...]] = {
    "float": (int, float),
    "int": (int,),
    "bool": (bool,),
    "str": (str,),
    "str | None": (str, type(None)),
    "float | None": (int, float, type(None)),
    "CohortKnobs": (CohortKnobs,),
}


@dataclass
class TargetConfig:
    canonical: CohortKnobs = field(default_factory=CohortKnobs)
    legacy: CohortKnobs = field(default_factory=CohortKnobs)
    canonical_enabled: bool = True
    adk_style: bool = False
    keepalive_s: float = 30.0
    stall_max_s: float = 600.0
    rate_limit: int = 0
    require_token: str | None = None
    health_ci_shape: bool = False
    unhealthy: bool = False
    cloud_logging: bool = True
    seed: int = 0
    # the real service's quirks (profile "vana-real"; see target/_real.py)
    profile: str = "default"
    model_delay_ms: float | None = None
    model_fail_rate: float = 0.0
    legacy_model_limit: int = 10
    legacy_model_window_s: float = 60.0
    legacy_model_wait_s: float = 30.0

    def __post_init__(self) -> None:
        _validate(self)
        if self.keepalive_s <= 0 or self.stall_max_s <= 0:
            raise ValueError("keepalive_s and stall_max_s must be > 0")
        if self.profile not in PROFILES:
            raise ValueError(f"profile: {self.profile!r} is not one of {', '.join(PROFILES)}")
        if self.legacy_model_window_s <= 0:
            raise ValueError("legacy_model_window_s must be > 0")


def _config_from_dict(data: dict[str, Any]) -> TargetConfig:
    """Build a validated config; unknown keys raise TypeError from the dataclass constructors."""
    return TargetConfig(**{**data, **{c: CohortKnobs(**data[c]) for c in _COHORTS}})


def _patched(config: TargetConfig, patch: Any) -> TargetConfig:
    """Return ``config`` with a PATCH document deep-merged into it (cohorts merge knob by knob)."""
    if not isinstance(patch, dict):
        raise TypeError("expected a JSON object")
    merged = asdict(config)
    for key, value in patch.items():
        if key not in merged:
            raise TypeError(f"unknown key: {key}")
        merged[key] = {**merged[key], **value} if key in _COHORTS and isinstance(value, dict) else value
    return _config_from_dict(merged)


@dataclass
class CohortCounters:
    started: int = 0  # valid start requests (each gets the fault draws)
    completed: int = 0  # terminal success sent
    http_5xx: int = 0
    http_429: int = 0
    stream_error: int = 0
    premature_close: int = 0
    stall: int = 0
    model_failed: int = 0  # vana-real: the model failed (legacy masks it as a success without content)
    model_limited: int = 0  # vana-real legacy: refused by the model limiter after its wait


@dataclass
class TargetStats:
    canonical: CohortCounters = field(default_factory=CohortCounters)
    legacy: CohortCounters = field(default_factory=CohortCounters)
    rate_limited: int = 0
    unauthorized: int = 0


@dataclass
class Target:
    url: str
    port: int
    config: TargetConfig
    stats: TargetStats


class _Reject(Exception):
    """Raised by handlers to answer early with a JSON error; the middleware turns it into the response."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.response = _json(status, body, headers)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts).isoformat()


def _named(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\nevent: {event}\ndata: " if event_id else f"event: {event}\ndata: "
    return head.encode() + orjson.dumps(data) + b"\n\n"


def _unnamed(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class _Dialect(NamedTuple):
    """The non-progress frames of a legacy stream endpoint: they differ between the two generations."""

    connected: Callable[[str], bytes]
    keepalive: Callable[[], bytes]
    closing: Callable[[str, bool], bytes]  # (session, abnormal end)


def _connection(status: str) -> Callable[..., bytes]:
    return lambda sid, *_: _named(
        "agent_network_connection", {"status": status, "session_id": sid, "timestamp": _iso()}
    )


def _older_closing(sid: str, abnormal: bool) -> bytes:
    bye = _unnamed({"type": "connection", "status": "disconnected", "sessionId": sid, "timestamp": _iso()})
    if not abnormal:
        return bye
    error = {"type": "error", "message": "Stream error: research task ended unexpectedly", "timestamp": _iso()}
    return _unnamed(error) + bye


_ADK_DIALECT = _Dialect(
    _connection("connected"),
    lambda: _named("keepalive", {"timestamp": _iso()}),
    _connection("disconnected"),
)
_OLDER_DIALECT = _Dialect(
    lambda sid: _unnamed({"type": "connection", "status": "connected", "sessionId": sid, "timestamp": _iso()}),
    lambda: _unnamed({"type": "heartbeat", "timestamp": _iso()}),
    _older_closing,
)


# the legacy run's first, bookkeeping event: the team leader picks the request up (no answer content)
PROCESSING: dict[str, Any] = {
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


def _chunk(i: int) -> str:
    return f"Finding {i + 1}: simulated research result. "


@lru_cache(maxsize=64)
def _adk_templates(total: int) -> tuple[bytes, ...]:
    """A run's ADK Events serialised once per length, cut before ``timestamp`` (the clock goes last).

    ``@inv@`` stands for the session's invocation uuid, ``@id@`` for an event id (that uuid ending in the index).
    """
    out = []
    for i in range(total):
        final = i == total - 1
        text = "".join(_chunk(j) for j in range(total)) if final else _chunk(i)
        event: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
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


def _done_frame() -> bytes:
    return _named("done", {"status": "completed", "timestamp": _iso()})


# How late this process woke for its injected delays (µs): on a machine whose CPUs are held by other
# processes the target itself runs late, and a client on the same machine (the demo) adds that to its
# error band (the target's lateness is part of that instrument). One target per process: one histogram.
LATE = HdrHistogram(1, 3_600_000_000, 2)


async def _sleep_until(deadline: float) -> None:
    """Sleep to an absolute loop time, so per-event work never accumulates into the knob delays."""
    loop = asyncio.get_running_loop()
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
        LATE.record_value(min(max(int((loop.time() - deadline) * 1e6), 1), 3_600_000_000))


@dataclass(eq=False)
class _Run:
    """One legacy research session: its replay history, live subscribers and background producer."""

    history: deque[bytes]
    subscribers: set[asyncio.Queue[bytes | None]] = field(default_factory=set)
    producer: asyncio.Task[None] | None = None
    closed: bool = False  # premature close: streams end after replaying the history


class _Vana:
    """State and handlers of one target instance (the default profile; target/_real.py subclasses it)."""

    replay = REPLAY  # past events a new legacy subscriber receives
    flag_gates_run_sse = True  # the canonical flag off makes /run_sse answer 501
    legacy_headers = _SSE_HEADERS

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self.stats = TargetStats()
        self.rng = np.random.default_rng(config.seed)
        self.csrf_cookie = f"csrf_token={self.rng.bytes(16).hex()}; Path=/; SameSite=Strict"
        self.sessions: OrderedDict[tuple[str, str, str], float] = OrderedDict()  # -> expiry (monotonic)
        self.runs: OrderedDict[str, _Run] = OrderedDict()
        self.windows: dict[str, tuple[float, int]] = {}  # client IP -> (window start, requests)
        self.open_streams = 0
        self.subscribers = 0
        self.closing = asyncio.Event()

    # -- cross-cutting: auth, rate limit, CSRF cookie, early errors --------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        try:
            if not request.path.startswith(("/health", "/_target/")):
                self._guard(request)
            response: web.StreamResponse = await handler(request)
            return response
        except _Reject as reject:
            return reject.response

    def _guard(self, request: web.Request) -> None:
        cfg = self.config
        if cfg.rate_limit and not self._within_rate_limit(request.remote or "", cfg.rate_limit):
            self.stats.rate_limited += 1
            detail = f"Rate limit exceeded: {cfg.rate_limit} requests per 60 seconds"
            raise _Reject(429, {"detail": detail}, {"Retry-After": "60"})
        if cfg.require_token and request.headers.get("Authorization") != f"Bearer {cfg.require_token}":
            self.stats.unauthorized += 1
            raise _Reject(401, {"detail": "Not authenticated"}, {"WWW-Authenticate": "Bearer"})

    def _within_rate_limit(self, ip: str, limit: int) -> bool:
        """Fixed 60 s window per client IP, starting at its first request (as the backend limits)."""
        now = time.monotonic()
        if len(self.windows) > 4096:
            self.windows = {k: w for k, w in self.windows.items() if now - w[0] < 60}
        start, count = self.windows.get(ip, (now, 0))
        if now - start >= 60:
            start, count = now, 0
        self.windows[ip] = (start, count + 1)
        return count < limit

    async def set_csrf_cookie(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every backend response hands out a CSRF cookie to a client that has none; ADK itself does not."""
        if not self.adk_answers and "csrf_token=" not in request.headers.get("Cookie", ""):
            response.headers.add("Set-Cookie", self.csrf_cookie)

    @property
    def adk_answers(self) -> bool:
        """Are session creation and /run_sse answered by ADK's own routes (its shapes, no `done`)?"""
        return self.config.adk_style

    def routes(self) -> list[web.RouteDef]:
        """Routes a profile adds to the common ones."""
        return []

    # -- random draws ------------------------------------------------------------------------------

    def _refusal(self, knobs: CohortKnobs, counters: CohortCounters) -> None:
        """Maybe refuse a valid start request with 500 or 429, as the knobs ask."""
        u = self.rng.random()
        if u < knobs.p_5xx:
            counters.http_5xx += 1
            raise _Reject(500, {"detail": "Internal Server Error"})
        if u < knobs.p_5xx + knobs.p_429:
            counters.http_429 += 1
            raise _Reject(429, {"detail": "Rate limit exceeded"}, {"Retry-After": "60"})

    def _stream_fault(self, knobs: CohortKnobs, counters: CohortCounters) -> str | None:
        u, edge = self.rng.random(), 0.0
        for name in STREAM_FAULTS:
            edge += getattr(knobs, "p_" + name)
            if u < edge:
                setattr(counters, name, getattr(counters, name) + 1)
                return name
        return None

    def _ttfe_s(self, knobs: CohortKnobs) -> float:
        """Lognormal around the median ``ttfe_ms``; spread 0 gives a constant delay."""
        if knobs.ttfe_spread == 0:
            return knobs.ttfe_ms / 1000
        return knobs.ttfe_ms / 1000 * math.exp(knobs.ttfe_spread * self.rng.standard_normal())

    # -- health and sessions -----------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        begun = time.perf_counter()
        body = self.health_body()
        body["response_time_ms"] = round((time.perf_counter() - begun) * 1000, 3)
        return _json(200, body)

    def health_body(self) -> dict[str, Any]:
        cfg = self.config
        env: Any = (
            "ci"
            if cfg.health_ci_shape
            else {"current": "development", "migration_complete": True, "phase": "completed"}
        )
        return {
            "status": "degraded" if cfg.unhealthy else "healthy",
            "timestamp": _iso(),
            "service": VANA_APP,
            "version": "1.0.0",
            "environment": env,
            "dependencies": {
                "google_api_configured": True,
                "session_storage": not cfg.unhealthy,
                "cloud_logging": cfg.cloud_logging,
            },
            "response_time_ms": 0.0,  # health() times the body and fills this in
            "active_adk_sessions": self.open_streams,
            "agentNetwork": {"activeSessions": len(self.runs), "totalSubscribers": self.subscribers},
        }

    def _touch_session(self, key: tuple[str, str, str]) -> None:
        """Create or refresh a session (LRU): a load run's one-shot sessions age out, reused ones stay."""
        now = time.monotonic()
        self.sessions[key] = now + SESSION_TTL_S
        self.sessions.move_to_end(key)
        while len(self.sessions) > MAX_SESSIONS or next(iter(self.sessions.values())) < now:
            self.sessions.popitem(last=False)

    def _new_session_id(self) -> str:
        if self.adk_answers:
            return str(uuid.UUID(bytes=self.rng.bytes(16), version=4))
        return f"session_{self.rng.bytes(8).hex()}"

    async def create_session(self, request: web.Request) -> web.Response:
        """``POST .../sessions``: the backend answers its own shape, ADK a session object."""
        app, user = request.match_info["app"], request.match_info["user"]
        sid = self._new_session_id()
        self._touch_session((app, user, sid))
        if self.adk_answers:
            return _json(200, _adk_session(app, user, sid, {}))
        return _json(200, {"success": True, "session_id": sid, "app_name": app, "user_id": user, "created_at": _iso()})

    async def create_named_session(self, request: web.Request) -> web.Response:
        """ADK ``POST .../sessions/{session}``: the body is the initial state; a second create is a 400."""
        app, user, sid = request.match_info["app"], request.match_info["user"], request.match_info["session"]
        body = await _read_json(request)
        if (app, user, sid) in self.sessions:
            raise _Reject(400, {"detail": f"Session already exists: {sid}"})
        self._touch_session((app, user, sid))
        return _json(200, _adk_session(app, user, sid, body if isinstance(body, dict) else {}))

    # -- canonical: POST /run_sse ------------------------------------------------------------------

    async def run_sse(self, request: web.Request) -> web.StreamResponse:
        t0 = asyncio.get_running_loop().time()
        body = await _read_json(request)
        if errors := _run_request_errors(body):
            raise _Reject(422, {"detail": errors})
        if self.flag_gates_run_sse and not self.config.canonical_enabled:
            raise _Reject(
                501,
                {
                    "detail": "ADK canonical streaming not enabled. "
                    "Set ENABLE_ADK_CANONICAL_STREAM=true to use this endpoint."
                },
            )
        app, user, sid = (body.get(camel, body.get(snake)) for camel, snake in _RUN_FIELDS)
        if (app, user, sid) not in self.sessions:
            raise _Reject(404, {"detail": f"Session not found: {sid}"})
        self._touch_session((app, user, sid))
        knobs, counters = self.config.canonical, self.stats.canonical
        counters.started += 1
        self._refusal(knobs, counters)
        self.open_streams += 1
        try:
            return await self._stream_canonical(request, knobs, t0)
        finally:
            self.open_streams -= 1

    async def _stream_canonical(self, request: web.Request, knobs: CohortKnobs, t0: float) -> web.StreamResponse:
        fault = self._stream_fault(knobs, self.stats.canonical)
        prefixes = self._adk_event_prefixes(knobs.events, 1 if fault else knobs.events)
        first, gap, last = t0 + self._ttfe_s(knobs), knobs.gap_ms / 1000, knobs.events - 1
        resp = web.StreamResponse(headers=_SSE_HEADERS)
        await resp.prepare(request)
        try:
            for i, prefix in enumerate(prefixes):
                await _sleep_until(first + i * gap)
                frame = prefix + repr(time.time()).encode() + b"}\n\n"  # truth stamp right before the write
                if fault is not None or i < last:
                    await resp.write(frame)
                else:  # one send for the last event, `done` and the end of the stream
                    await resp.write_eof(frame if self.config.adk_style else frame + _done_frame())
                    self.stats.canonical.completed += 1
            if fault is not None:
                await self._inject_canonical_fault(resp, fault, first + gap)
        except ConnectionResetError:
            pass  # the client went away
        return resp

    def _adk_event_prefixes(self, total: int, count: int) -> list[bytes]:
        """The session's first ``count`` events: cached templates with this session's ids filled in."""
        h = self.rng.bytes(16).hex()
        invocation = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}".encode()
        return [
            template.replace(b"@inv@", invocation).replace(b"@id@", invocation[:-4] + b"%04x" % i)
            for i, template in enumerate(_adk_templates(total)[:count])
        ]

    async def _inject_canonical_fault(self, resp: web.StreamResponse, fault: str, at: float) -> None:
        await _sleep_until(at)
        if fault == "stream_error":
            await resp.write(_unnamed(self._canonical_error()))
        elif fault == "stall":
            await self._stall()
        # a premature close just ends the handler: the stream closes without its completion

    def _canonical_error(self) -> dict[str, Any]:
        if self.adk_answers:
            return {
                "error": "RuntimeError: simulated model failure",
                "error_details": {"type": "RuntimeError", "message": "simulated model failure"},
            }
        return {
            "error": "ADK upstream error: 500",
            "status_code": 500,
            "timestamp": time.time(),
            "detail": _UPSTREAM_500,
        }

    async def _stall(self) -> None:
        """Stay silent until the client leaves (handler cancelled), stall_max_s passes, or shutdown."""
        try:
            async with asyncio.timeout(self.config.stall_max_s):
                await self.closing.wait()
        except TimeoutError:
            pass

    # -- legacy: POST .../run starts a producer, GET .../run subscribes ----------------------------

    async def legacy_run(self, request: web.Request) -> web.Response:
        t0 = asyncio.get_running_loop().time()
        body = await _read_json(request)
        if not isinstance(body, dict):
            raise _Reject(
                422, {"detail": [{"type": "dict_type", "loc": ["body"], "msg": "Input should be a valid dictionary"}]}
            )
        app, user, sid = request.match_info["app"], request.match_info["user"], request.match_info["session"]
        _require_vana(app)
        if not (body.get("query") or body.get("message")):
            raise _Reject(400, {"detail": "Research query is required"})
        knobs, counters = self.config.legacy, self.stats.legacy
        counters.started += 1
        self._refusal(knobs, counters)
        run = self.runs.get(sid) or self._new_run(sid)
        if run.producer is not None:
            run.producer.cancel()  # a new run of the session replaces the old task, as the backend does
        run.closed = False
        run.producer = asyncio.create_task(self._produce(sid, run, knobs, t0))
        return _json(
            200,
            {
                "success": True,
                "app_name": app,
                "user_id": user,
                "session_id": sid,
                "message": "Research session started successfully",
                "timestamp": _iso(),
            },
        )

    def _new_run(self, sid: str) -> _Run:
        run = self.runs[sid] = _Run(deque(maxlen=self.replay))
        if len(self.runs) > MAX_RUNS:
            _, oldest = self.runs.popitem(last=False)
            if oldest.producer is not None:
                oldest.producer.cancel()
            _close_streams(oldest)
        return run

    async def _produce(self, sid: str, run: _Run, knobs: CohortKnobs, t0: float) -> None:
        """Publish the session's events on the knobs' schedule, measured from the POST.

        ``agent_status`` is bookkeeping, published at once as the real backend does on the POST; the
        knobs' TTFE is the first answer (``research_update``), and ``events`` counts those updates."""
        fault = self._stream_fault(knobs, self.stats.legacy)
        first, gap, total = t0 + self._ttfe_s(knobs), knobs.gap_ms / 1000, knobs.events
        try:
            _publish(run, "agent_status", PROCESSING)
            if fault is not None:
                await _sleep_until(first)
                _legacy_fault(run, fault)
                return
            content = ""
            for i in range(total):
                await _sleep_until(first + i * gap)
                content += _chunk(i)
                _publish(run, "research_update", {"content": content})
            _publish(run, "research_complete", {"content": content, "status": "completed"})
            self.stats.legacy.completed += 1
        finally:
            if not run.subscribers:
                asyncio.get_running_loop().call_later(RUN_LINGER_S, self._release, sid, run)

    def _release(self, sid: str, run: _Run) -> None:
        """Forget a run nobody watches once its producer is over: bounds memory under load."""
        idle = run.producer is None or run.producer.done()
        if idle and not run.subscribers and self.runs.get(sid) is run:
            del self.runs[sid]

    async def legacy_stream(self, request: web.Request) -> web.StreamResponse:
        _require_vana(request.match_info["app"])
        sid = request.match_info["session"]
        if (run := self.runs.get(sid)) is None:
            raise _Reject(404, {"detail": f"Session not found: {sid}"})
        return await self._subscribe(request, sid, run, _ADK_DIALECT)

    async def older_stream(self, request: web.Request) -> web.StreamResponse:
        """``GET /agent_network_sse/{session}``: may subscribe before the run starts, like the old broadcaster."""
        sid = request.match_info["session"]
        return await self._subscribe(request, sid, self.runs.get(sid) or self._new_run(sid), _OLDER_DIALECT)

    async def _subscribe(self, request: web.Request, sid: str, run: _Run, dialect: _Dialect) -> web.StreamResponse:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        for frame in run.history:
            queue.put_nowait(frame)
        if run.closed:
            queue.put_nowait(None)
        run.subscribers.add(queue)
        self.subscribers += 1
        resp = web.StreamResponse(headers=self.legacy_headers)
        try:
            await resp.prepare(request)
            await resp.write(dialect.connected(sid))
            abnormal = await self._relay(resp, queue, dialect)
            await resp.write(dialect.closing(sid, abnormal))
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self.subscribers -= 1
            run.subscribers.discard(queue)
            self._release(sid, run)
        return resp

    async def _relay(self, resp: web.StreamResponse, queue: asyncio.Queue[bytes | None], dialect: _Dialect) -> bool:
        """Relay frames, with keepalives in silences, until the run closes (True) or stall_max_s passes.

        The stream deliberately stays open after ``research_complete``: the client must close it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.stall_max_s
        while (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(min(self.config.keepalive_s, remaining)):
                    frame = await queue.get()
            except TimeoutError:
                if loop.time() < deadline:
                    await resp.write(dialect.keepalive())
                continue
            if frame is None:
                return True
            await resp.write(frame)
        return False

    # -- admin -------------------------------------------------------------------------------------

    async def get_config(self, request: web.Request) -> web.Response:
        data = asdict(self.config)
        if data["require_token"]:
            data["require_token"] = "***"  # never echo a secret
        return _json(200, data)

    async def patch_config(self, request: web.Request) -> web.Response:
        """Degrade a running target: validate the whole patch first, then update the live config in place."""
        try:
            new = _patched(self.config, await _read_json(request))
        except (TypeError, ValueError) as exc:
            raise _Reject(400, {"detail": str(exc)}) from None
        if new.profile != self.config.profile:
            raise _Reject(400, {"detail": "profile: fixed when the target starts"})
        if new.seed != self.config.seed:
            self.rng = np.random.default_rng(new.seed)
        for f in fields(TargetConfig):
            if f.name in _COHORTS:
                vars(getattr(self.config, f.name)).update(vars(getattr(new, f.name)))
            else:
                setattr(self.config, f.name, getattr(new, f.name))
        return await self.get_config(request)

    async def get_stats(self, request: web.Request) -> web.Response:
        gauges = {
            "open_canonical_streams": self.open_streams,
            "legacy_runs": len(self.runs),
            "legacy_subscribers": self.subscribers,
            "stored_sessions": len(self.sessions),
        }
        late = {f"p{q:g}": LATE.get_value_at_percentile(q) / 1000 for q in (50, 99)} if LATE.total_count else {}
        return _json(200, {**asdict(self.stats), "gauges": gauges, "late_ms": late})

    async def on_shutdown(self, app: web.Application) -> None:
        """End stalls and open legacy streams so the server stops at once instead of waiting on them."""
        self.closing.set()
        for run in self.runs.values():
            if run.producer is not None:
                run.producer.cancel()
            _close_streams(run)


_RUN_FIELDS = (("appName", "app_name"), ("userId", "user_id"), ("sessionId", "session_id"))


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise _Reject(
            422,
            {
                "detail": [
                    {"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "ctx": {"error": str(exc)}}
                ]
            },
        ) from None


def _run_request_errors(body: Any) -> list[dict[str, Any]]:
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
    for camel, snake in _RUN_FIELDS:
        value = body.get(camel, body.get(snake))
        if not isinstance(value, str):
            errors.append(_field_error(camel, value, "string_type", "Input should be a valid string"))
    message = body.get("newMessage", body.get("new_message"))
    if not isinstance(message, dict) or not isinstance(message.get("parts"), list) or not message["parts"]:
        errors.append(_field_error("newMessage", message, "value_error", "newMessage needs a list of parts"))
    return errors


def _field_error(name: str, value: Any, kind: str, msg: str) -> dict[str, Any]:
    if value is None:
        return {"type": "missing", "loc": ["body", name], "msg": "Field required"}
    return {"type": kind, "loc": ["body", name], "msg": msg, "input": value}


def _require_vana(app: str) -> None:
    if app != VANA_APP:
        raise _Reject(404, {"detail": f"App '{app}' not found"})


def _adk_session(app: str, user: str, sid: str, state: dict[str, Any]) -> dict[str, Any]:
    return {"id": sid, "appName": app, "userId": user, "state": state, "events": [], "lastUpdateTime": time.time()}


def _publish(run: _Run, event: str, data: dict[str, Any]) -> None:
    """Broadcast one legacy event; its id carries the truth time (``<event>_<epoch>``)."""
    now = time.time()
    frame = _named(event, {**data, "timestamp": _iso(now)}, f"{event}_{now!r}")
    run.history.append(frame)
    for queue in run.subscribers:
        queue.put_nowait(frame)


def _legacy_fault(run: _Run, fault: str) -> None:
    if fault == "stream_error":
        _publish(run, "error", {"error": _UPSTREAM_500})
    elif fault == "premature_close":
        _close_streams(run)
    # a stall publishes nothing more: subscribers only get keepalives


def _close_streams(run: _Run) -> None:
    run.closed = True
    for queue in run.subscribers:
        queue.put_nowait(None)


_STATE = web.AppKey("sseprobe_target", _Vana)


def make_app(config: TargetConfig) -> web.Application:
    if config.profile == "vana-real":
        from ._real import VanaReal  # the profile subclasses _Vana: imported only when asked for

        vana: _Vana = VanaReal(config)
    else:
        vana = _Vana(config)
    app = web.Application(middlewares=[vana.middleware])
    app[_STATE] = vana
    app.on_response_prepare.append(vana.set_csrf_cookie)
    app.on_shutdown.append(vana.on_shutdown)
    session = "/apps/{app}/users/{user}/sessions"
    app.add_routes(
        [
            web.get("/health", vana.health),
            web.post(session, vana.create_session),
            web.post(session + "/{session}", vana.create_named_session),
            web.post("/run_sse", vana.run_sse),
            web.post(session + "/{session}/run", vana.legacy_run),
            web.get(session + "/{session}/run", vana.legacy_stream),
            web.get("/agent_network_sse/{session}", vana.older_stream),
            web.get("/_target/config", vana.get_config),
            web.patch("/_target/config", vana.patch_config),
            web.get("/_target/stats", vana.get_stats),
            *vana.routes(),
        ]
    )
    return app


@asynccontextmanager
async def running_target(
    config: TargetConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[Target]:
    """Run the target in this event loop (port 0: an ephemeral port); stop it on exit.

    Handlers are cancelled when their client leaves, so stalls and open legacy streams free at once.
    """
    app = make_app(config or TargetConfig())
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=4096).start()
        bound = runner.addresses[0][1]
        vana = app[_STATE]
        yield Target(f"http://{f'[{host}]' if ':' in host else host}:{bound}", bound, vana.config, vana.stats)
    finally:
        await runner.cleanup()


def serve(
    config: TargetConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Blocking entry point for ``sseprobe target``: serves until SIGINT/SIGTERM."""
    asyncio.run(_serve_until_signal(config, host, port, ready))


async def _serve_until_signal(
    config: TargetConfig,
    host: str,
    port: int,
    ready: Callable[[str], None] | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_target(config, host, port) as target:
            if ready is not None:
                ready(target.url)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
