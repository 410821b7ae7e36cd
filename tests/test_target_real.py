"""The target's vana-real profile reproduces what the real backend does on the wire, and sseprobe's
flows run against it (and the default profile) end to end."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from sseprobe._config import FlowOptions, Limits, Timeouts
from sseprobe._outcomes import Outcome
from sseprobe._record import SessionRecord
from sseprobe.load.engine import make_client
from sseprobe.target import Target, TargetConfig
from sseprobe.target._real import MODEL_503, RATE_LIMITER_TIMEOUT, VanaReal
from sseprobe.wire.session import run_session

from .test_target import (
    RUN,
    assert_stays_open,
    config,
    create_session,
    fast,
    read_all,
    read_until,
    run_body,
    with_target,
)

EVENT_STREAM = "text/event-stream; charset=utf-8"


def real(**kw: Any) -> TargetConfig:
    return config(profile="vana-real", **kw)


def test_adk_routes_hide_the_flag_and_accept_any_app() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        async with s.post(f"{t.url}/apps/no-such-app/users/u1/sessions") as r:
            assert r.status == 200
            sid = (await r.json())["id"]
        async with s.post(t.url + "/run_sse", json={**run_body(sid), "appName": "no-such-app"}) as r:
            assert r.status == 200  # the flag is off: the backend's proxy would answer 501
            events = await read_all(r)
        assert events and all("event" not in e for e in events)  # no `event: done`: the stream just closes
        async with s.get(t.url + "/list-apps") as r:
            assert await r.json() == ["vana"]
        async with s.post(t.url + "/run_sse", json=run_body("never-created")) as r:
            assert r.status == 404

    with_target(real(canonical_enabled=False), body)


def test_canonical_bookkeeping_first_then_answer_at_the_model_delay() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        sid = await create_session(t, s)
        sent = time.time()
        async with s.post(t.url + "/run_sse", json=run_body(sid)) as r:
            assert r.headers["Content-Type"] == EVENT_STREAM and "Cache-Control" not in r.headers
            events = [e["json"] for e in await read_all(r)]
        first, *answers = events
        assert "content" not in first and first["actions"]["stateDelta"]
        assert [e["partial"] for e in answers] == [True, True, False] and answers[-1]["turnComplete"] is True
        texts = [e["content"]["parts"][0]["text"] for e in answers]
        assert all(texts) and texts[-1].startswith("".join(texts[:-1]))  # the final event carries the full text
        # answer text is never earlier than the model delay after the request left (truth stamps);
        # the bookkeeping event comes before it
        assert answers[0]["timestamp"] - sent >= 0.15 and first["timestamp"] <= answers[0]["timestamp"]

    with_target(real(model_delay_ms=150.0), body)


def test_headers_cookie_and_health() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        async with s.get(t.url + "/health") as r:
            health = await r.json()
            assert "Secure" in r.headers["Set-Cookie"] and "csrf_token=" in r.headers["Set-Cookie"]
        assert isinstance(health["dependencies"]["project_id"], str)
        assert health["dependencies"]["cloud_logging"] is True and health["status"] == "healthy"
        async with s.post(t.url + RUN.format("s1"), json={"query": "q"}) as r:
            assert "Secure" in r.headers["Set-Cookie"]
        async with s.get(t.url + RUN.format("s1")) as r:
            assert r.headers["Content-Type"] == EVENT_STREAM
            assert (r.headers["Cache-Control"], r.headers["X-Accel-Buffering"]) == ("no-cache", "no")
            await read_until(r, "research_complete")

    with_target(real(), body)


def test_legacy_status_at_post_cumulative_and_repeated_content() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        async with s.post(t.url + RUN.format("s1"), json={"query": "q"}) as r:
            assert r.status == 200
        async with s.get(t.url + RUN.format("s1")) as r:
            events = await read_until(r, "research_complete")
            await assert_stays_open(r)
        names = [e["event"] for e in events]
        assert names == ["agent_network_connection", "agent_status", *["research_update"] * 3, "research_complete"]
        assert events[1]["json"]["agents"][0]["current_task"] == "Processing request"
        contents = [e["json"]["content"] for e in events[2:5]]
        assert contents[1].startswith(contents[0]) and len(contents[1]) > len(contents[0])  # cumulative
        half = contents[2][: len(contents[2]) // 2]
        assert contents[2] == half * 2 and half.startswith(contents[1])  # the last update repeats the text
        assert events[-1]["json"]["content"] == contents[2]

    with_target(real(), body)


def test_agent_status_is_published_when_the_post_arrives() -> None:
    """Before the model answers (a long delay here), a subscriber already has agent_status."""

    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        await s.post(t.url + RUN.format("s1"), json={"query": "q"})
        async with s.get(t.url + RUN.format("s1")) as r:
            events = await read_until(r, "agent_status")
        assert [e["event"] for e in events] == ["agent_network_connection", "agent_status"]

    with_target(real(model_delay_ms=5000.0), body)


def test_late_subscriber_gets_the_whole_run_replayed() -> None:
    """More than the 10 events the specification says: the real backend replays up to 500."""

    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        await s.post(t.url + RUN.format("s1"), json={"query": "q"})
        await asyncio.sleep(0.3)  # the run is over before anyone subscribes
        async with s.get(t.url + RUN.format("s1")) as r:
            events = await read_until(r, "research_complete")
        assert len(events[1:]) == 32 and events[1]["event"] == "agent_status"  # 30 updates between

    with_target(real(legacy=fast(events=30, gap_ms=0.0)), body)


def test_replay_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(VanaReal, "replay", 5)

    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        await s.post(t.url + RUN.format("s1"), json={"query": "q"})
        await asyncio.sleep(0.3)
        async with s.get(t.url + RUN.format("s1")) as r:
            events = await read_until(r, "research_complete")
        assert len(events[1:]) == 5

    with_target(real(legacy=fast(events=30, gap_ms=0.0)), body)


def test_model_failure_masked_by_legacy_and_an_error_on_canonical() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        await s.post(t.url + RUN.format("s1"), json={"query": "q"})
        async with s.get(t.url + RUN.format("s1")) as r:
            events = await read_until(r, "research_complete")
        assert [e["event"] for e in events] == ["agent_network_connection", "agent_status", "research_complete"]
        assert events[-1]["json"]["content"] == "Research completed."
        sid = await create_session(t, s)
        async with s.post(t.url + "/run_sse", json=run_body(sid)) as r:
            canonical = [e["json"] for e in await read_all(r)]
        assert "content" not in canonical[0] and canonical[1:] == [{"error": MODEL_503}]
        async with s.get(t.url + "/_target/stats") as r:
            counters = await r.json()
        assert counters["legacy"]["model_failed"] == 1 and counters["canonical"]["model_failed"] == 1

    with_target(real(model_fail_rate=1.0), body)


def test_legacy_model_limiter_waits_then_refuses() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        for sid in ("s1", "s2", "s3"):
            await s.post(t.url + RUN.format(sid), json={"query": "q"})
        async with s.get(t.url + RUN.format("s3")) as r:
            events = await read_until(r, "error")
        assert events[-1]["json"]["error"] == RATE_LIMITER_TIMEOUT
        assert "research_update" not in [e["event"] for e in events]
        for sid in ("s1", "s2"):
            async with s.get(t.url + RUN.format(sid)) as r:
                await read_until(r, "research_complete")
        async with s.get(t.url + "/_target/stats") as r:
            assert (await r.json())["legacy"]["model_limited"] == 1

    with_target(real(legacy_model_limit=2, legacy_model_window_s=60.0, legacy_model_wait_s=0.1), body)


def test_legacy_model_limiter_admits_once_a_slot_frees() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        for sid in ("s1", "s2"):
            await s.post(t.url + RUN.format(sid), json={"query": "q"})
        async with s.get(t.url + RUN.format("s2")) as r:
            events = await read_until(r, "research_complete")
        assert "error" not in [e["event"] for e in events]
        async with s.get(t.url + "/_target/stats") as r:
            assert (await r.json())["legacy"]["model_limited"] == 0

    with_target(real(legacy_model_limit=1, legacy_model_window_s=0.2, legacy_model_wait_s=5.0), body)


def test_patch_reaches_the_profile_knobs_but_not_the_profile() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        async with s.patch(t.url + "/_target/config", json={"model_fail_rate": 1.0, "legacy_model_limit": 0}) as r:
            assert r.status == 200 and (await r.json())["model_fail_rate"] == 1.0
        await s.post(t.url + RUN.format("s1"), json={"query": "q"})
        async with s.get(t.url + RUN.format("s1")) as r:
            events = await read_until(r, "research_complete")
        assert events[-1]["json"]["content"] == "Research completed."
        async with s.patch(t.url + "/_target/config", json={"profile": "default"}) as r:
            assert r.status == 400
        async with s.patch(t.url + "/_target/config", json={"model_fail_rate": 2}) as r:
            assert r.status == 400

    with_target(real(), body)


# -- sseprobe's flows, end to end, against both profiles --------------------------------------------

TIMEOUTS = Timeouts(connect=10, idle=10, session=20)


async def flow_records(url: str, n: int, **opts: Any) -> list[SessionRecord]:
    flow = FlowOptions(url=url, **opts)
    records = []
    async with make_client(TIMEOUTS, Limits(), time.perf_counter) as http:
        for i in range(n):
            rec = SessionRecord(flow.flow, i, scheduled=time.perf_counter())
            await run_session(http, flow, TIMEOUTS, Limits(), rec)
            records.append(rec)
    return records


def run_flows(cfg: TargetConfig, n: int, **opts: Any) -> list[SessionRecord]:
    async def main() -> list[SessionRecord]:
        from sseprobe.target import running_target

        async with running_target(cfg) as target:
            return await flow_records(target.url, n, **opts)

    return asyncio.run(main())


@pytest.mark.parametrize("profile", ["default", "vana-real"])
@pytest.mark.parametrize(
    "opts",
    [{"flow": "canonical"}, {"flow": "legacy"}, {"flow": "legacy", "legacy_stream": "agent_network_sse"}],
    ids=["canonical", "legacy-run", "legacy-agent_network_sse"],
)
def test_flows_complete_against_both_profiles(profile: str, opts: dict[str, Any]) -> None:
    records = run_flows(config(profile=profile), 4, **opts)
    assert [(r.outcome, r.error) for r in records] == [(Outcome.OK, None)] * 4
    assert all(r.events >= 3 for r in records)


def test_older_stream_reads_its_unnamed_frames() -> None:
    """The older variant's own connection frame is not progress; the named events are."""
    (rec,) = run_flows(config(), 1, flow="legacy", legacy_stream="agent_network_sse")
    assert rec.outcome == Outcome.OK
    # connection frame + agent_status + 3 updates (the knob `events`: content events) + complete
    assert rec.events == 6 and rec.answer_events == 3


def test_masked_failure_carries_no_content_and_canonical_is_a_stream_error() -> None:
    """Legacy's masked failure ends with research_complete after only bookkeeping: no answer on the
    wire: the session is `empty`, never ok."""
    cfg = real(model_fail_rate=1.0)
    (legacy,) = run_flows(cfg, 1, flow="legacy")
    assert legacy.outcome == Outcome.EMPTY and legacy.events == 3  # connection, agent_status, complete
    assert legacy.answer_events == 0 and legacy.answer_chars == 0 and legacy.ttfe_ms is None
    (canonical,) = run_flows(cfg, 1, flow="canonical")
    assert canonical.outcome == Outcome.STREAM_ERROR and "503 UNAVAILABLE" in (canonical.error or "")
