"""The lean HTTP/1.1 client the engine uses for http:// URLs: framing, keep-alive, failures.

A raw asyncio server replays scripted response bytes, cut into random pieces, so every parser
state meets a read boundary. The session-level outcomes over this client are tests/test_outcomes.py
(make_client builds it).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest

from sseprobe._http import HeadTimeout, LeanClient
from sseprobe._outcomes import ConnectError

from .servers import refused_url


@asynccontextmanager
async def scripted(
    respond: Callable[[bytes], list[bytes]], close_after: bool = False, pause: float = 0.0
) -> AsyncIterator[tuple[str, list[int]]]:
    """A server answering each request head with ``respond(head)`` pieces; yields (url, connections)."""
    conns: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                for piece in respond(head):
                    writer.write(piece)
                    await writer.drain()
                    if pause:
                        await asyncio.sleep(pause)
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", conns
    finally:
        server.close()


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = rng.choice((1, 2, 3, 7, 64, 1000))
        out.append(data[pos : pos + n])
        pos += n
    return out


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, pos = b"", 0
    for n in sizes:
        piece = body[pos : pos + n]
        out += b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n"
        pos += n
    return out + b"0\r\nTrailer: x\r\n\r\n"


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_chunked_content_length_and_interim_responses_survive_any_split() -> None:
    body = b"data: " + bytes(range(256)) * 40 + b"\n\n"
    rng = random.Random(7)
    responses = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(body, [1, 300, 5000, len(body)]),
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: %d\r\nSet-Cookie: a=1\r\n"
        b"Set-Cookie: csrf_token=tok; Path=/\r\n\r\n" % len(body) + body,
    ]

    async def go() -> None:
        turn = {"i": 0}

        def respond(_head: bytes) -> list[bytes]:
            data = responses[turn["i"] % 2]
            turn["i"] += 1
            return cut(data, rng)

        async with scripted(respond) as (url, conns):
            async with LeanClient(5, 5) as http:
                for i in range(40):
                    resp = await http.request("POST" if i % 3 else "GET", url + "/x", data=b"{}")
                    got = await resp.read()
                    assert resp.status == 200 and got == body
                    if i % 2 == 0:
                        assert resp.content_type == "text/event-stream"
                    else:
                        assert resp.cookies["csrf_token"].value == "tok"
                        assert "csrf_token=tok" in resp.headers.get("set-cookie")
                    resp.release()
            assert len(conns) == 1  # every request reused the one keep-alive connection

    run(go())


def test_one_chunk_per_read_and_the_last_chunk_marker_with_it() -> None:
    """The shape SSE servers write (one event per chunk, the marker with the last): the fast path."""
    events = [b"data: %d\n\n" % i for i in range(5)]
    pieces = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    pieces += [b"%x\r\n" % len(e) + e + b"\r\n" for e in events[:-1]]
    pieces.append(b"%x\r\n" % len(events[-1]) + events[-1] + b"\r\n0\r\n\r\n")

    async def go() -> None:
        async with scripted(lambda _h: list(pieces), pause=0.02) as (url, conns):
            async with LeanClient(5, 5) as http:
                for _ in range(2):
                    resp = await http.request("GET", url)
                    seen: list[bytes] = []
                    assert await resp.consume(lambda b, seen=seen: bool(seen.append(b))) is False
                    assert seen == events  # one piece per chunk, nothing of the framing
                    resp.release()
            assert len(conns) == 1

    run(go())


def test_body_until_close_and_connection_close_are_never_reused() -> None:
    async def go() -> None:
        async with scripted(lambda _h: [b"HTTP/1.1 200 OK\r\n\r\nhello ", b"world"], close_after=True) as (url, conns):
            async with LeanClient(5, 5) as http:
                for _ in range(3):
                    resp = await http.request("GET", url)
                    assert await resp.read() == b"hello world"
                    resp.release()
            assert len(conns) == 3

    run(go())


def test_connection_cut_mid_body_is_an_incomplete_payload() -> None:
    async def go() -> None:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        async with scripted(lambda _h: [head], close_after=True) as (url, _):
            async with LeanClient(5, 5) as http:
                resp = await http.request("GET", url)
                assert await resp.readany() == b"hello"
                with pytest.raises(aiohttp.ClientPayloadError, match="not completed"):
                    await resp.read()

    run(go())


def test_malformed_chunk_size_is_a_payload_error() -> None:
    async def go() -> None:
        data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
        async with scripted(lambda _h: [data]) as (url, _):
            async with LeanClient(5, 5) as http:
                resp = await http.request("GET", url)
                with pytest.raises(aiohttp.ClientPayloadError, match="malformed"):
                    await resp.read()

    run(go())


def test_no_head_in_time_is_head_timeout_and_silence_is_read_timeout() -> None:
    async def go() -> None:
        async with scripted(lambda _h: []) as (url, _):
            async with LeanClient(5, 5) as http:
                with pytest.raises(HeadTimeout):
                    await http.request("GET", url, head_timeout=0.2)
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"
        async with scripted(lambda _h: [head]) as (url, _):
            async with LeanClient(5, 0.3) as http:
                resp = await http.request("GET", url)
                assert await resp.readany() == b"a"
                with pytest.raises(aiohttp.ServerTimeoutError):
                    await resp.readany()

    run(go())


def test_consume_pushes_pieces_and_stops_when_the_sink_is_done() -> None:
    async def go() -> None:
        data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"abcdefghij" * 10, [10] * 10)
        async with scripted(lambda _h: [data[:60], data[60:]], pause=0.01) as (url, _):
            async with LeanClient(5, 5) as http:
                seen: list[bytes] = []
                resp = await http.request("GET", url)
                assert await resp.consume(lambda b: seen.append(b) or len(b"".join(seen)) >= 30) is True
                resp.release()
                resp = await http.request("GET", url)
                seen.clear()
                assert await resp.consume(lambda b, seen=seen: bool(seen.append(b))) is False
                assert b"".join(seen) == b"abcdefghij" * 10

                def boom(_b: bytes) -> bool:
                    raise ValueError("sink failed")

                resp = await http.request("GET", url)
                with pytest.raises(ValueError, match="sink failed"):
                    await resp.consume(boom)

    run(go())


def test_refused_is_connect_error_and_https_goes_to_aiohttp() -> None:
    async def go() -> None:
        made: list[int] = []

        def fallback() -> aiohttp.ClientSession:
            made.append(1)
            return aiohttp.ClientSession()

        async with LeanClient(2, 2, fallback=fallback) as http:
            with pytest.raises(ConnectError):
                await http.request("GET", refused_url())
            with pytest.raises(aiohttp.ClientError):
                await http.request("GET", "https://127.0.0.1:1/")
            assert made == [1]

    run(go())
