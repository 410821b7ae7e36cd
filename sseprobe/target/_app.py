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
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
from aiohttp import web

from . import _access
from ._config import (
    COHORTS,
    PROFILES,
    STREAM_FAULTS,
    CohortCounters,
    CohortKnobs,
    Target,
    TargetConfig,
    TargetStats,
    _patched,
)
from ._parts import (
    ADK_DIALECT,
    OLDER_DIALECT,
    PROCESSING,
    RUN_FIELDS,
    UPSTREAM_500,
    VANA_APP,
    Dialect,
    Reject,
    Run,
    adk_session,
    adk_templates,
    chunk,
    close_streams,
    done_frame,
    iso,
    json_response,
    late_ms,
    legacy_fault,
    publish,
    read_json,
    require_vana,
    run_request_errors,
    sleep_until,
    unnamed,
)

__all__ = ["CohortKnobs", "TargetConfig", "TargetStats", "Target", "PROFILES", "make_app", "app_state"]

REPLAY = 10  # events replayed to a new legacy subscriber
SESSION_TTL_S = 600.0  # a session unused this long is forgotten
MAX_SESSIONS = 100_000  # beyond, the least recently used session is forgotten
MAX_RUNS = 50_000  # legacy runs kept at once; the oldest is evicted beyond
RUN_LINGER_S = 30.0  # a finished legacy run nobody watches stays this long for a late subscriber
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class HealthEnvironment(TypedDict):
    current: str
    migration_complete: bool
    phase: str


class HealthDependencies(TypedDict):
    google_api_configured: bool
    session_storage: bool
    cloud_logging: bool
    project_id: NotRequired[str]  # the real-profile service names its project


class AgentNetwork(TypedDict):
    activeSessions: int
    totalSubscribers: int


class HealthBody(TypedDict):
    """``GET /health``, in the service's shape (its CI build answers ``environment: "ci"``)."""

    status: str
    timestamp: str
    service: str
    version: str
    environment: str | HealthEnvironment
    dependencies: HealthDependencies
    response_time_ms: float
    active_adk_sessions: int
    agentNetwork: AgentNetwork


class CanonicalError(TypedDict):
    """The error event a canonical stream ends with on a simulated failure (ADK's or the backend's shape)."""

    error: str
    error_details: NotRequired[dict[str, str]]  # ADK's
    status_code: NotRequired[int]  # the backend's, with timestamp and detail
    timestamp: NotRequired[float]
    detail: NotRequired[str]


