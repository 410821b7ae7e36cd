"""What one session does on the wire, per flow, and what its events mean.

A flow is a sequence of requests: optional prerequisites (session creation, the legacy POST
that starts a run), then one streaming request whose events are judged by :class:`StreamRules`.
"""

from __future__ import annotations

import itertools
import operator
import random
from dataclasses import dataclass, replace

import orjson

from ._config import FlowOptions
from ._sse import Event

__all__ = ["StreamRules", "Step", "FlowPlan", "plan_session", "learned_adk_only", "ended_partial", "NOT_PROGRESS"]

# Named events that say nothing about the run's progress: never the first event.
NOT_PROGRESS = frozenset({"agent_network_connection", "keepalive", "heartbeat", "ping"})
# Unnamed frames of the older /agent_network_sse variant that are not progress either.
_NOT_PROGRESS_TYPES = frozenset({"connection", "heartbeat"})


@dataclass(frozen=True, slots=True)
class StreamRules:
    """``complete_on``: the named event that ends a session successfully (None: only a clean close).
    ``close_ok``: a clean close after at least one progress event is a success too."""

    complete_on: str | None
    close_ok: bool

    def scan(self, events: list[Event]) -> tuple[int, bool, str | None]:
        """(progress events, terminal success seen, error) for one chunk's events.

        Stops at the first terminal or error event. Hot path: one pass, string tests before
        any JSON parse.
        """
        complete_on = self.complete_on
        if len(events) > 4 and complete_on != "message":
            # bulk fast path: a run of unnamed events none of which can be an error or a
            # non-progress frame is all progress; checked with C-level scans, not a loop
            if set(map(_NAME, events)) == _MESSAGE_ONLY:
                values = list(map(_DATA, events))
                # the loop's own tests, in C: no '"error"' anywhere, no value opening '{"type"'
                if '"error"' not in "\n".join(values) and not any(map(str.startswith, values, _TYPE_FRAME)):
                    return len(events), False, None
        progress = 0
        for ev in events:
            name = ev.event
            if name == "message":
                data = ev.data
                if data.startswith('{"'):
                    if '"error"' in data or data.startswith('{"type"'):
                        kind = _frame_kind(data)
                        if kind is _ERROR:
                            return progress, False, f"in-stream error: {_short(data)}"
                        if kind is _NOT_PROGRESS:
                            continue
            elif name in NOT_PROGRESS:
                continue
            elif name == "error":
                return progress, False, f"event: error {_short(ev.data)}"
            progress += 1
            if name == complete_on:
                return progress, True, None
        return progress, False, None


def ended_partial(events: list[Event]) -> bool:
    """Did the stream's last event say ``"partial": true``? An ADK stream that closes there was cut
    off mid-answer: a clean close after it is no success."""
    if not events:
        return False
    data = events[-1].data
    return '"partial": true' in data or '"partial":true' in data


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_ERROR, _NOT_PROGRESS = object(), object()
_NAME, _DATA = operator.itemgetter(0), operator.itemgetter(1)  # Event.event, Event.data
_MESSAGE_ONLY = {"message"}
_TYPE_FRAME = itertools.repeat('{"type"')


