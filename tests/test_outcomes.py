"""Every outcome class, produced by a real misbehaving server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import resource
import time

import pytest

from sseprobe._config import FlowOptions, Limits, Timeouts
from sseprobe._outcomes import Outcome
from sseprobe._record import SessionRecord
from sseprobe.load.engine import CohortSpec, Load, RunControl, make_client, run_load
from sseprobe.wire.session import run_session

from .servers import client_tls, misbehaving_server, raw_server, refused_url, silent_server

FAST = Timeouts(connect=1.0, idle=0.5, session=5.0)


@pytest.fixture(params=[False, True], ids=["http", "https"])
def tls(request: pytest.FixtureRequest) -> bool:
    """Every outcome over plain http and over TLS (the same servers behind a test-CA certificate)."""
    return bool(request.param)


async def _one(url: str, timeouts: Timeouts = FAST, limits: Limits = Limits(), **kw: object) -> SessionRecord:
    if url.startswith("https://"):
        kw.setdefault("tls", client_tls())
    opts = FlowOptions(flow="generic", url=url, **kw)  # type: ignore[arg-type]
    rec = SessionRecord("generic", 0, scheduled=time.perf_counter())
    async with make_client(timeouts, limits, time.perf_counter) as http:
        await run_session(http, opts, timeouts, limits, rec)
    return rec


def one(tls: bool, path: str, **kw: object) -> SessionRecord:
    async def go() -> SessionRecord:
        async with misbehaving_server(tls) as base:
            return await _one(base + path, **kw)  # type: ignore[arg-type]

    return asyncio.run(go())


def test_ok_and_comment_is_not_first_event(tls: bool) -> None:
    rec = one(tls, "/ok", complete_on="done")
    assert rec.outcome == Outcome.OK, rec.error
    assert rec.connected and rec.status == 200
    assert rec.events == 2  # the comment is not an event
    assert rec.ttfe_ms is not None and rec.completion_ms is not None and rec.headers_ms is not None
    assert 0 <= rec.headers_ms <= rec.ttfe_ms <= rec.completion_ms


def test_clean_close_after_events_is_ok_without_complete_on(tls: bool) -> None:
    assert one(tls, "/early-close").outcome == Outcome.OK


@pytest.mark.parametrize("code", [500, 503, 429, 404])
def test_http_error_keeps_status(code: int, tls: bool) -> None:
    rec = one(tls, f"/status/{code}")
    assert rec.outcome == Outcome.HTTP_ERROR
    assert rec.status == code and not rec.connected


def test_html_is_bad_content_type(tls: bool) -> None:
    rec = one(tls, "/html")
    assert rec.outcome == Outcome.BAD_CONTENT_TYPE and rec.status == 200 and not rec.connected


def test_adk_error_json_inside_200_stream_is_stream_error(tls: bool) -> None:
    rec = one(tls, "/adk-error", method="POST")
    assert rec.outcome == Outcome.STREAM_ERROR and rec.status == 200 and rec.connected
    assert "RuntimeError: boom" in (rec.error or "")
    assert rec.ttfe_ms is not None  # the first event was progress


def test_named_error_event_is_stream_error(tls: bool) -> None:
    assert one(tls, "/named-error").outcome == Outcome.STREAM_ERROR


def test_close_before_completion_event_is_premature_close(tls: bool) -> None:
    rec = one(tls, "/early-close", complete_on="research_complete")
    assert rec.outcome == Outcome.PREMATURE_CLOSE
    assert rec.ttfe_ms is not None and rec.completion_ms is None


def test_connection_cut_mid_stream_is_premature_close(tls: bool) -> None:
    assert one(tls, "/truncated", complete_on="done").outcome == Outcome.PREMATURE_CLOSE


def test_stall_past_idle_timeout(tls: bool) -> None:
    rec = one(tls, "/stall", complete_on="done")
    assert rec.outcome == Outcome.IDLE_TIMEOUT, rec.error
    assert rec.ttfe_ms is not None


def test_keepalives_alone_never_make_a_first_event(tls: bool) -> None:
    rec = one(tls, "/only-keepalive", complete_on="done")
    assert rec.ttfe_ms is None and rec.events == 1
    assert rec.outcome == Outcome.IDLE_TIMEOUT


def test_session_deadline_is_timeout(tls: bool) -> None:
    rec = one(tls, "/stall", timeouts=Timeouts(connect=1.0, idle=5.0, session=0.4), complete_on="done")
    assert rec.outcome == Outcome.TIMEOUT and "deadline" in (rec.error or "")


def test_huge_line_is_protocol_error_with_bounded_memory(tls: bool) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rec = one(tls, "/huge-line", timeouts=Timeouts(connect=2, idle=5, session=30), complete_on="done")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert rec.outcome == Outcome.PROTOCOL_ERROR, rec.error
    assert rec.bytes < 8 << 20  # stopped reading long before the 50 MiB
    assert grown_kib < 40 << 10  # nowhere near holding the line in memory


def test_refused_connection_is_connect_error(tls: bool) -> None:
    rec = asyncio.run(_one(refused_url(tls)))
    assert rec.outcome == Outcome.CONNECT_ERROR and rec.status is None


def test_no_response_headers_is_timeout(tls: bool) -> None:
    async def go() -> SessionRecord:
        async with silent_server(tls) as base:
            return await _one(base + "/sse", timeouts=Timeouts(connect=0.3, idle=5, session=5))

    rec = asyncio.run(go())
    assert rec.outcome == Outcome.TIMEOUT and "headers" in (rec.error or "")


def test_stopping_a_run_cancels_in_flight_sessions_and_keeps_their_records(tls: bool) -> None:
    records: list[SessionRecord] = []

    async def go() -> None:
        async with misbehaving_server(tls) as base:
            control = RunControl()
            opts = FlowOptions(flow="generic", url=base + "/stall", complete_on="done", tls=client_tls())
            load = Load(sessions=5, concurrency=5, grace=0.1)
            timeouts = Timeouts(connect=1, idle=30, session=30)
            asyncio.get_running_loop().call_later(0.3, control.stop, "test stop")
            info = await run_load([CohortSpec("c", opts)], load, records.append, timeouts, Limits(), control)
            assert info.interrupted and info.stop_reason == "test stop"

    asyncio.run(go())
    assert len(records) == 5
    assert {r.outcome for r in records} == {Outcome.CANCELLED}
    assert all(r.ttfe_ms is not None for r in records)  # what was measured is kept


def test_adk_style_close_after_partial_event_is_premature() -> None:
    """ADK's api_server just closes after the last event: a close right after a partial one
    means the answer was cut off; a close after the final one is a success. (Plain http only:
    the built-in target serves no TLS.)"""
    from sseprobe.target import CohortKnobs, TargetConfig, running_target

    async def go(p_close: float) -> SessionRecord:
        cfg = TargetConfig(
            canonical=CohortKnobs(ttfe_ms=5, ttfe_spread=0, gap_ms=1, events=4, p_premature_close=p_close),
            adk_style=True,
        )
        async with running_target(cfg) as t:
            opts = FlowOptions(flow="canonical", url=t.url)
            rec = SessionRecord("canonical", 0, scheduled=time.perf_counter())
            async with make_client(FAST, Limits(), time.perf_counter) as http:
                await run_session(http, opts, FAST, Limits(), rec)
            return rec

    ok = asyncio.run(go(0.0))
    assert ok.outcome == Outcome.OK
    assert ok.tcp_ms is not None and ok.tls_ms is None  # the session-create request opened the connection
    cut = asyncio.run(go(1.0))
    assert cut.outcome == Outcome.PREMATURE_CLOSE and cut.ttfe_ms is not None


_SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


@pytest.mark.parametrize(
    ("response", "says"),
    [
        (_SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\ndata:\r\n0\r\n\r\n", "chunk size"),
        (_SSE_HEAD + b"Content-Length: +5\r\n\r\ndata:", "Content-Length"),
        (b"HTTP/1.1 2000 OK\r\nContent-Type: text/event-stream\r\n\r\n", "status"),
        (b"HTTP/1.1 200 OK\nContent-Type: text/event-stream\n\n", "CR"),
        (_SSE_HEAD + b"X-Pad: " + b"a" * (80 * 1024) + b"\r\n\r\n", "head longer"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", "switched protocols"),
        (b"\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64", "HTTP/2"),
        (_SSE_HEAD + b"Content-Encoding: br\r\n\r\ndata: x\n\n", "Content-Encoding"),
    ],
    ids=["chunk-0x5", "length-plus5", "status-2000", "bare-LF", "oversized-head", "101", "http2", "brotli"],
)
def test_malformed_response_is_protocol_error_naming_the_fault(response: bytes, says: str, tls: bool) -> None:
    async def go() -> SessionRecord:
        async with raw_server(response, tls) as base:
            return await _one(base + "/sse")

    rec = asyncio.run(go())
    assert rec.outcome == Outcome.PROTOCOL_ERROR, rec.error
    assert says in (rec.error or ""), rec.error


def test_gzip_stream_is_inflated(tls: bool) -> None:
    import gzip

    body = gzip.compress(b'data: {"text": "hi"}\n\nevent: done\ndata: {}\n\n')
    response = _SSE_HEAD + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    async def go() -> SessionRecord:
        async with raw_server(response, tls) as base:
            return await _one(base + "/sse", complete_on="done")

    rec = asyncio.run(go())
    assert rec.outcome == Outcome.OK and rec.events == 2, rec.error


def test_new_connection_times_tcp_and_tls(tls: bool) -> None:
    rec = one(tls, "/ok", complete_on="done")
    assert rec.tcp_ms is not None and rec.tcp_ms >= 0
    assert (rec.tls_ms is not None and rec.tls_ms > 0) if tls else rec.tls_ms is None


def test_untrusted_certificate_is_connect_error_unless_insecure() -> None:
    from sseprobe._config import TLSOptions

    async def go(opts: TLSOptions) -> SessionRecord:
        async with misbehaving_server(tls=True) as base:
            return await _one(base + "/ok", complete_on="done", tls=opts)

    untrusted = asyncio.run(go(TLSOptions()))  # the system CAs do not know the test CA
    assert untrusted.outcome == Outcome.CONNECT_ERROR and "certificate" in (untrusted.error or "").lower()
    assert asyncio.run(go(TLSOptions(insecure=True))).outcome == Outcome.OK
