"""Time to first answer, answer accounting and the ``empty`` outcome.

Sans-IO first (the detector fed bytes cut at every position, as test_sse does for the decoder),
then real sessions against small misbehaving servers on 127.0.0.1 that send what the real backend
was seen sending: a content-less ADK bookkeeping event before the model answers, and a legacy
stream that masks a model failure as ``research_complete`` with no update at all.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from sseprobe._config import FlowOptions, Limits, Timeouts
from sseprobe._outcomes import Outcome
from sseprobe._record import SessionRecord
from sseprobe.load.engine import make_client
from sseprobe.verdict.compare import judge
from sseprobe.verdict.stats import CohortStats
from sseprobe.wire.flows import CANONICAL_RULES, LEGACY_RULES, StreamRules
from sseprobe.wire.session import run_session
from sseprobe.wire.sse import Event, SSEDecoder

from .conftest import in_process
from .servers import in_a_thread

FAST = Timeouts(connect=2.0, idle=2.0, session=10.0)


def frame(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


BOOKKEEPING = {"actions": {"stateDelta": {"dispatcher_agent_start_time": 1.5}}, "author": "dispatcher", "id": "e0"}


def adk(text: str, partial: bool) -> dict[str, object]:
    event: dict[str, object] = {"content": {"parts": [{"text": text}], "role": "model"}, "author": "a", "id": "e"}
    if partial:
        event["partial"] = True
    return event


CANONICAL = (
    frame(BOOKKEEPING)
    + frame(adk("Hello, ", True))
    + frame(adk("world.", True))
    + frame(adk("Hello, world.", False))  # ADK's final event: the whole text again
    + frame({"status": "completed"}, "done")
)
LEGACY = (
    frame({"status": "connected"}, "agent_network_connection")
    + frame({"agents": [{"status": "active", "current_task": "Processing request"}]}, "agent_status")
    + frame({"content": "Finding one. "}, "research_update")
    + frame({"content": "Finding one. Finding two."}, "research_update")
    + frame({"content": "Finding one. Finding two."}, "research_update")  # the server repeats itself
    + frame({"content": "Finding one. Finding two.", "status": "completed"}, "research_complete")
)


def cuts(stream: bytes) -> list[list[bytes]]:
    """The stream whole, cut once at every byte, and in 1-byte pieces."""
    return [[stream], [stream[i : i + 1] for i in range(len(stream))]] + [
        [stream[:i], stream[i:]] for i in range(len(stream) + 1)
    ]


def detect(rules: StreamRules, pieces: list[bytes]) -> tuple[int | None, int, int]:
    """(index of the event in whose chunk the first answer was reported, answer events, chars)."""
    dec, answers, seen, first = SSEDecoder(), rules.answers(), 0, None
    for piece in pieces:
        events = dec.feed(piece)
        if not events:
            continue
        n, done, _ = rules.scan(events)
        if answers.feed(events, n - done) and first is None:
            first = seen
            assert any(seen <= i < seen + len(events) for i in [ANSWER_AT[rules.answer]]), (seen, len(events))
        seen += len(events)
    return first, answers.events, answers.chars()


def progress(rules: StreamRules, events: list[Event]) -> int:
    """Progress events of a chunk, the terminal one excluded: what a session passes to Answers.feed."""
    n, done, _ = rules.scan(events)
    return n - done


ANSWER_AT = {"adk": 1, "legacy": 2, "generic": 0}  # index of the first answer event in the streams above


def test_canonical_first_answer_is_the_first_text_however_the_bytes_are_cut() -> None:
    for pieces in cuts(CANONICAL):
        first, events, chars = detect(CANONICAL_RULES, pieces)
        assert first is not None, pieces
        # three events carry text; the final one repeats it all, so the text is counted once
        assert (events, chars) == (3, len("Hello, world.")), pieces


def test_legacy_first_answer_is_the_first_update_and_repeats_are_not_counted_twice() -> None:
    for pieces in cuts(LEGACY):
        first, events, chars = detect(LEGACY_RULES, pieces)
        assert first is not None, pieces
        assert (events, chars) == (3, len("Finding one. Finding two.")), pieces


def test_bookkeeping_only_streams_have_no_answer() -> None:
    masked = (
        frame({"status": "connected"}, "agent_network_connection")
        + frame({"agents": [{"progress": 0.1}]}, "agent_status")
        + frame({"content": "Research completed.", "status": "completed"}, "research_complete")
        + frame({"content": ""}, "research_update")  # an empty update is no answer either
    )
    tools = frame(BOOKKEEPING) + frame({"content": {"parts": [{"text": ""}]}, "text": "not a part"})
    for rules, stream in ((LEGACY_RULES, masked), (CANONICAL_RULES, tools)):
        for pieces in cuts(stream):
            assert detect(rules, pieces) == (None, 0, 0), pieces


def test_a_function_call_is_an_answer() -> None:
    call = frame(BOOKKEEPING) + frame({"content": {"parts": [{"functionCall": {"name": "search", "args": {}}}]}})
    answers = CANONICAL_RULES.answers()
    events = SSEDecoder().feed(call)
    assert answers.feed(events[:1], 1) is False and answers.feed(events[1:], 1) is True
    assert (answers.events, answers.chars()) == (1, 0)


def test_generic_first_answer_event_and_field() -> None:
    stream = (
        frame({"type": "start"}, "status")
        + frame({"choices": [{"delta": {"role": "assistant"}}]}, "token")
        + frame({"choices": [{"delta": {"content": "Hi"}}]}, "token")
        + frame({"choices": [{"delta": {"content": " there"}}]}, "token")
        + frame({"done": True}, "end")
    )
    default = StreamRules(complete_on="end", close_ok=False)
    by_event = StreamRules(complete_on="end", close_ok=False, answer_event="token")
    by_field = StreamRules(complete_on="end", close_ok=False, answer_path="choices.0.delta.content")
    both = StreamRules(complete_on="end", close_ok=False, answer_event="token", answer_path="choices.0.delta.content")
    events = SSEDecoder().feed(stream)
    # by default every data event is an answer, but the terminal event (`end`) is not
    for rules, first, count in ((default, 0, 4), (by_event, 1, 3), (by_field, 2, 2), (both, 2, 2)):
        answers = rules.answers()
        found = [i for i, ev in enumerate(events) if answers.feed([ev], progress(rules, [ev]))]
        assert found == [first] and answers.events == count, rules
    for pieces in cuts(stream):  # and however the bytes are cut, the same count
        dec, answers = SSEDecoder(), both.answers()
        for piece in pieces:
            evs = dec.feed(piece)
            answers.feed(evs, progress(both, evs))
        assert answers.events == 2, pieces


# --- real sessions against a small misbehaving server ----------------------------------------------


def _app() -> web.Application:
    """ADK session create, a canonical stream whose first event is bookkeeping, and legacy runs:
    app ``masked`` ends with research_complete and no update, app ``dup`` repeats cumulative text."""

    async def create(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["session"]})

    async def run_sse(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(frame(BOOKKEEPING))
        if body["appName"] == "failing":
            await resp.write(frame({"error": "503 UNAVAILABLE. The model is overloaded."}))
            return resp
        await asyncio.sleep(0.3)  # the model thinks: the answer comes 300 ms after the bookkeeping
        for ev in (adk("Hello, ", True), adk("world.", True), adk("Hello, world.", False)):
            await resp.write(frame(ev))
        return resp  # ADK closes after its last event, no `done`

    async def legacy_start(request: web.Request) -> web.Response:
        return web.json_response({"success": True, "session_id": request.match_info["session"]})

    async def legacy_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(frame({"status": "connected"}, "agent_network_connection"))
        await resp.write(frame({"agents": [{"current_task": "Processing request"}]}, "agent_status"))
        if request.match_info["app"] == "dup":
            text = ""
            for part in ("Alpha. ", "Beta. ", "Gamma."):
                text += part
                for _ in range(3):  # every cumulative update sent three times
                    await resp.write(frame({"content": text}, "research_update"))
            await resp.write(frame({"content": text, "status": "completed"}, "research_complete"))
        else:
            await resp.write(frame({"content": "Research completed.", "status": "completed"}, "research_complete"))
        await asyncio.sleep(3600)  # the legacy server never closes: the client must
        return resp

    app = web.Application()
    app.router.add_post("/apps/{app}/users/{user}/sessions/{session}", create)
    app.router.add_post("/run_sse", run_sse)
    app.router.add_post("/apps/{app}/users/{user}/sessions/{session}/run", legacy_start)
    app.router.add_get("/apps/{app}/users/{user}/sessions/{session}/run", legacy_stream)
    return app


@asynccontextmanager
async def server() -> AsyncIterator[str]:
    runner = web.AppRunner(_app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def sessions(base: str, n: int, **kw: object) -> list[SessionRecord]:
    opts = FlowOptions(url=base, **kw)  # type: ignore[arg-type]
    records = []
    async with make_client(FAST, Limits(), time.perf_counter) as http:
        for i in range(n):
            rec = SessionRecord(opts.flow, i, scheduled=time.perf_counter())
            await run_session(http, opts, FAST, Limits(), rec)
            records.append(rec)
    return records


def test_bookkeeping_first_event_is_first_event_not_ttfe() -> None:
    async def go() -> list[SessionRecord]:
        async with server() as base:
            return await sessions(base, 3, flow="canonical")

    for rec in asyncio.run(go()):
        assert rec.outcome == Outcome.OK, rec.error
        assert rec.first_event_ms is not None and rec.ttfe_ms is not None
        # the text cannot arrive before the server sent it, 300 ms after the bookkeeping event
        assert rec.ttfe_ms >= 300.0 and rec.first_event_ms < rec.ttfe_ms, rec
        assert (rec.answer_events, rec.answer_chars) == (3, len("Hello, world."))


def test_duplicated_cumulative_updates_do_not_inflate_answer_chars() -> None:
    async def go() -> list[SessionRecord]:
        async with server() as base:
            return await sessions(base, 2, flow="legacy", app="dup")

    for rec in asyncio.run(go()):
        assert rec.outcome == Outcome.OK, rec.error
        assert (rec.answer_events, rec.answer_chars) == (9, len("Alpha. Beta. Gamma."))


def test_masked_legacy_failure_is_empty_and_canonical_failure_is_red_against_it() -> None:
    async def go() -> tuple[list[SessionRecord], list[SessionRecord]]:
        async with server() as base:
            return (
                await sessions(base, 25, flow="legacy", app="masked"),
                await sessions(base, 25, flow="canonical", app="failing"),
            )

    legacy, canonical = asyncio.run(go())
    assert {r.outcome for r in legacy} == {Outcome.EMPTY}
    assert all(r.ttfe_ms is None and r.first_event_ms is not None and r.completion_ms is None for r in legacy)
    assert "none with answer content" in (legacy[0].error or "")
    assert {r.outcome for r in canonical} == {Outcome.STREAM_ERROR}
    stats = {name: CohortStats(flow=name) for name in ("legacy", "canonical")}
    for rec in legacy + canonical:
        stats[rec.cohort].add(rec)
    assert stats["legacy"].completion_rate == 0.0 and stats["legacy"].outcomes["empty"] == 25
    verdict = judge(stats["legacy"], stats["canonical"])
    assert verdict.overall == "RED", verdict.reasons
    reverse = judge(stats["canonical"], stats["legacy"])  # either way round: never GREEN
    assert reverse.overall == "RED", reverse.reasons


def test_run_of_masked_failures_is_red_and_says_why(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    lenient = tmp_path / "policy.toml"
    lenient.write_text("[triggers.completion_rate]\nenabled = false\n")
    with in_a_thread(server) as base:
        run = ("run", "--url", base, "-n", "5", "-c", "1", "--workers", "1", "--flow", "legacy", "--app", "masked")
        code, stdout, stderr = in_process(capfd, *run, "--out", str(out))
        lenient_code, _, lenient_err = in_process(
            capfd, *run, "--policy", str(lenient), "--out", str(tmp_path / "r2.json")
        )
    assert code == 2, (stdout, stderr)
    assert "completion_rate 0.00 % < 95.00 %" in stderr and "completion_rate" in stdout
    cohort = json.loads(out.read_text())["cohorts"]["legacy"]
    assert cohort["outcomes"] == {"empty": 5} and cohort["completion_rate"] == 0.0
    assert cohort["ttfe_ms"]["count"] == 0 and cohort["first_event_ms"]["count"] == 5
    assert cohort["answer_events"] == 0 and cohort["answer_chars"] == 0
    # a policy without the completion trigger still cannot pass a run where nothing completed
    assert lenient_code == 2 and "no session of 5 completed with an answer (empty 5)" in lenient_err


@pytest.mark.parametrize(
    ("field", "expected"),
    [("choices.0.delta.content", 2), ("choices.0.delta.nothing", 0)],
)
def test_generic_flow_first_answer_field_over_the_wire(field: str, expected: int) -> None:
    stream = (
        frame({"choices": [{"delta": {"role": "assistant"}}]}, "token")
        + frame({"choices": [{"delta": {"content": "Hi"}}]}, "token")
        + frame({"choices": [{"delta": {"content": " there"}}]}, "token")
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(stream)
        return resp

    async def go() -> SessionRecord:
        app = web.Application()
        app.router.add_get("/sse", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/sse"
            return (await sessions(url, 1, flow="generic", first_answer_event="token", first_answer_field=field))[0]
        finally:
            await runner.cleanup()

    rec = asyncio.run(go())
    assert rec.answer_events == expected
    if expected:
        assert rec.outcome == Outcome.OK and rec.ttfe_ms is not None and rec.first_event_ms is not None
    else:  # the stream closed cleanly, but no event carried the field: nothing was answered
        assert rec.outcome == Outcome.EMPTY and rec.ttfe_ms is None


def test_first_event_is_compared_within_a_flow_never_across_flows() -> None:
    def cohort(flow: str, first_ms: float) -> CohortStats:
        stats = CohortStats(flow=flow)
        for i in range(200):
            rec = SessionRecord(flow, i, 0.0, outcome=Outcome.OK, connected=True, status=200)
            rec.first_event_ms, rec.ttfe_ms, rec.completion_ms = first_ms, 100.0 + i % 7, 150.0 + i % 7
            stats.add(rec)
        return stats

    across = judge(cohort("legacy", 5.0), cohort("canonical", 60.0))
    assert "first_event_p95_ms" not in {m.name for m in across.metrics}
    assert any("first events are not compared between legacy and canonical" in r for r in across.reasons)
    # bookkeeping that differs by design is no regression (200 sessions cannot decide the rates: INCONCLUSIVE)
    assert across.overall not in ("YELLOW", "RED"), across.reasons
    within = judge(cohort("canonical", 5.0), cohort("canonical", 60.0))
    row = next(m for m in within.metrics if m.name == "first_event_p95_ms")
    assert row.level == "RED" and not row.critical and within.overall == "YELLOW", within.reasons