def _frame_kind(data: str) -> object:
    """_ERROR for an error JSON (an "error" key, or the older variant's type "error"),
    _NOT_PROGRESS for the older variant's connection/heartbeat frames, else None."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if obj.get("error") or obj.get("type") == "error":
        return _ERROR
    if obj.get("type") in _NOT_PROGRESS_TYPES:
        return _NOT_PROGRESS
    return None


@dataclass(frozen=True, slots=True)
class Step:
    """One HTTP request. ``ok_statuses`` beyond 2xx are tolerated (ADK's 400 'already exists')."""

    method: str
    url: str
    json: object | None = None
    body: bytes | None = None
    ok_statuses: frozenset[int] = frozenset()
    is_message: bool = False  # the request that sends the user's message: latencies start here
    creates_session: bool = False  # answers with the session id the server chose: the stream must use it
    fallback: Step | None = None  # sent instead when this one answers 404/405 (the route is not there)

    def json_bytes(self) -> bytes:
        """``json`` serialised (orjson: compact, UTF-8), the body sent with ``application/json``."""
        return orjson.dumps(self.json)


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """``setup``: prerequisites, not timed as latency; ``start``: a request that sends the message
    before the stream is opened (legacy); ``stream``: the request whose events are judged."""

    setup: tuple[Step, ...]
    start: Step | None
    stream: Step
    rules: StreamRules

    def with_session(self, session_id: str) -> FlowPlan:
        """The plan with the server-chosen session id in the stream request's body (its ``sessionId``):
        a server that picks the id answers 404 to any other."""
        body = self.stream.json
        if not isinstance(body, dict):
            return self
        return replace(self, stream=replace(self.stream, json={**body, "sessionId": session_id}))


_bits = random.getrandbits
_ALREADY_EXISTS = frozenset({400})  # ADK's "session already exists": harmless
_NO_ROUTE = frozenset({404, 405})  # what a server answers for a creation route it does not have
# (base URL, app) of cohorts where `auto` found only ADK-style creation: later sessions go there at once
_ADK_ONLY: set[tuple[str, str]] = set()

CANONICAL_RULES = StreamRules(complete_on="done", close_ok=True)
LEGACY_RULES = StreamRules(complete_on="research_complete", close_ok=False)


def learned_adk_only(opts: FlowOptions) -> None:
    """`auto` creation fell back to ADK style for this cohort: remember it, so no later session pays
    the failed backend-style request again."""
    _ADK_ONLY.add((opts.url, opts.app))


def _session_setup(opts: FlowOptions, base: str, user: str, session: str) -> tuple[Step, ...]:
    """Session creation before ``/run_sse``.

    backend: ``POST .../sessions`` without an id; the server picks it (the backend answers
    ``session_id``, ADK's own route ``id``). adk: ``POST .../sessions/{our id}`` with ``{}``.
    auto: backend style first, since both the backend and ADK itself answer it, with ADK style as
    the fallback for a server without that route; the fallback is remembered per cohort.
    """
    sessions = f"{base}/apps/{opts.app}/users/{user}/sessions"
    adk = Step("POST", f"{sessions}/{session}", json={}, ok_statuses=_ALREADY_EXISTS)
    backend = Step("POST", sessions, json={}, creates_session=True)
    style = opts.session_create
    if style == "auto":
        return (adk,) if (opts.url, opts.app) in _ADK_ONLY else (replace(backend, fallback=adk),)
    return {"adk": (adk,), "backend": (backend,)}.get(style, ())


def plan_session(opts: FlowOptions) -> FlowPlan:
    """The requests of one fresh session (new uuids for user and session)."""
    base = opts.url.rstrip("/")
    message = random.choice(opts.messages)
    # random ids without uuid4's os.urandom call per id; `random` reseeds itself in forked workers
    user = f"{opts.user_prefix}-{_bits(48):012x}"
    session = f"{_bits(128):032x}"
    if opts.flow == "canonical":
        body = {
            "appName": opts.app,
            "userId": user,
            "sessionId": session,
            "newMessage": {"role": "user", "parts": [{"text": message}]},
            "streaming": True,
        }
        stream = Step("POST", f"{base}/run_sse", json=body, is_message=True)
        return FlowPlan(_session_setup(opts, base, user, session), None, stream, CANONICAL_RULES)
    if opts.flow == "legacy":
        run_url = f"{base}/apps/{opts.app}/users/{user}/sessions/{session}/run"
        start = Step("POST", run_url, json={"query": message}, is_message=True)
        stream_url = run_url if opts.legacy_stream == "run" else f"{base}/agent_network_sse/{session}"
        return FlowPlan((), start, Step("GET", stream_url), LEGACY_RULES)
    rules = StreamRules(complete_on=opts.complete_on, close_ok=opts.complete_on is None)
    return FlowPlan((), None, Step(opts.method, opts.url, body=opts.body, is_message=True), rules)
