"""What one session does on the wire, per flow, and what its events mean.

A flow is a sequence of requests: optional prerequisites (session creation, the legacy POST
that starts a run), then one streaming request whose events are judged by :class:`StreamRules`.
"""

from __future__ import annotations

import itertools
import operator
import random
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Literal

import orjson

from .._config import FlowOptions
from .sse import Event

__all__ = [
    "StreamRules",
    "Answers",
    "Step",
    "FlowPlan",
    "plan_session",
    "NO_ROUTE",
    "ended_partial",
    "NOT_PROGRESS",
]

# Named events that say nothing about the run's progress: never the first event.
NOT_PROGRESS = frozenset({"agent_network_connection", "keepalive", "heartbeat", "ping"})
# Unnamed frames of the older /agent_network_sse variant that are not progress either.
_NOT_PROGRESS_TYPES = frozenset({"connection", "heartbeat"})


@dataclass(frozen=True, slots=True)
class StreamRules:
    """``complete_on``: the named event that ends a session successfully (None: only a clean close).
    ``close_ok``: a clean close after at least one progress event is a success too.
    ``answer``: what carries answer content: "adk" (canonical), "legacy", or "generic" with
    ``answer_event`` (a named event) and/or ``answer_path`` (a dotted JSON path with a non-empty
    value); generic with neither: every progress event."""

    complete_on: str | None
    close_ok: bool
    answer: Literal["adk", "legacy", "generic"] = "generic"
    answer_event: str | None = None
    answer_path: str | None = None

    def answers(self) -> Answers:
        """A fresh per-session tracker of answer content for these rules."""
        if self.answer == "adk":
            return AdkAnswers()
        if self.answer == "legacy":
            return LegacyAnswers()
        return GenericAnswers(self.answer_event, tuple(self.answer_path.split(".")) if self.answer_path else ())

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


class Answers:
    """Answer content of one stream: which event first carried it, how many did, how much text.

    ``feed`` sees each decoded chunk's events and the number of its progress events (the terminal
    one excluded) and returns True for the chunk that holds the first answer. Until then an event is
    judged exactly (a cheap substring test, then a JSON parse only of the events that pass it);
    after it, answer events are counted without parsing, and the text is measured once, at the end
    (``chars``), from the final or cumulative text, so repeated text is not counted twice.
    """

    __slots__ = ("events", "last")

    def __init__(self) -> None:
        self.events = 0  # events that carried answer content
        self.last = ""  # the data the answer's length is read from at the end

    def feed(self, events: list[Event], progress: int) -> bool:
        if self.events:
            self.count(events, progress)
            return False
        return self.find(events, progress)

    def find(self, events: list[Event], progress: int) -> bool:
        raise NotImplementedError

    def count(self, events: list[Event], progress: int) -> None:
        raise NotImplementedError

    def chars(self) -> int:
        """Characters of answer text in the session (0 without an answer)."""
        raise NotImplementedError


class AdkAnswers(Answers):
    """Canonical: an unnamed ADK event with a non-empty ``content.parts[].text`` or a
    ``functionCall``. From that one on, every ADK event counts (partial text, the final event, tool
    calls): judging each would cost a substring pass over every event of the stream. The text is
    the last text event's: ADK's final (``partial: false``) event repeats the whole text of the
    partial events before it, so adding them up would count it twice."""

    __slots__ = ()

    def find(self, events: list[Event], progress: int) -> bool:
        for i, ev in enumerate(events):
            data = ev.data
            if ev.event == "message" and ('"text"' in data or '"functionCall"' in data) and _adk_parts(data)[1]:
                rest = events[i + 1 :]
                self.events = 1 + sum(1 for ev in rest if ev.event == "message")
                self.last = data
                self.count(rest, 0)
                return True
        return False

    def count(self, events: list[Event], progress: int) -> None:
        self.events += progress
        for ev in reversed(events):  # the chunk's last text event: nearly always its last event
            if '"text"' in ev.data:
                self.last = ev.data
                return

    def chars(self) -> int:
        return _adk_parts(self.last)[0] if self.events else 0


class LegacyAnswers(Answers):
    """Legacy: a ``research_update`` with a non-empty ``content``. The content is cumulative (all
    text so far) and the server repeats updates, so the text is the longest content seen."""

    __slots__ = ()

    def find(self, events: list[Event], progress: int) -> bool:
        for i, ev in enumerate(events):
            if ev.event == "research_update" and _legacy_content(ev.data):
                self.events = 1
                self.last = ev.data
                self.count(events[i + 1 :], 0)
                return True
        return False

    def count(self, events: list[Event], progress: int) -> None:
        updates = list(map(_NAME, events)).count("research_update")  # counted in C, no loop per event
        if updates:
            self.events += updates
            for ev in reversed(events):  # the chunk's last update holds its longest text
                if ev.event == "research_update":
                    if len(ev.data) > len(self.last):
                        self.last = ev.data
                    return

    def chars(self) -> int:
        return len(_legacy_content(self.last)) if self.events else 0


