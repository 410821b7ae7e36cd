"""The built-in reference target speaks PROTOCOLS.md faithfully and injects exactly what its knobs say."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from sseprobe.target import CohortKnobs, Target, TargetConfig, running_target
from sseprobe.target import _app as _target

Body = Callable[[Target, aiohttp.ClientSession], Awaitable[None]]
RUN = "/apps/vana/users/u1/sessions/{}/run"


def fast(**knobs: Any) -> CohortKnobs:
    """Knobs that keep each session a few milliseconds long."""
    return CohortKnobs(**{"ttfe_ms": 5.0, "ttfe_spread": 0.0, "events": 3, "gap_ms": 2.0, **knobs})


def config(canonical: CohortKnobs | None = None, legacy: CohortKnobs | None = None, **kw: Any) -> TargetConfig:
    return TargetConfig(canonical=canonical or fast(), legacy=legacy or fast(), **kw)


def with_target(cfg: TargetConfig, body: Body) -> None:
    """Run ``body`` against a fresh target on an ephemeral port, bounded in time."""

    async def main() -> None:
        async with running_target(cfg) as target, aiohttp.ClientSession() as session:
            await asyncio.wait_for(body(target, session), 10)

    asyncio.run(main())


async def next_event(resp: aiohttp.ClientResponse) -> dict[str, Any] | None:
    """Read one SSE frame (the target always ends frames with a blank line); None at EOF."""
    raw = await resp.content.readuntil(b"\n\n")
    if not raw.endswith(b"\n\n"):
        return None
    fields: dict[str, Any] = {}
    for line in raw.decode().strip("\n").split("\n"):
        name, _, value = line.partition(": ")
        fields[name] = value
    if "data" in fields:
        fields["json"] = json.loads(fields["data"])
    return fields


async def read_all(resp: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    events = []
    while (event := await next_event(resp)) is not None:
        events.append(event)
    return events


async def read_until(resp: aiohttp.ClientResponse, name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or events[-1].get("event") != name:
        event = await next_event(resp)
        assert event is not None, f"EOF before {name}: {events}"
        events.append(event)
    return events


async def assert_stays_open(resp: aiohttp.ClientResponse, seconds: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            await resp.content.read(1)


async def create_session(t: Target, s: aiohttp.ClientSession, user: str = "u1") -> str:
    """Create a session by id-less POST: the backend answers ``session_id``, ADK itself a session's ``id``."""
    async with s.post(f"{t.url}/apps/vana/users/{user}/sessions") as r:
        assert r.status == 200
        created = await r.json()
        adk_answers = t.config.adk_style or t.config.profile == "vana-real"  # vana-real: ADK's route answers
        return created["id"] if adk_answers else created["session_id"]


def run_body(sid: str, user: str = "u1") -> dict[str, Any]:
    return {
        "appName": "vana",
        "userId": user,
        "sessionId": sid,
        "newMessage": {"role": "user", "parts": [{"text": "test"}]},
        "streaming": True,
    }


async def canonical_events(t: Target, s: aiohttp.ClientSession) -> list[dict[str, Any]]:
    sid = await create_session(t, s)
    async with s.post(t.url + "/run_sse", json=run_body(sid)) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
        return await read_all(r)


async def stats(t: Target, s: aiohttp.ClientSession) -> dict[str, Any]:
    async with s.get(t.url + "/_target/stats") as r:
        return await r.json()


def test_health_both_shapes_and_degraded() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        async with s.get(t.url + "/health") as r:
            h = await r.json()
        assert (h["status"], h["service"], h["version"]) == ("healthy", "vana", "1.0.0")
        assert h["environment"] == {"current": "development", "migration_complete": True, "phase": "completed"}
        assert h["dependencies"]["session_storage"] is True and "agentNetwork" in h and "response_time_ms" in h
        t.config.health_ci_shape, t.config.unhealthy = True, True
        async with s.get(t.url + "/health") as r:
            h = await r.json()
        assert isinstance(h["environment"], str) and h["status"] == "degraded"
        assert h["dependencies"]["session_storage"] is False

    with_target(config(), body)


def test_sessions_backend_and_adk_shapes() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        async with s.post(t.url + "/apps/vana/users/u1/sessions") as r:
            created = await r.json()
            assert "csrf_token" in r.cookies
        assert created["success"] is True and re.fullmatch(r"session_[0-9a-f]{16}", created["session_id"])
        async with s.post(t.url + "/apps/vana/users/u1/sessions/s1", json={}) as r:
            assert r.status == 200
            assert {k: v for k, v in (await r.json()).items() if k != "lastUpdateTime"} == {
                "id": "s1",
                "appName": "vana",
                "userId": "u1",
                "state": {},
                "events": [],
            }
        async with s.post(t.url + "/apps/vana/users/u1/sessions/s1", json={}) as r:
            assert r.status == 400 and (await r.json())["detail"] == "Session already exists: s1"
        t.config.adk_style = True
        async with s.post(t.url + "/apps/any/users/u1/sessions") as r:
            assert "csrf_token" not in r.cookies and (await r.json())["appName"] == "any"

    with_target(config(), body)


