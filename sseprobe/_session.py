"""Run one session end to end and fill its record. Never raises, except to pass on cancellation.

Every failure becomes an outcome: :mod:`._outcomes` exceptions carry theirs, aiohttp and OS
errors are mapped by the phase they happened in (before headers: connect/timeout; after:
premature close/idle timeout).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import aiohttp

from ._config import FlowOptions, Limits, Timeouts
from ._flows import FlowPlan, Step, ended_partial, plan_session
from ._outcomes import (
    BadContentType,
    ConnectError,
    HTTPStatusError,
    IdleTimeout,
    Outcome,
    PrematureClose,
    ProtocolError,
    SessionError,
    SessionTimeout,
    StreamError,
)
from ._record import SessionRecord
from ._sse import Event, SSEDecoder

__all__ = ["run_session", "connect_trace", "Clock"]

Clock = Callable[[], float]
_SSE = "text/event-stream"


class _Session:
    """The mutable per-session state; one instance per session, discarded after."""

    __slots__ = ("http", "opts", "timeouts", "limits", "rec", "clock", "headers", "base", "streaming",
                 "connected_at")

    def __init__(self, http: aiohttp.ClientSession, opts: FlowOptions, timeouts: Timeouts,
                 limits: Limits, rec: SessionRecord, clock: Clock) -> None:
        self.http, self.opts, self.timeouts, self.limits, self.rec, self.clock = (
            http, opts, timeouts, limits, rec, clock)
        self.headers: dict[str, str] = dict(opts.headers)
        self.base = rec.scheduled  # latencies start at the *scheduled* message send
        self.streaming = False  # past the stream's response headers
        self.connected_at: float | None = None  # set by connect_trace when the connection is ready

    def ms_since_base(self, t: float) -> float:
        return (t - self.base) * 1000.0

    async def request(self, step: Step, accept: str) -> aiohttp.ClientResponse:
        """Send one request; headers must come within the connect timeout."""
        headers = {**self.headers, "Accept": accept}
        if step.is_message:
            # the message is sent now; latencies count from when it *should* have been sent
            self.base = self.rec.scheduled + (self.clock() - self.rec.started)
        try:
            async with asyncio.timeout(self.timeouts.connect) as cm:
                resp = await self.http.request(
                    step.method, step.url, json=step.json, data=step.body, headers=headers,
                    trace_request_ctx=self)
        except TimeoutError:
            if cm.expired():
                raise SessionTimeout(f"no response headers within {self.timeouts.connect:g}s") from None
            raise
        self.rec.status = resp.status
        return resp

    async def call(self, step: Step) -> None:
        """A plain JSON request before the stream (session create, legacy run start)."""
        async with await self.request(step, "application/json") as resp:
            if not (200 <= resp.status < 300 or resp.status in step.ok_statuses):
                raise HTTPStatusError(f"HTTP {resp.status} on {step.method} before the stream", resp.status)
            csrf = resp.cookies.get("csrf_token")
            if csrf is not None:  # echo the backend's CSRF cookie as its header requires
                self.headers["X-CSRF-Token"] = csrf.value
                self.headers["Cookie"] = f"csrf_token={csrf.value}"
            await resp.read()

    async def stream(self, plan: FlowPlan) -> None:
        rec, clock = self.rec, self.clock
        resp = await self.request(plan.stream, _SSE)
        try:
            now = clock()
            rec.headers_ms = self.ms_since_base(now)
            if self.connected_at is not None:
                rec.connect_ms = max(0.0, self.ms_since_base(self.connected_at))
            if not 200 <= resp.status < 300:
                raise HTTPStatusError(f"HTTP {resp.status}", resp.status)
            if resp.content_type != _SSE:
                raise BadContentType(f"content-type {resp.content_type!r}, expected {_SSE}")
            rec.connected = True
            self.streaming = True
            await self._read(resp, plan, now)
        finally:
            resp.close()  # legacy servers never close after completion: we must

    async def _read(self, resp: aiohttp.ClientResponse, plan: FlowPlan, last: float) -> None:
        rec, clock, scan = self.rec, self.clock, plan.rules.scan
        decoder = SSEDecoder(self.limits.max_line, self.limits.max_event)
        content = resp.content
        progress = 0
        max_gap = 0.0
        nbytes = 0
        nevents = 0
        last_events: list[Event] = []
        try:
            while chunk := await content.readany():
                nbytes += len(chunk)
                events = decoder.feed(chunk)
                if not events:
                    continue
                last_events = events
                now = clock()
                nevents += len(events)
                if now - last > max_gap:
                    max_gap = now - last
                last = now
                n, done, error = scan(events)
                if n and not progress:
                    rec.ttfe_ms = self.ms_since_base(now)
                progress += n
                if error is not None:
                    raise StreamError(error)
                if done:
                    rec.completion_ms = self.ms_since_base(now)
                    rec.outcome = Outcome.OK
                    return
            decoder.flush()
            if plan.rules.close_ok and progress and not ended_partial(last_events):
                rec.completion_ms = self.ms_since_base(clock())
                rec.outcome = Outcome.OK
                return
            raise PrematureClose(
                f"stream closed after {nevents} events without "
                f"{plan.rules.complete_on or 'a final (non-partial) progress event'}")
        finally:
            rec.bytes, rec.events = nbytes, nevents
            rec.max_gap_ms = max_gap * 1000.0 if nevents else None


def connect_trace(clock: Clock = time.perf_counter) -> aiohttp.TraceConfig:
    """Stamps when each request's connection is ready (new or reused) for ``connect_ms``."""

    async def ready(_session: object, ctx: object, _params: object) -> None:
        state = getattr(ctx, "trace_request_ctx", None)
        if isinstance(state, _Session):
            state.connected_at = clock()

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(ready)
    trace.on_connection_reuseconn.append(ready)
    return trace


