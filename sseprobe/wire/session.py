"""Run one session end to end and fill its record. Never raises, except to pass on cancellation.

Every failure becomes an outcome: the transport (:mod:`._http`) raises outcome exceptions
already; anything else is mapped by the phase it happened in (before headers: connect; after:
premature close), or is sseprobe's own internal error.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

import orjson

from .._config import FlowOptions, Limits, Timeouts
from .._outcomes import (
    BadContentType,
    ConnectError,
    EmptyAnswer,
    HTTPStatusError,
    Outcome,
    PrematureClose,
    ProtocolError,
    SessionError,
    SessionTimeout,
    StreamError,
)
from .._record import SessionRecord
from .body import MAX_READ_BODY, MAX_STREAM_BODY
from .flows import NO_ROUTE, FlowPlan, Step, ended_partial, plan_session
from .http import Response, Transport
from .sse import Event, SSEDecoder

__all__ = ["run_session", "prepared_stream", "Clock", "FirstEvent", "RunState", "observe_first_events"]


@dataclass(frozen=True)
class FirstEvent:
    """What a session knew at its first progress event: for an observer checking sseprobe's own
    clock (bench/truth.py). Times are on the run clock (seconds) unless said; add ``wall_offset``
    to one for ``time.time()``."""

    scheduled: float  # when the session was due, seconds from the run's start
    base: float  # the instant TTFE is measured from (the message send)
    ttfe_ms: float | None  # the TTFE recorded, if this event already carried answer content
    wall_offset: float  # time.time() - run clock, read at this instant
    events: list[Event]  # the events decoded from the chunk that held the first progress event


Observer = Callable[[FirstEvent], None]
_OBSERVING: ContextVar[tuple[Observer, ...]] = ContextVar("sseprobe_first_event_observers", default=())


def observe_first_events(observer: Observer) -> Callable[[], None]:
    """Call ``observer`` at every session's first progress event of the runs started after this call
    from this thread (or task), in this process (``workers=1``); returns the call that stops it for
    the runs started after that. Once per session, so the per-event path stays as cheap. Each run
    takes the observers when it starts (:class:`RunState`): nothing is shared between threads."""
    _OBSERVING.set((*_OBSERVING.get(), observer))

    def stop() -> None:
        _OBSERVING.set(tuple(o for o in _OBSERVING.get() if o is not observer))

    return stop


def _observing() -> tuple[Observer, ...]:
    return _OBSERVING.get()


@dataclass
class RunState:
    """What the sessions of one run share, owned by the run and dropped with it, so a second run in the
    same process starts knowing nothing: the (URL, app) of cohorts where ``auto`` creation found only
    ADK style (later sessions go there at once, not paying the failed request again), and who hears
    each session's first event (by default the observers registered when the run starts)."""

    adk_only: set[tuple[str, str]] = field(default_factory=set)
    observers: tuple[Observer, ...] = field(default_factory=_observing)


Clock = Callable[[], float]
_SSE = "text/event-stream"
_JSON = "application/json"