def test_run_sse_422_501_404_200() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        async with s.post(t.url + "/run_sse", data=b"{not json", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 422 and (await r.json())["detail"][0]["type"] == "json_invalid"
        async with s.post(t.url + "/run_sse", json={"appName": "vana", "userId": "u1", "sessionId": "x"}) as r:
            assert r.status == 422 and (await r.json())["detail"][0]["loc"] == ["body", "newMessage"]
        async with s.post(t.url + "/run_sse", json=run_body("missing")) as r:
            assert r.status == 404 and (await r.json())["detail"] == "Session not found: missing"
        t.config.canonical_enabled = False
        async with s.post(t.url + "/run_sse", json={}) as r:
            assert r.status == 422  # a valid body comes before the flag
        async with s.post(t.url + "/run_sse", json=run_body("missing")) as r:
            assert r.status == 501 and (await r.json())["detail"].startswith("ADK canonical streaming not enabled.")
        t.config.canonical_enabled = True
        assert len(await canonical_events(t, s)) == 4

    with_target(config(), body)


def test_canonical_backend_stream_content_and_done() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        events = await canonical_events(t, s)
        *progress, done = events
        assert done["event"] == "done" and done["json"]["status"] == "completed"
        adk = [e["json"] for e in progress]
        assert all("event" not in e and "id" not in e for e in progress)  # unnamed data frames
        assert [e.get("partial") for e in adk] == [True, True, None] and "usageMetadata" in adk[-1]
        assert len({e["id"] for e in adk}) == 3 and len({e["invocationId"] for e in adk}) == 1
        assert all(e["author"] and e["content"]["parts"][0]["text"] for e in adk)
        stamps = [e["timestamp"] for e in adk]
        assert stamps == sorted(stamps) and abs(time.time() - stamps[-1]) < 1

    with_target(config(), body)


def test_canonical_adk_style_closes_after_last_event() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        events = await canonical_events(t, s)
        assert len(events) == 3 and all("event" not in e for e in events)
        assert "usageMetadata" in events[-1]["json"] and "partial" not in events[-1]["json"]

    with_target(config(adk_style=True), body)


@pytest.mark.parametrize("adk_style", [False, True])
def test_canonical_in_stream_error_shapes(adk_style: bool) -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        first, error = await canonical_events(t, s)
        assert "content" in first["json"] and "event" not in error
        if adk_style:
            assert error["json"]["error"].startswith("RuntimeError: ") and "error_details" in error["json"]
        else:
            assert error["json"]["error"] == "ADK upstream error: 500" and error["json"]["status_code"] == 500
            assert "detail" in error["json"]
        assert (await stats(t, s))["canonical"]["stream_error"] == 1

    with_target(config(canonical=fast(p_stream_error=1.0), adk_style=adk_style), body)


def test_legacy_flow_statuses_and_stream_stays_open() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        async with s.post(t.url + RUN.format("s1"), json={"topic": "x"}) as r:
            assert r.status == 400 and (await r.json())["detail"] == "Research query is required"
        async with s.post(t.url + "/apps/other/users/u1/sessions/s1/run", json={"query": "q"}) as r:
            assert r.status == 404
        async with s.get(t.url + RUN.format("never")) as r:
            assert r.status == 404
        async with s.post(t.url + RUN.format("s1"), json={"message": "q"}) as r:
            assert r.status == 200
            assert await r.json() == {
                **(await r.json()),
                "success": True,
                "session_id": "s1",
                "message": "Research session started successfully",
            }
        async with s.get(t.url + RUN.format("s1")) as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            assert (r.headers["Cache-Control"], r.headers["X-Accel-Buffering"]) == ("no-cache", "no")
            events = await read_until(r, "research_complete")
            await assert_stays_open(r)
        names = [e["event"] for e in events]
        assert names == [
            "agent_network_connection",
            "agent_status",  # bookkeeping, published on the POST
            "research_update",  # `events` (3) answer updates, the first at the TTFE knob
            "research_update",
            "research_update",
            "research_complete",
        ]
        assert "id" not in events[0] and events[0]["json"]["status"] == "connected"
        assert all(re.fullmatch(e["event"] + r"_\d+\.\d+", e["id"]) for e in events[1:])
        first, second = (e["json"]["content"] for e in events[2:4])
        assert second.startswith(first) and len(second) > len(first)  # cumulative, not deltas
        assert events[-1]["json"]["status"] == "completed"

    with_target(config(), body)


def test_legacy_keepalive_is_a_named_event() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        await s.post(t.url + RUN.format("s1"), json={"query": "q"})
        async with s.get(t.url + RUN.format("s1")) as r:
            await read_until(r, "research_complete")
            keepalive = await next_event(r)
        assert keepalive is not None and keepalive["event"] == "keepalive" and "id" not in keepalive

    with_target(config(keepalive_s=0.05), body)


def test_legacy_late_subscriber_gets_last_10_events() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        await s.post(t.url + RUN.format("s1"), json={"query": "q"})
        await asyncio.sleep(0.2)  # the whole run is over before anyone subscribes
        async with s.get(t.url + RUN.format("s1")) as r:
            events = await read_until(r, "research_complete")
        replay = events[1:]
        assert len(replay) == 10 and len({e["id"] for e in replay}) == 10
        # 17 events were published (agent_status, 15 updates, complete): the replay is their tail
        assert replay[0]["event"] == "research_update" and replay[0]["json"]["content"].count("Finding") == 7

    with_target(config(legacy=fast(events=15, gap_ms=1.0)), body)


def test_start_faults_5xx_and_429() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        sid = await create_session(t, s)
        for status, knob in ((500, "p_5xx"), (429, "p_429")):
            for cohort in (t.config.canonical, t.config.legacy):
                cohort.p_5xx = 0.0
                setattr(cohort, knob, 1.0)
            async with s.post(t.url + "/run_sse", json=run_body(sid)) as r:
                assert r.status == status
            async with s.post(t.url + RUN.format("s1"), json={"query": "q"}) as r:
                assert r.status == status
        st = await stats(t, s)
        for name in ("canonical", "legacy"):
            assert (st[name]["started"], st[name]["http_5xx"], st[name]["http_429"]) == (2, 1, 1)

    with_target(config(), body)


def test_premature_close_both_cohorts() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        events = await canonical_events(t, s)
        assert len(events) == 1 and events[0]["json"]["partial"] is True
        await s.post(t.url + RUN.format("s1"), json={"query": "q"})
        async with s.get(t.url + RUN.format("s1")) as r:
            names = [e["event"] for e in await read_all(r)]
        assert names == ["agent_network_connection", "agent_status", "agent_network_connection"]

    knobs = fast(p_premature_close=1.0)
    with_target(config(canonical=knobs, legacy=knobs), body)


def test_stall_goes_silent_until_stall_max_or_client_leaves() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        began = time.monotonic()
        events = await canonical_events(t, s)
        assert len(events) == 1 and 0.3 <= time.monotonic() - began < 1.0  # silent, then closed without `done`
        t.config.stall_max_s = 60
        sid = await create_session(t, s)
        async with s.post(t.url + "/run_sse", json=run_body(sid)) as r:
            await next_event(r)
            await assert_stays_open(r, 0.1)
            assert (await stats(t, s))["gauges"]["open_canonical_streams"] == 1
        await asyncio.sleep(0.1)
        assert (await stats(t, s))["gauges"]["open_canonical_streams"] == 0  # the client left: handler freed
        await s.post(t.url + RUN.format("s1"), json={"query": "q"})
        async with s.get(t.url + RUN.format("s1")) as r:
            names = [(await next_event(r) or {}).get("event") for _ in range(3)]
        assert names == ["agent_network_connection", "agent_status", "keepalive"]

    knobs = fast(p_stall=1.0)
    with_target(config(canonical=knobs, legacy=knobs, stall_max_s=0.3, keepalive_s=0.05), body)


def test_admin_patch_changes_behaviour_and_rejects_unknown_keys() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        patch = {"canonical": {"p_5xx": 1.0}, "canonical_enabled": False}
        async with s.patch(t.url + "/_target/config", json=patch) as r:
            assert r.status == 200 and (await r.json())["canonical"]["p_5xx"] == 1.0
        assert t.config.canonical.p_5xx == 1.0 and t.config.canonical.events == 3  # merged, live
        async with s.post(t.url + "/run_sse", json=run_body("x")) as r:
            assert r.status == 501
        for bad in ({"nope": 1}, {"legacy": {"nope": 1}}, {"legacy": {"p_429": 2}}, {"rate_limit": "x"}, [1]):
            async with s.patch(t.url + "/_target/config", json=bad) as r:
                assert r.status == 400, bad
        await s.patch(t.url + "/_target/config", json={"canonical_enabled": True, "canonical": {"p_5xx": 0}})
        assert len(await canonical_events(t, s)) == 4
        await s.patch(t.url + "/_target/config", json={"require_token": "sekrit"})
        async with s.get(t.url + "/_target/config") as r:  # admin stays reachable without the token
            assert (await r.json())["require_token"] == "***"  # and never echoes it

    with_target(config(), body)


def test_rate_limit_per_client_ip() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        statuses = []
        for _ in range(4):
            async with s.post(t.url + "/apps/vana/users/u1/sessions") as r:
                statuses.append(r.status)
        assert statuses == [200, 200, 200, 429]
        async with s.get(t.url + "/health") as r:
            assert r.status == 200  # health stays reachable
        assert (await stats(t, s))["rate_limited"] == 1

    with_target(config(rate_limit=3), body)


def test_require_token() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        async with s.post(t.url + "/apps/vana/users/u1/sessions") as r:
            assert r.status == 401
        async with s.post(t.url + "/apps/vana/users/u1/sessions", headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with s.post(t.url + "/apps/vana/users/u1/sessions", headers={"Authorization": "Bearer sekrit"}) as r:
            assert r.status == 200

    with_target(config(require_token="sekrit"), body)


def test_injected_ttfe_is_what_the_client_measures() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        sid = await create_session(t, s)
        sent = time.monotonic()
        async with s.post(t.url + "/run_sse", json=run_body(sid)) as r:
            first = await next_event(r)
            canonical_ms = (time.monotonic() - sent) * 1000
        assert first is not None and abs(time.time() - first["json"]["timestamp"]) < 0.05
        sent = time.monotonic()
        await s.post(t.url + RUN.format("s1"), json={"query": "q"})
        async with s.get(t.url + RUN.format("s1")) as r:
            await read_until(r, "research_update")  # the first answer: agent_status came on the POST
            legacy_ms = (time.monotonic() - sent) * 1000
        assert 195 <= canonical_ms <= 240 and 195 <= legacy_ms <= 240, (canonical_ms, legacy_ms)

    knobs = fast(ttfe_ms=200.0)
    with_target(config(canonical=knobs, legacy=knobs), body)


def test_older_agent_network_sse_mixes_unnamed_and_named_frames() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        async with s.get(t.url + "/agent_network_sse/s1") as r:  # subscribing before the run is allowed here
            connection = await next_event(r)
            heartbeat = await next_event(r)
            await s.post(t.url + RUN.format("s1"), json={"query": "q"})
            events = await read_until(r, "research_complete")
        assert connection is not None and connection["json"]["type"] == "connection" and "event" not in connection
        assert heartbeat is not None and heartbeat["json"]["type"] == "heartbeat"
        assert [e.get("event") for e in events if "event" in e][0] == "agent_status"

    with_target(config(keepalive_s=0.05), body)


def test_stream_state_is_freed_after_runs() -> None:
    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        async def legacy(i: int) -> None:
            await s.post(t.url + RUN.format(f"s{i}"), json={"query": "q"})
            async with s.get(t.url + RUN.format(f"s{i}")) as r:
                await read_until(r, "research_complete")

        await asyncio.gather(*(canonical_events(t, s) for _ in range(30)), *(legacy(i) for i in range(30)))
        await asyncio.sleep(0.05)
        gauges = (await stats(t, s))["gauges"]
        assert gauges["open_canonical_streams"] == gauges["legacy_runs"] == gauges["legacy_subscribers"] == 0

    with_target(config(), body)


def test_sessions_are_reusable_and_bounded_lru(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_target, "MAX_SESSIONS", 3)

    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        first = await create_session(t, s)
        others = [await create_session(t, s) for _ in range(2)]
        for _ in range(2):  # a session serves several runs; each use refreshes it
            async with s.post(t.url + "/run_sse", json=run_body(first)) as r:
                assert r.status == 200
                await read_all(r)
        await create_session(t, s)  # pushes out the least recently used: others[0]
        assert (await stats(t, s))["gauges"]["stored_sessions"] == 3
        async with s.post(t.url + "/run_sse", json=run_body(others[0])) as r:
            assert r.status == 404
        async with s.post(t.url + "/run_sse", json=run_body(first)) as r:
            assert r.status == 200

    with_target(config(), body)


def test_seed_makes_runs_reproducible() -> None:
    ids: list[list[str]] = []

    async def body(t: Target, s: aiohttp.ClientSession) -> None:
        ids.append([await create_session(t, s) for _ in range(3)])

    with_target(config(seed=7), body)
    with_target(config(seed=7), body)
    assert ids[0] == ids[1]