def _classify(exc: BaseException, streaming: bool) -> SessionError:
    """Map a transport error onto the outcome tree, by whether the stream had begun."""
    text = f"{type(exc).__name__}: {exc}"[:200]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectError(f"connect timed out: {text}")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return IdleTimeout(text) if streaming else SessionTimeout(text)
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
                        aiohttp.ClientOSError, ConnectionError)):
        if streaming:
            if isinstance(exc, aiohttp.ClientPayloadError) and "not completed" not in str(exc):
                return ProtocolError(text)
            return PrematureClose(text)
        return ConnectError(text)
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.InvalidURL, OSError)):
        return ConnectError(text)
    if isinstance(exc, (aiohttp.ClientResponseError, aiohttp.ClientPayloadError)):
        return ProtocolError(text)
    return SessionError(f"internal error: {text}")


async def run_session(http: aiohttp.ClientSession, opts: FlowOptions, timeouts: Timeouts,
                      limits: Limits, rec: SessionRecord, clock: Clock = time.perf_counter) -> None:
    """Fill ``rec`` with what one session did. CancelledError is recorded, then re-raised."""
    state = _Session(http, opts, timeouts, limits, rec, clock)
    rec.started = clock()
    try:
        try:
            async with asyncio.timeout(timeouts.session):
                plan = plan_session(opts)
                if plan.setup:
                    t0 = clock()
                    for step in plan.setup:
                        await state.call(step)
                    rec.setup_ms = (clock() - t0) * 1000.0
                if plan.start is not None:
                    await state.call(plan.start)
                await state.stream(plan)
        except SessionError:
            raise
        except TimeoutError as exc:
            if isinstance(exc, aiohttp.ServerTimeoutError):
                raise _classify(exc, state.streaming) from None
            raise SessionTimeout(f"session deadline of {timeouts.session:g}s passed") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a crash inside one session is an outcome
            raise _classify(exc, state.streaming) from None
    except SessionError as err:
        rec.outcome = err.outcome
        rec.error = str(err)
        if err.status is not None:
            rec.status = err.status
    except asyncio.CancelledError:
        rec.outcome = Outcome.CANCELLED
        rec.error = "run stopped"
        raise
