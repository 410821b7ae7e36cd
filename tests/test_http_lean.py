"""sseprobe's HTTP/1.1 client (http:// and https://): framing, keep-alive, TLS, failures.

The framing layer (``_h1.ResponseFramer``) is fed without a socket, split at every byte, as the
SSE decoder's tests do. A raw asyncio server replays scripted response bytes, cut into random
pieces, so every state of the client meets a read boundary. The session-level outcomes over this
client are tests/test_outcomes.py (make_client builds it).
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from sseprobe._config import TLSOptions
from sseprobe._outcomes import ConnectError, IdleTimeout, PrematureClose, ProtocolError, SessionError
from sseprobe.wire.h1 import Head, ResponseFramer
from sseprobe.wire.http import HeadTimeout, LeanClient, tls_context

from .conftest import in_process
from .servers import client_tls, in_a_thread, misbehaving_server, refused_url, server_tls, tls_ca


@asynccontextmanager
async def scripted(
    respond: Callable[[bytes], list[bytes]], close_after: bool = False, pause: float = 0.0, tls: bool = False
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

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls() if tls else None)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.sockets[0].getsockname()[1]}", conns
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
                        assert "csrf_token=tok" in (resp.headers.get("set-cookie") or "")
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
                    assert await resp.consume(_collect(seen)) is False
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


def test_connection_cut_mid_body_is_premature_close() -> None:
    async def go() -> None:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        async with scripted(lambda _h: [head], close_after=True) as (url, _):
            async with LeanClient(5, 5) as http:
                resp = await http.request("GET", url)
                assert await resp.readany() == b"hello"
                with pytest.raises(PrematureClose, match="not completed"):
                    await resp.read()

    run(go())


def test_malformed_chunk_size_is_a_protocol_error() -> None:
    async def go() -> None:
        data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
        async with scripted(lambda _h: [data]) as (url, _):
            async with LeanClient(5, 5) as http:
                resp = await http.request("GET", url)
                with pytest.raises(ProtocolError, match="chunk size"):
                    await resp.read()

    run(go())


def test_no_head_in_time_is_head_timeout_and_silence_is_idle_timeout() -> None:
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
                with pytest.raises(IdleTimeout):
                    await resp.readany()

    run(go())


def test_consume_pushes_pieces_and_stops_when_the_sink_is_done() -> None:
    async def go() -> None:
        data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"abcdefghij" * 10, [10] * 10)
        async with scripted(lambda _h: [data[:60], data[60:]], pause=0.01) as (url, _):
            async with LeanClient(5, 5) as http:
                seen: list[bytes] = []
                resp = await http.request("GET", url)
                assert await resp.consume(_collect(seen, until=30)) is True
                resp.release()
                resp = await http.request("GET", url)
                seen.clear()
                assert await resp.consume(_collect(seen)) is False
                assert b"".join(seen) == b"abcdefghij" * 10

                def boom(_b: bytes) -> bool:
                    raise ValueError("sink failed")

                resp = await http.request("GET", url)
                with pytest.raises(ValueError, match="sink failed"):
                    await resp.consume(boom)

    run(go())


def test_refused_and_unsupported_schemes_are_connect_errors() -> None:
    async def go() -> None:
        async with LeanClient(2, 2) as http:
            with pytest.raises(ConnectError):
                await http.request("GET", refused_url())
            with pytest.raises(ConnectError):
                await http.request("GET", refused_url(tls=True))
            with pytest.raises(ConnectError, match="scheme"):
                await http.request("GET", "ftp://127.0.0.1/")

    run(go())


def test_requests_ask_for_identity_bodies() -> None:
    heads: list[bytes] = []

    def respond(head: bytes) -> list[bytes]:
        heads.append(head)
        return [b"HTTP/1.1 204 No Content\r\n\r\n"]

    async def go() -> None:
        async with scripted(respond) as (url, _):
            async with LeanClient(5, 5) as http:
                async with await http.request("GET", url) as resp:
                    assert resp.status == 204 and await resp.read() == b""

    run(go())
    assert b"\r\nAccept-Encoding: identity\r\n" in heads[0]


# --- TLS ------------------------------------------------------------------------------------------


def test_https_keeps_connections_alive_and_times_the_handshake_once() -> None:
    body = b"data: x\n\n" * 50
    data = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    rng = random.Random(3)

    async def go() -> None:
        async with scripted(lambda _h: cut(data, rng), tls=True) as (url, conns):
            async with LeanClient(5, 5) as http:
                for i in range(5):
                    resp = await http.request("GET", url + "/x", tls=client_tls())
                    assert await resp.read() == body
                    resp.release()
                    if i == 0:
                        assert resp.tcp_ms is not None and resp.tls_ms is not None and resp.tls_ms > 0
                    else:
                        assert resp.tcp_ms is None and resp.tls_ms is None  # reused: no new handshake
            assert len(conns) == 1

    run(go())


def test_client_certificate_for_mtls(tmp_path: object) -> None:
    import ssl
    from pathlib import Path

    ca = tls_ca()
    client_cert = ca.issue_cert("sseprobe-client@example.test")
    pem = Path(str(tmp_path)) / "client.pem"
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    server = server_tls()
    server.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server)
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def go(opts: TLSOptions) -> bytes:
        handled = await asyncio.start_server(_answer_once(data), "127.0.0.1", 0, ssl=server)
        url = f"https://127.0.0.1:{handled.sockets[0].getsockname()[1]}/"
        try:
            async with LeanClient(3, 3) as http:
                async with await http.request("GET", url, tls=opts) as resp:
                    return await resp.read()
        finally:
            handled.close()

    with_cert = TLSOptions(ca_file=client_tls().ca_file, cert=str(pem))
    assert asyncio.run(go(with_cert)) == b"ok"
    with pytest.raises(SessionError):  # refused in the handshake, or the connection closed right after it
        asyncio.run(go(client_tls()))


def _collect(seen: list[bytes], until: int | None = None) -> Callable[[bytes], bool]:
    """A consume callback: keeps every piece; True (stop) once ``until`` bytes came, if given."""

    def keep(piece: bytes) -> bool:
        seen.append(piece)
        return until is not None and len(b"".join(seen)) >= until

    return keep


def _answer_once(data: bytes) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(data)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    return answer


def test_unreadable_tls_files_are_refused_with_the_reason(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="--ca-file .*missing.pem: No such file"):
        tls_context(TLSOptions(ca_file=f"{tmp_path}/missing.pem"))
    assert tls_context(TLSOptions(insecure=True)).verify_mode.name == "CERT_NONE"


def test_wrong_host_name_is_connect_error() -> None:
    async def go() -> None:
        data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        server = await asyncio.start_server(_answer_once(data), "127.0.0.1", 0, ssl=server_tls("other.example"))
        try:
            async with LeanClient(3, 3) as http:
                with pytest.raises(ConnectError, match="certificate"):  # trusted CA, but not this host's name
                    await http.request(
                        "GET", f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/", tls=client_tls()
                    )
        finally:
            server.close()

    run(go())


# --- the framing layer, without a socket --------------------------------------------------------


class Collect:
    """Framer events as a list: ("head", status, fields), ("body", bytes) merged, ("end",)."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def got_head(self, head: Head) -> None:
        self.events.append(("head", head.status, head.minor, tuple(head.fields)))

    def got_body(self, data: bytes) -> None:
        if self.events and self.events[-1][0] == "body":
            self.events[-1] = ("body", self.events[-1][1] + data)  # type: ignore[operator]
        else:
            self.events.append(("body", data))

    def got_end(self) -> None:
        self.events.append(("end",))