class _Session:
    """The mutable per-session state; one instance per session, discarded after."""

    __slots__ = ("http", "opts", "timeouts", "limits", "rec", "clock", "headers", "base", "streaming", "shared")

    def __init__(
        self,
        http: Transport,
        opts: FlowOptions,
        timeouts: Timeouts,
        limits: Limits,
        rec: SessionRecord,
        clock: Clock,
        shared: RunState,
    ) -> None:
        self.http, self.opts, self.timeouts, self.limits, self.rec, self.clock = (
            http,
            opts,
            timeouts,
            limits,
            rec,
            clock,
        )
        self.headers: dict[str, str] = dict(opts.headers)
        self.base = rec.scheduled  # latencies start at the *scheduled* message send
        self.streaming = False  # past the stream's response headers
        self.shared = shared

    def ms_since_base(self, t: float) -> float:
        return (t - self.base) * 1000.0

    async def request(self, step: Step, accept: str, max_body: int = MAX_READ_BODY) -> Response:
        """Send one request; headers must come within the connect timeout."""
        headers = {**self.headers, "Accept": accept}
        if step.json is not None:  # serialised here with orjson
            headers["Content-Type"] = _JSON
            body: bytes | None = step.json_bytes()
        else:
            body = step.body
        if step.is_message:
            # the message is sent now; latencies count from when it *should* have been sent
            self.base = self.rec.scheduled + (self.clock() - self.rec.started)
        # the head deadline is kept on the connection's own timer
        resp = await self.http.request(
            step.method,
            step.url,
            data=body,
            headers=headers,
            head_timeout=self.timeouts.connect,
            tls=self.opts.tls,
            max_body=max_body,
        )
        self.rec.status = resp.status
        if resp.tcp_ms is not None:  # this request opened the session's connection
            self.rec.tcp_ms, self.rec.tls_ms = resp.tcp_ms, resp.tls_ms
            self.rec.address, self.rec.tls_resumed = resp.address, resp.tls_resumed
        return resp

    async def setup(self, plan: FlowPlan) -> FlowPlan:
        """Send the prerequisites; return the plan the stream must follow (the server's session id)."""
        for step in plan.setup:
            try:
                session_id = await self.call(step)
            except HTTPStatusError as err:
                if step.fallback is None or err.status not in NO_ROUTE:
                    raise
                session_id = await self.call(step.fallback)
                self.shared.adk_only.add((self.opts.url, self.opts.app))  # later sessions of the run go there at once
            if session_id is not None:
                plan = plan.with_session(session_id)
        return plan

    async def call(self, step: Step) -> str | None:
        """A plain JSON request before the stream (session create, legacy run start); returns the
        session id the server chose when the step asks the server to choose one."""
        async with await self.request(step, _JSON) as resp:
            if not (200 <= resp.status < 300 or resp.status in step.ok_statuses):
                raise HTTPStatusError(f"HTTP {resp.status} on {step.method} before the stream", resp.status)
            raw = ", ".join(resp.headers.getall("Set-Cookie", ()))
            if "csrf_token=" in raw:  # echo the backend's CSRF cookie as its header requires
                value = _csrf_value(raw)
                if value is None:  # quoted or unusual: the full cookie parser decides
                    csrf = resp.cookies.get("csrf_token")
                    value = csrf.value if csrf is not None else None
                if value is not None:
                    _echo_csrf(self.headers, value)
            raw_body = await resp.read()
        return _created_session_id(raw_body) if step.creates_session else None

    async def stream(self, plan: FlowPlan) -> None:
        rec, clock = self.rec, self.clock
        resp = await self.request(plan.stream, _SSE, MAX_STREAM_BODY)
        try:  # the head, like the body, stamped when it reached the socket, however late the loop
            now = clock() - (max(time.time() - resp.head_arrival, 0.0) if resp.head_arrival else 0.0)
            rec.headers_ms = self.ms_since_base(now)
            rec.connect_ms = max(0.0, self.ms_since_base(resp.ready_at))
            if not 200 <= resp.status < 300:
                raise HTTPStatusError(f"HTTP {resp.status}", resp.status)
            if resp.content_type != _SSE:
                raise BadContentType(f"content-type {resp.content_type!r}, expected {_SSE}")
            rec.connected = True
            self.streaming = True
            await self._read(resp, plan, now)
        finally:
            # a stream read to its end keeps its connection for the next session; one left open
            # (legacy servers never close after completion) or cut off is closed: we must
            resp.release()

    async def _read(self, resp: Response, plan: FlowPlan, last: float) -> None:
        acc = _Accounting(self, plan, last)
        try:
            # pushed: each chunk is decoded and stamped in the connection's data callback,
            # and this task wakes once, at the end (no task switch per chunk)
            if await resp.consume(acc.feed):
                return
            acc.end()
        finally:
            acc.close()


