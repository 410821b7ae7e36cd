"""Session creation before /run_sse: the stream must name the session the server knows.

backend style lets the server choose the id and must use it (any other id is a 404); adk style
sends its own; auto tries the route both the backend and ADK answer, falls back to ADK style where
that route is missing, and remembers the fallback for the cohort.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from aiohttp import web

from sseprobe._config import FlowOptions, Limits, Timeouts
from sseprobe._outcomes import Outcome
from sseprobe._record import SessionRecord
from sseprobe.load.engine import make_client
from sseprobe.target import CohortKnobs, TargetConfig, running_target
from sseprobe.wire.session import RunState, run_session

from .conftest import in_process, target_process

FAST = CohortKnobs(ttfe_ms=5.0, ttfe_spread=0.0, events=3, gap_ms=2.0)
TIMEOUTS = Timeouts(connect=10, idle=10, session=20)


async def run_sessions(opts: FlowOptions, n: int) -> list[SessionRecord]:
    records = []
    shared = RunState()  # the n sessions are one run: what one learns, the next knows
    async with make_client(TIMEOUTS, Limits(), time.perf_counter) as http:
        for i in range(n):
            rec = SessionRecord(opts.flow, i, scheduled=time.perf_counter())
            await run_session(http, opts, TIMEOUTS, Limits(), rec, shared=shared)
            records.append(rec)
    return records


def outcomes(records: list[SessionRecord]) -> list[str]:
    return [f"{r.outcome}: {r.error}" if r.outcome != Outcome.OK else "ok" for r in records]


@pytest.mark.parametrize("profile", ["default", "vana-real"])
@pytest.mark.parametrize("style", ["backend", "auto", "adk"])
def test_every_style_completes_against_the_target(profile: str, style: Literal["backend", "auto", "adk"]) -> None:
    async def main() -> None:
        cfg = TargetConfig(canonical=FAST, legacy=FAST, profile=profile)
        async with running_target(cfg) as target:
            records = await run_sessions(FlowOptions(url=target.url, session_create=style), 4)
            assert outcomes(records) == ["ok"] * 4
            assert target.stats.canonical.completed == 4

    asyncio.run(main())


def test_backend_style_uses_the_id_the_server_chose() -> None:
    """The default profile answers the backend's ``session_id``; ours would be a 404."""

    async def main() -> None:
        async with only_server_ids() as server:
            records = await run_sessions(FlowOptions(url=server.url, session_create="backend"), 3)
            assert outcomes(records) == ["ok"] * 3
            assert server.streamed == server.created and len(set(server.created)) == 3

    asyncio.run(main())


@pytest.mark.parametrize("key", ["session_id", "id", "sessionId"])
def test_each_spelling_of_the_returned_id_is_used(key: str) -> None:
    async def main() -> None:
        async with only_server_ids(id_key=key) as server:
            records = await run_sessions(FlowOptions(url=server.url, session_create="backend"), 1)
            assert outcomes(records) == ["ok"]
            assert server.streamed == server.created

    asyncio.run(main())


def test_a_create_answer_without_an_id_is_a_protocol_error() -> None:
    async def main() -> None:
        async with only_server_ids(id_key=None) as server:
            (rec,) = await run_sessions(FlowOptions(url=server.url, session_create="backend"), 1)
            assert rec.outcome == Outcome.PROTOCOL_ERROR and "no session id" in (rec.error or "")
            assert server.streamed == []  # the stream is not even tried

    asyncio.run(main())


def test_auto_falls_back_to_adk_style_once_per_cohort() -> None:
    """A server with only the named create route: the first session pays one 404, later ones go
    straight to ADK style."""

    async def main() -> None:
        async with only_server_ids(collection_route=False) as server:
            records = await run_sessions(FlowOptions(url=server.url, session_create="auto"), 4)
            assert outcomes(records) == ["ok"] * 4
            assert server.collection_posts == 1
            assert len(server.named_creates) == 4 and server.streamed == server.named_creates

    asyncio.run(main())