def frame(pieces: list[bytes], eof: bool = False) -> list[tuple[object, ...]]:
    sink = Collect()
    framer = ResponseFramer(sink)
    for piece in pieces:
        framer.feed(piece)
    if eof:
        framer.eof()
    return sink.events


def every_split(data: bytes) -> list[list[bytes]]:
    """Every cut into two pieces, and one byte at a time."""
    return [[data[:i], data[i:]] for i in range(1, len(data))] + [[data[i : i + 1] for i in range(len(data))]]


_GZ = __import__("gzip").compress(b"data: packed\n\n")
_CONVERSATION = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\ndata:\r\n3\r\n x\n\r\n0\r\nTrailer: t\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nabcd"
    b"HTTP/1.1 204 No Content\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(_GZ) + _GZ
)


def test_framing_is_the_same_at_every_split() -> None:
    whole = frame([_CONVERSATION])
    assert whole == [
        ("head", 200, 1, (("content-type", "text/event-stream"), ("transfer-encoding", "chunked"))),
        ("body", b"data: x\n"),
        ("end",),
        ("head", 200, 1, (("content-length", "4"), ("set-cookie", "a=1"), ("set-cookie", "b=2"))),
        ("body", b"abcd"),
        ("end",),
        ("head", 204, 1, ()),
        ("end",),
        ("head", 200, 1, (("content-encoding", "gzip"), ("content-length", str(len(_GZ))))),
        ("body", b"data: packed\n\n"),
        ("end",),
    ]
    for pieces in every_split(_CONVERSATION):
        assert frame(pieces) == whole