class _Accounting:
    """Per-event accounting of one stream: decode, stamp, judge (the hot path). ``feed`` returns
    True once the session is over with success and raises StreamError on an error event."""

    __slots__ = (
        "state",
        "rec",
        "clock",
        "http",
        "scan",
        "rules",
        "answers",
        "decoder",
        "progress",
        "max_gap",
        "nbytes",
        "nevents",
        "last_events",
        "last",
    )

    def __init__(self, state: _Session, plan: FlowPlan, last: float) -> None:
        self.state, self.rec, self.clock, self.http = state, state.rec, state.clock, state.http
        self.rules = plan.rules
        self.scan = plan.rules.scan
        self.answers = plan.rules.answers()
        self.decoder = SSEDecoder(state.limits.max_line, state.limits.max_event)
        self.progress = 0
        self.max_gap = 0.0
        self.nbytes = 0
        self.nevents = 0
        self.last_events: list[Event] = []
        self.last = last

    def feed(self, chunk: bytes) -> bool:
        self.nbytes += len(chunk)
        events = self.decoder.feed(chunk)
        if not events:
            return False
        # when the bytes reached the socket, however late the loop; never before the bytes stamped before them
        # (two clocks are read per stamp, so pieces of one read could otherwise swap order by microseconds)
        now = max(self.clock() - self.http.receive_lag, self.last)
        self.last_events = events
        self.nevents += len(events)
        if now - self.last > self.max_gap:
            self.max_gap = now - self.last
        self.last = now
        n, done, error = self.scan(events)
        if n:
            first = not self.progress
            if first:
                self.rec.first_event_ms = (now - self.state.base) * 1000.0
            self.progress += n
            if self.answers.feed(events, n - done):  # the terminal event itself is no answer
                self.rec.ttfe_ms = (now - self.state.base) * 1000.0
            if first and self.state.shared.observers:
                self._tell_observers(events)
        if error is not None:
            raise StreamError(error)
        if done:
            self.succeed(now, f"event {self.rules.complete_on}")
            return True
        return False

    def _tell_observers(self, events: list[Event]) -> None:
        seen = FirstEvent(self.rec.scheduled, self.state.base, self.rec.ttfe_ms, time.time() - self.clock(), events)
        for observer in self.state.shared.observers:
            observer(seen)

    def succeed(self, now: float, how: str) -> None:
        """The terminal success event or clean close (``how``): ``ok`` only if an answer came."""
        if not self.answers.events:
            raise EmptyAnswer(f"{how} after {self.nevents} events, none with answer content")
        self.rec.completion_ms = (now - self.state.base) * 1000.0
        self.rec.outcome = Outcome.OK

    def end(self) -> None:
        """The stream closed cleanly: success only if the flow allows it and it got that far."""
        rules = self.rules
        self.decoder.flush()
        if rules.close_ok and self.progress and not ended_partial(self.last_events):
            self.succeed(self.clock(), "clean close")
            return
        raise PrematureClose(
            f"stream closed after {self.nevents} events without "
            f"{rules.complete_on or 'a final (non-partial) progress event'}"
        )

    def close(self) -> None:
        rec = self.rec
        rec.bytes, rec.events = self.nbytes, self.nevents
        rec.answer_events, rec.answer_chars = self.answers.events, self.answers.chars()
        rec.max_gap_ms = self.max_gap * 1000.0 if self.nevents else None


_CSRF = re.compile(r"(?:^|[ ,])csrf_token=([^;, ]*)")
_SESSION_ID_KEYS = ("session_id", "id", "sessionId")  # backend, ADK, and camelCase spellings


def _created_session_id(raw: bytes) -> str:
    """The id in a session-create answer; without one the stream could only 404, so say so now."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        for key in _SESSION_ID_KEYS:
            if isinstance(value := body.get(key), str) and value:
                return value
    raise ProtocolError("session create answered no session id (session_id, id or sessionId)")


class _Deadline:
    """Cancels its task when fired; remembers it did, so the cancellation reads as a timeout."""

    __slots__ = ("task", "cancelling", "fired")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self.task.cancel()


def _echo_csrf(headers: dict[str, str], value: str) -> None:
    """Echo the backend's CSRF cookie: ``X-CSRF-Token`` set, ``csrf_token`` added to the user's own
    ``Cookie`` (never replacing it: a cookie-authenticated service would refuse every stream), each
    header once whatever case the user wrote it in. A value that could split the request (CR, LF,
    any control character, non-Latin-1) is the server's protocol fault, refused here."""
    if not value.isprintable() or not value.isascii() or ";" in value:
        raise ProtocolError("the server's csrf_token cookie holds characters a header cannot carry")
    names = {k.lower(): k for k in headers}
    headers[names.get("x-csrf-token", "X-CSRF-Token")] = value
    cookie_name = names.get("cookie", "Cookie")
    mine = [c for c in headers.get(cookie_name, "").split(";") if c.strip() and not c.strip().startswith("csrf_token=")]
    headers[cookie_name] = "; ".join([*(c.strip() for c in mine), f"csrf_token={value}"])