def test_auto_uses_the_backend_route_when_it_answers() -> None:
    async def main() -> None:
        async with only_server_ids() as server:
            records = await run_sessions(FlowOptions(url=server.url, session_create="auto"), 3)
            assert outcomes(records) == ["ok"] * 3
            assert server.collection_posts == 3 and server.named_creates == []
            assert server.streamed == server.created

    asyncio.run(main())


class _IdServer:
    """A service that knows only the sessions it created, and records which ids each route saw."""

    def __init__(self, id_key: str | None, collection_route: bool) -> None:
        self.id_key, self.collection_route = id_key, collection_route
        self.created: list[str] = []  # ids the server chose
        self.named_creates: list[str] = []  # ids the client chose (ADK style)
        self.streamed: list[str] = []
        self.collection_posts = 0
        self.url = ""

    async def create(self, request: web.Request) -> web.Response:
        self.collection_posts += 1
        sid = f"session_{len(self.created):04d}_server"
        self.created.append(sid)
        body: dict[str, Any] = {"success": True}
        if self.id_key is not None:
            body[self.id_key] = sid
        return web.json_response(body)

    async def no_route(self, request: web.Request) -> web.Response:
        """Counted, then the 404 a server without the id-less route answers."""
        self.collection_posts += 1
        return web.json_response({"detail": "Not Found"}, status=404)

    async def create_named(self, request: web.Request) -> web.Response:
        sid = request.match_info["session"]
        self.named_creates.append(sid)
        return web.json_response({"id": sid, "state": {}})

    async def run_sse(self, request: web.Request) -> web.StreamResponse:
        sid = orjson.loads(await request.read())["sessionId"]
        if sid not in self.created and sid not in self.named_creates:
            return web.json_response({"detail": f"Session not found: {sid}"}, status=404)
        self.streamed.append(sid)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"content": {"parts": [{"text": "hi"}]}}\n\nevent: done\ndata: {}\n\n')
        return resp


@asynccontextmanager
async def only_server_ids(id_key: str | None = "session_id", collection_route: bool = True) -> AsyncIterator[_IdServer]:
    server = _IdServer(id_key, collection_route)
    app = web.Application()
    sessions = "/apps/{app}/users/{user}/sessions"
    app.router.add_post(sessions, server.create if collection_route else server.no_route)
    app.router.add_post(sessions + "/{session}", server.create_named)
    app.router.add_post("/run_sse", server.run_sse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield server
    finally:
        await runner.cleanup()


def test_cli_options_reach_the_flows(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """--session-create and --legacy-stream from the command line, against the vana-real target process."""
    with target_process("--profile", "vana-real", "--legacy-model-limit", "0") as url:
        for args in (
            ["--flow", "canonical", "--session-create", "backend"],
            ["--flow", "legacy", "--legacy-stream", "agent_network_sse"],
        ):
            out = tmp_path / "r.json"
            done = in_process(capfd, "run", *args, "--url", url, "-n", "3", "-c", "1", "--workers", "1", "-o", str(out))
            assert done.returncode == 0, done.stdout + done.stderr
            doc = json.loads(out.read_text())
            cohort = doc["cohorts"][args[1]]
            assert cohort["outcomes"] == {"ok": 3}
            assert args[3] in doc["config"]["cohorts"][args[1]].values()


def test_bad_choices_are_one_line_exit_3(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text('[cohorts.legacy]\nflow = "legacy"\nlegacy_stream = "websocket"\n')
    for args in (
        ["--session-create", "guess"],
        ["--legacy-stream", "websocket"],
        ["--scenario", str(scenario)],
    ):
        code, _out, err = in_process(capfd, "run", "--flow", "legacy", "--url", "http://127.0.0.1:9", "-n", "1", *args)
        assert code == 3 and "Traceback" not in err, err
        assert len(err.strip().splitlines()) <= 3  # click's usage line may precede the error
    code, _out, err = in_process(capfd, "run", "--scenario", str(scenario), "--url", "http://127.0.0.1:9", "-n", "1")
    assert "legacy_stream" in err and "agent_network_sse" in err