def test_a_body_without_length_ends_at_the_close_and_a_cut_one_is_refused() -> None:
    until_close = b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n"
    for pieces in every_split(until_close):
        assert frame(pieces, eof=True)[-2:] == [("body", b"data: 1\n\n"), ("end",)]
    framed = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n0\r\n\r\n"
    head_end = framed.index(b"\r\n\r\n") + 4
    for cut_at in range(1, len(framed)):
        # a head cut short is a malformed answer of a reachable server; a body cut short is a premature close
        with pytest.raises(ProtocolError if cut_at < head_end else PrematureClose):
            frame([framed[:cut_at]], eof=True)
    assert frame([framed], eof=True)[-1] == ("end",)  # a close between responses is nothing


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0_5\r\nhello\r\n0\r\n\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "Content-Length"),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello", "status"),
        (b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", "CR"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "switched protocols"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/2"),
        (b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64", "HTTP/2"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx", "Content-Encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope", "inflate"),
    ],
)
def test_malformed_responses_are_protocol_errors_at_every_split(data: bytes, says: str) -> None:
    for pieces in every_split(data):
        with pytest.raises(ProtocolError, match=says):
            frame(pieces)


def test_an_oversized_head_is_refused_whole_or_in_pieces() -> None:
    data = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * (70 * 1024) + b"\r\n\r\n"
    for pieces in ([data], [data[i : i + 1000] for i in range(0, len(data), 1000)]):
        with pytest.raises(ProtocolError, match="head longer"):
            frame(pieces)


# --- the TLS options on the command line ---------------------------------------------------------


def test_cli_trusts_a_ca_file_and_marks_insecure_runs(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with in_a_thread(functools.partial(misbehaving_server, tls=True)) as base:
        run_args = ["run", "--flow", "generic", "--url", base + "/ok", "--complete-on", "done", "-n", "3", "-c", "1"]
        run_args += ["--workers", "1"]
        trusted = in_process(
            capfd, *run_args, "--ca-file", client_tls().ca_file or "", "--out", str(tmp_path / "a.json")
        )
        insecure = in_process(capfd, *run_args, "--insecure", "--out", str(tmp_path / "b.json"))
        untrusted = in_process(capfd, *run_args, "--out", str(tmp_path / "c.json"))
    assert trusted.returncode == 0, trusted.stderr
    doc = json.loads((tmp_path / "a.json").read_text())
    cohort = doc["cohorts"]["generic"]
    assert cohort["outcomes"] == {"ok": 3} and cohort["histograms"]["tls_us"]
    assert doc["config"]["cohorts"]["generic"]["tls"]["verified"] is True
    assert "tls handshake" in trusted.stdout
    assert insecure.returncode == 0, insecure.stderr
    assert "NOT verified" in insecure.stderr
    assert json.loads((tmp_path / "b.json").read_text())["config"]["cohorts"]["generic"]["tls"]["verified"] is False
    assert "connect_error 3" in untrusted.stdout  # the system CAs do not know the test CA


def test_cli_refuses_unreadable_tls_files_with_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run = ("run", "--flow", "canonical", "--url", "https://127.0.0.1:1", "-n", "1")
    code, _out, err = in_process(capfd, *run, "--ca-file", str(tmp_path / "none.pem"))
    assert code == 3 and "Traceback" not in err
    assert err.count("\n") == 1 and "--ca-file" in err and "none.pem: No such file" in err
    code, _out, err = in_process(capfd, *run, "--key", str(tmp_path / "k.pem"))
    assert code == 3 and "--key needs --cert" in err