class _Vana:
    """State and handlers of one target instance (the default profile; target/_real.py subclasses it)."""

    replay = REPLAY  # past events a new legacy subscriber receives
    flag_gates_run_sse = True  # the canonical flag off makes /run_sse answer 501
    legacy_headers = _SSE_HEADERS

    def __init__(self, config: TargetConfig, access: _access.AccessLog | None = None) -> None:
        self.config = config
        self.access = access
        self.stats = TargetStats()
        self.rng = np.random.default_rng(config.seed)
        self.csrf_cookie = f"csrf_token={self.rng.bytes(16).hex()}; Path=/; SameSite=Strict"
        self.sessions: OrderedDict[tuple[str, str, str], float] = OrderedDict()  # -> expiry (monotonic)
        self.runs: OrderedDict[str, Run] = OrderedDict()
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
        except Reject as reject:
            return reject.response

    def _guard(self, request: web.Request) -> None:
        cfg = self.config
        if cfg.rate_limit and not self._within_rate_limit(request.remote or "", cfg.rate_limit):
            self.stats.rate_limited += 1
            detail = f"Rate limit exceeded: {cfg.rate_limit} requests per 60 seconds"
            raise Reject(429, {"detail": detail}, {"Retry-After": "60"})
        if cfg.require_token and request.headers.get("Authorization") != f"Bearer {cfg.require_token}":
            self.stats.unauthorized += 1
            raise Reject(401, {"detail": "Not authenticated"}, {"WWW-Authenticate": "Bearer"})

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
            raise Reject(500, {"detail": "Internal Server Error"})
        if u < knobs.p_5xx + knobs.p_429:
            counters.http_429 += 1
            raise Reject(429, {"detail": "Rate limit exceeded"}, {"Retry-After": "60"})

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
        return json_response(200, body)

    def health_body(self) -> HealthBody:
        cfg = self.config
        env: str | HealthEnvironment = (
            "ci"
            if cfg.health_ci_shape
            else {"current": "development", "migration_complete": True, "phase": "completed"}
        )
        return {
            "status": "degraded" if cfg.unhealthy else "healthy",
            "timestamp": iso(),
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
            return json_response(200, adk_session(app, user, sid, {}))
        return json_response(
            200, {"success": True, "session_id": sid, "app_name": app, "user_id": user, "created_at": iso()}
        )

    async def create_named_session(self, request: web.Request) -> web.Response:
        """ADK ``POST .../sessions/{session}``: the body is the initial state; a second create is a 400."""
        app, user, sid = request.match_info["app"], request.match_info["user"], request.match_info["session"]
        body = await read_json(request)
        if (app, user, sid) in self.sessions:
            raise Reject(400, {"detail": f"Session already exists: {sid}"})
        self._touch_session((app, user, sid))
        return json_response(200, adk_session(app, user, sid, body if isinstance(body, dict) else {}))

    # -- canonical: POST /run_sse ------------------------------------------------------------------

    async def run_sse(self, request: web.Request) -> web.StreamResponse:
        t0 = asyncio.get_running_loop().time()
        body = await read_json(request)
        if errors := run_request_errors(body):
            raise Reject(422, {"detail": errors})
        if self.flag_gates_run_sse and not self.config.canonical_enabled:
            raise Reject(
                501,
                {
                    "detail": "ADK canonical streaming not enabled. "
                    "Set ENABLE_ADK_CANONICAL_STREAM=true to use this endpoint."
                },
            )
        app, user, sid = (body.get(camel, body.get(snake)) for camel, snake in RUN_FIELDS)
        if (app, user, sid) not in self.sessions:
            raise Reject(404, {"detail": f"Session not found: {sid}"})
        self._touch_session((app, user, sid))
        knobs, counters = self.config.canonical, self.stats.canonical
        counters.started += 1
        with self._logged("canonical", request, t0):
            self._refusal(knobs, counters)
            self.open_streams += 1
            try:
                return await self._stream_canonical(request, knobs, t0)
            finally:
                self.open_streams -= 1

    def _logged(self, mode: str, request: web.Request, t0: float, handed_off: bool = False) -> ContextManager[Any]:
        """The access log's entry for this stream (target --access-log), or nothing."""
        if self.access is None:
            return nullcontext()
        return self.access.stream(mode, request.method, request.path, t0, handed_off)

    async def _stream_canonical(self, request: web.Request, knobs: CohortKnobs, t0: float) -> web.StreamResponse:
        fault = self._stream_fault(knobs, self.stats.canonical)
        prefixes = self._adk_event_prefixes(knobs.events, 1 if fault else knobs.events)
        first, gap, last = t0 + self._ttfe_s(knobs), knobs.gap_ms / 1000, knobs.events - 1
        resp = web.StreamResponse(headers=_SSE_HEADERS)
        await resp.prepare(request)
        try:
            for i, prefix in enumerate(prefixes):
                await sleep_until(first + i * gap)
                frame = prefix + repr(time.time()).encode() + b"}\n\n"  # truth stamp right before the write
                if fault is not None or i < last:
                    await resp.write(frame)
                else:  # one send for the last event, `done` and the end of the stream
                    await resp.write_eof(frame if self.config.adk_style else frame + done_frame())
                    self.stats.canonical.completed += 1
                    _access.completed()
                if i == 0:
                    _access.answered()
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
            for i, template in enumerate(adk_templates(total)[:count])
        ]

    async def _inject_canonical_fault(self, resp: web.StreamResponse, fault: str, at: float) -> None:
        await sleep_until(at)
        if fault == "stream_error":
            error = self._canonical_error()
            await resp.write(unnamed(error))
            _access.failed(str(error["error"]))
        elif fault == "stall":
            await self._stall()
        # a premature close just ends the handler: the stream closes without its completion

    def _canonical_error(self) -> CanonicalError:
        if self.adk_answers:
            return {
                "error": "RuntimeError: simulated model failure",
                "error_details": {"type": "RuntimeError", "message": "simulated model failure"},
            }
        return {
            "error": "ADK upstream error: 500",
            "status_code": 500,
            "timestamp": time.time(),
            "detail": UPSTREAM_500,
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
        body = await read_json(request)
        if not isinstance(body, dict):
            raise Reject(
                422, {"detail": [{"type": "dict_type", "loc": ["body"], "msg": "Input should be a valid dictionary"}]}
            )
        app, user, sid = request.match_info["app"], request.match_info["user"], request.match_info["session"]
        require_vana(app)
        if not (body.get("query") or body.get("message")):
            raise Reject(400, {"detail": "Research query is required"})
        knobs, counters = self.config.legacy, self.stats.legacy
        counters.started += 1
        with self._logged("legacy", request, t0, handed_off=True) as entry:  # written when the producer ends
            self._refusal(knobs, counters)
            run = self.runs.get(sid) or self._new_run(sid)
            if run.producer is not None:
                run.producer.cancel()  # a new run of the session replaces the old task, as the backend does
            run.closed = False
            run.producer = asyncio.create_task(self._produce(sid, run, knobs, t0))
            if entry is not None:  # a done callback: runs even for a task cancelled before it started
                run.producer.add_done_callback(entry.log.written_by_task(entry))
        return json_response(
            200,
            {
                "success": True,
                "app_name": app,
                "user_id": user,
                "session_id": sid,
                "message": "Research session started successfully",
                "timestamp": iso(),
            },
        )

    def _new_run(self, sid: str) -> Run:
        run = self.runs[sid] = Run(deque(maxlen=self.replay))
        if len(self.runs) > MAX_RUNS:
            _, oldest = self.runs.popitem(last=False)
            if oldest.producer is not None:
                oldest.producer.cancel()
            close_streams(oldest)
        return run

    async def _produce(self, sid: str, run: Run, knobs: CohortKnobs, t0: float) -> None:
        """Publish the session's events on the knobs' schedule, measured from the POST.

        ``agent_status`` is bookkeeping, published at once as the real backend does on the POST; the
        knobs' TTFE is the first answer (``research_update``), and ``events`` counts those updates."""
        fault = self._stream_fault(knobs, self.stats.legacy)
        first, gap, total = t0 + self._ttfe_s(knobs), knobs.gap_ms / 1000, knobs.events
        try:
            publish(run, "agent_status", PROCESSING)
            if fault is not None:
                await sleep_until(first)
                legacy_fault(run, fault)
                if fault == "stream_error":
                    _access.failed(UPSTREAM_500)
                return
            content = ""
            for i in range(total):
                await sleep_until(first + i * gap)
                content += chunk(i)
                publish(run, "research_update", {"content": content})
                _access.answered()
            publish(run, "research_complete", {"content": content, "status": "completed"})
            self.stats.legacy.completed += 1
            _access.completed()
        finally:
            if not run.subscribers:
                asyncio.get_running_loop().call_later(RUN_LINGER_S, self._release, sid, run)

    def _release(self, sid: str, run: Run) -> None:
        """Forget a run nobody watches once its producer is over: bounds memory under load."""
        idle = run.producer is None or run.producer.done()
        if idle and not run.subscribers and self.runs.get(sid) is run:
            del self.runs[sid]

    async def legacy_stream(self, request: web.Request) -> web.StreamResponse:
        require_vana(request.match_info["app"])
        sid = request.match_info["session"]
        if (run := self.runs.get(sid)) is None:
            raise Reject(404, {"detail": f"Session not found: {sid}"})
        return await self._subscribe(request, sid, run, ADK_DIALECT)

    async def older_stream(self, request: web.Request) -> web.StreamResponse:
        """``GET /agent_network_sse/{session}``: may subscribe before the run starts, like the old broadcaster."""
        sid = request.match_info["session"]
        return await self._subscribe(request, sid, self.runs.get(sid) or self._new_run(sid), OLDER_DIALECT)

    async def _subscribe(self, request: web.Request, sid: str, run: Run, dialect: Dialect) -> web.StreamResponse:
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

    async def _relay(self, resp: web.StreamResponse, queue: asyncio.Queue[bytes | None], dialect: Dialect) -> bool:
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
        return json_response(200, data)

    async def patch_config(self, request: web.Request) -> web.Response:
        """Degrade a running target: validate the whole patch first, then update the live config in place."""
        try:
            new = _patched(self.config, await read_json(request))
        except (TypeError, ValueError) as exc:
            raise Reject(400, {"detail": str(exc)}) from None
        if new.profile != self.config.profile:
            raise Reject(400, {"detail": "profile: fixed when the target starts"})
        if new.seed != self.config.seed:
            self.rng = np.random.default_rng(new.seed)
        for f in fields(TargetConfig):
            if f.name in COHORTS:
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
        return json_response(200, {**asdict(self.stats), "gauges": gauges, "late_ms": late_ms()})

    async def on_shutdown(self, app: web.Application) -> None:
        """End stalls and open legacy streams so the server stops at once instead of waiting on them."""
        self.closing.set()
        for run in self.runs.values():
            if run.producer is not None:
                run.producer.cancel()
            close_streams(run)


_STATE = web.AppKey("sseprobe_target", _Vana)


def app_state(app: web.Application) -> _Vana:
    return app[_STATE]


def make_app(config: TargetConfig, access_log: str | Path | None = None) -> web.Application:
    """The app; ``access_log``: a file to append one JSON line per stream to (_access; default profile only)."""
    if config.profile == "vana-real":
        if access_log is not None:
            raise ValueError("--access-log: the default profile only (vana-real's streams are not logged)")
        from ._real import VanaReal  # the profile subclasses _Vana: imported only when asked for

        vana: _Vana = VanaReal(config)
    else:
        vana = _Vana(config, None if access_log is None else _access.AccessLog(access_log))
    app = web.Application(middlewares=[vana.middleware])
    app[_STATE] = vana
    app.on_response_prepare.append(vana.set_csrf_cookie)
    app.on_shutdown.append(vana.on_shutdown)
    if vana.access is not None:
        app.on_cleanup.append(vana.access.on_cleanup)
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