def _csrf_value(raw: str) -> str | None:
    """The plain value of a ``csrf_token`` cookie in Set-Cookie text, or None when it needs the
    full parser (quoted, or found only inside another cookie's text)."""
    m = _CSRF.search(raw)
    value = m.group(1) if m else None
    return value if value and value[0] != '"' else None


def _classify(exc: BaseException, streaming: bool) -> SessionError:
    """Map an error that is not an outcome already (the transport's are) onto the outcome tree."""
    text = f"{type(exc).__name__}: {exc}"[:200]
    if isinstance(exc, OSError):  # the socket failed under us
        return PrematureClose(text) if streaming else ConnectError(text)
    return SessionError(f"internal error: {text}")


async def prepared_stream(
    http: Transport, opts: FlowOptions, timeouts: Timeouts, limits: Limits, shared: RunState | None = None
) -> tuple[Step, dict[str, str]]:
    """The stream request of one fresh session after its setup (session created, the server's id in
    place) and the headers it must carry (the CSRF echo): for a probe that reads the stream itself.
    Raises SessionError when the setup fails."""
    rec = SessionRecord(opts.flow, 0, scheduled=time.perf_counter())
    state = _Session(http, opts, timeouts, limits, rec, time.perf_counter, shared or RunState())
    plan = await state.setup(plan_session(opts, state.shared.adk_only))
    return plan.stream, state.headers


async def run_session(
    http: Transport,
    opts: FlowOptions,
    timeouts: Timeouts,
    limits: Limits,
    rec: SessionRecord,
    clock: Clock = time.perf_counter,
    shared: RunState | None = None,
) -> None:
    """Fill ``rec`` with what one session did. CancelledError is recorded, then re-raised.
    ``shared``: the state of the run this session belongs to (None: a session on its own)."""
    state = _Session(http, opts, timeouts, limits, rec, clock, shared or RunState())
    rec.started = clock()
    # the session deadline: one timer that cancels this task, as asyncio.timeout does, without its
    # Timeout object and event-loop look-ups (each of which costs a getpid system call)
    loop = http.loop
    task = asyncio.current_task(loop)
    assert task is not None
    deadline = _Deadline(task)
    handle = loop.call_at(loop.time() + timeouts.session, deadline.fire)
    try:
        try:
            plan = plan_session(opts, state.shared.adk_only)
            if plan.setup:
                t0 = clock()
                plan = await state.setup(plan)
                rec.setup_ms = (clock() - t0) * 1000.0
            if plan.start is not None:
                await state.call(plan.start)
            await state.stream(plan)
        except SessionError:
            raise
        except TimeoutError:
            raise SessionTimeout(f"session deadline of {timeouts.session:g}s passed") from None
        except asyncio.CancelledError:
            if deadline.fired and task.uncancel() <= deadline.cancelling:  # ours, not the run's
                raise SessionTimeout(f"session deadline of {timeouts.session:g}s passed") from None
            raise
        except Exception as exc:  # noqa: BLE001 - a crash inside one session is an outcome
            raise _classify(exc, state.streaming) from None
        finally:
            handle.cancel()
    except SessionError as err:
        rec.outcome = err.outcome
        rec.error = str(err)
        if err.status is not None:
            rec.status = err.status
    except asyncio.CancelledError:
        rec.outcome = Outcome.CANCELLED
        rec.error = "run stopped"
        raise