class GenericAnswers(Answers):
    """Generic: events named ``event`` (if set) whose JSON data has a non-empty value at ``path``
    (if set); with neither, every progress event but the terminal one. Its text is the data of
    every answer event, summed (a generic stream is taken to send deltas), measured only when an
    answer event or field is set: without one, summing every event's data would be a second pass
    over the bytes of the whole stream, for a figure that would only repeat ``bytes``."""

    __slots__ = ("event", "path", "key", "total")

    def __init__(self, event: str | None, path: tuple[str, ...]) -> None:
        super().__init__()
        self.event, self.path = event, path
        self.key = f'"{path[-1]}"' if path and not path[-1].isdigit() else ""  # substring test before a parse
        self.total = 0

    def find(self, events: list[Event], progress: int) -> bool:
        if self.event is None and not self.path:
            self.count(events, progress)
            return self.events > 0
        for i, ev in enumerate(events):
            if (self.event is None or ev.event == self.event) and (not self.path or _path_value(ev.data, self.path)):
                self.events, self.total = 1, len(ev.data)
                self.count(events[i + 1 :], 0)
                return True
        return False

    def count(self, events: list[Event], progress: int) -> None:
        if self.event is None and not self.path:  # every progress event: the scan counted them
            self.events += progress
            return
        event, key = self.event, self.key
        for ev in events:
            if (event is None or ev.event == event) and key in ev.data:
                self.events += 1
                self.total += len(ev.data)

    def chars(self) -> int:
        return self.total


def _adk_parts(data: str) -> tuple[int, bool]:
    """(characters of text, any answer content) of an ADK event's ``content.parts``."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return 0, False
    content = obj.get("content") if isinstance(obj, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return 0, False
    chars, answer = 0, False
    for part in parts:
        if isinstance(part, dict):
            text = part.get("text")
            if isinstance(text, str) and text:
                chars += len(text)
                answer = True
            elif part.get("functionCall"):
                answer = True
    return chars, answer


def _legacy_content(data: str) -> str:
    """A legacy update's ``content`` text, "" when it has none."""
    if '"content"' not in data:
        return ""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ""
    content = obj.get("content") if isinstance(obj, dict) else None
    return content if isinstance(content, str) else ""


def _path_value(data: str, path: tuple[str, ...]) -> object:
    """The value at a dotted path in JSON data (list items by index), None when absent or not JSON."""
    if not path[-1].isdigit() and f'"{path[-1]}"' not in data:
        return None  # the last key is nowhere in the text: no parse needed
    try:
        node: object = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    for key in path:
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


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
NO_ROUTE = frozenset({404, 405})  # what a server answers for a creation route it does not have

CANONICAL_RULES = StreamRules(complete_on="done", close_ok=True, answer="adk")
LEGACY_RULES = StreamRules(complete_on="research_complete", close_ok=False, answer="legacy")


def _session_setup(
    opts: FlowOptions, base: str, user: str, session: str, adk_only: Collection[tuple[str, str]]
) -> tuple[Step, ...]:
    """Session creation before ``/run_sse``.

    backend: ``POST .../sessions`` without an id; the server picks it (the backend answers
    ``session_id``, ADK's own route ``id``). adk: ``POST .../sessions/{our id}`` with ``{}``.
    auto: backend style first, since both the backend and ADK itself answer it, with ADK style as
    the fallback for a server without that route. ``adk_only``: the (URL, app) of cohorts where this
    run's earlier sessions found only ADK style; they go there at once.
    """
    sessions = f"{base}/apps/{opts.app}/users/{user}/sessions"
    adk = Step("POST", f"{sessions}/{session}", json={}, ok_statuses=_ALREADY_EXISTS)
    backend = Step("POST", sessions, json={}, creates_session=True)
    style = opts.session_create
    if style == "auto":
        return (adk,) if (opts.url, opts.app) in adk_only else (replace(backend, fallback=adk),)
    return {"adk": (adk,), "backend": (backend,)}.get(style, ())


def plan_session(opts: FlowOptions, adk_only: Collection[tuple[str, str]] = frozenset()) -> FlowPlan:
    """The requests of one fresh session (new uuids for user and session); ``adk_only`` as in
    :func:`_session_setup`."""
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
        return FlowPlan(_session_setup(opts, base, user, session, adk_only), None, stream, CANONICAL_RULES)
    if opts.flow == "legacy":
        run_url = f"{base}/apps/{opts.app}/users/{user}/sessions/{session}/run"
        start = Step("POST", run_url, json={"query": message}, is_message=True)
        stream_url = run_url if opts.legacy_stream == "run" else f"{base}/agent_network_sse/{session}"
        return FlowPlan((), start, Step("GET", stream_url), LEGACY_RULES)
    rules = StreamRules(
        complete_on=opts.complete_on,
        close_ok=opts.complete_on is None,
        answer_event=opts.first_answer_event,
        answer_path=opts.first_answer_field,
    )
    return FlowPlan((), None, Step(opts.method, opts.url, body=opts.body, is_message=True), rules)
