"""Small purpose-built misbehaving servers on 127.0.0.1, port 0, for outcome tests.

Each can speak TLS (``tls=True``: https:// with a certificate for 127.0.0.1 signed by a CA made at
test time with trustme; clients trust it through :func:`client_tls`).
"""

from __future__ import annotations

import asyncio
import functools
import queue
import socket
import socketserver
import ssl
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path

import trustme
from aiohttp import web

from sseprobe._config import TLSOptions

SSE = "text/event-stream"


async def _sse(request: web.Request, frames: list[bytes], then: str = "close") -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": SSE})
    await resp.prepare(request)
    for frame in frames:
        await resp.write(frame)
    if then == "stall":
        await asyncio.sleep(3600)
    return resp


def misbehaving_app() -> web.Application:
    async def ok(request: web.Request) -> web.StreamResponse:
        return await _sse(
            request, [b": comment\n\n", b'data: {"text": "hi"}\n\n', b'event: done\ndata: {"status": "completed"}\n\n']
        )

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    async def adk_error(request: web.Request) -> web.StreamResponse:
        return await _sse(
            request,
            [
                b'data: {"id": "e1", "content": {"parts": [{"text": "a"}]}}\n\n',
                b'data: {"error": "RuntimeError: boom", "error_details": {"x": 1}}\n\n',
            ],
        )

    async def named_error(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [b'event: error\ndata: {"error_code": "RATE_LIMIT_EXCEEDED"}\n\n'])

    async def early_close(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [b'event: research_update\ndata: {"content": "a"}\n\n'])

    async def stall(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [b"data: first\n\n"], then="stall")

    async def only_keepalive(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [b"event: keepalive\ndata: {}\n\n", b": ping\n\n"], then="stall")

    async def huge_line(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": SSE})
        await resp.prepare(request)
        chunk = b"data: " + b"x" * (1 << 16)
        try:
            for _ in range(50 * 16):  # 50 MiB, never a newline
                await resp.write(chunk)
        except (ConnectionResetError, ConnectionError):
            pass
        return resp

    async def truncated(request: web.Request) -> web.StreamResponse:
        # chunked response cut off mid-stream: the connection dies without the final chunk
        resp = web.StreamResponse(headers={"Content-Type": SSE})
        await resp.prepare(request)
        await resp.write(b"data: one\n\n")
        assert request.transport is not None
        request.transport.close()
        return resp

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/html", html)
    app.router.add_route("*", "/adk-error", adk_error)
    app.router.add_route("*", "/named-error", named_error)
    app.router.add_route("*", "/early-close", early_close)
    app.router.add_route("*", "/stall", stall)
    app.router.add_route("*", "/only-keepalive", only_keepalive)
    app.router.add_route("*", "/huge-line", huge_line)
    app.router.add_route("*", "/truncated", truncated)
    return app


@functools.cache
def tls_ca() -> trustme.CA:
    """One throwaway certificate authority per test process."""
    return trustme.CA()


@functools.cache
def ca_file() -> str:
    """The test CA's certificate as a PEM file (what ``--ca-file`` takes)."""
    path = Path(tempfile.mkdtemp(prefix="sseprobe-ca-")) / "ca.pem"
    tls_ca().cert_pem.write_to_path(str(path))
    return str(path)


def server_tls(*names: str) -> ssl.SSLContext:
    """A server context with a certificate for ``names`` (default 127.0.0.1 and localhost), signed by the test CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca().issue_cert(*(names or ("127.0.0.1", "localhost"))).configure_cert(ctx)
    return ctx


def client_tls() -> TLSOptions:
    """How a client trusts the test servers: the test CA only."""
    return TLSOptions(ca_file=ca_file())


def _scheme(tls: bool) -> str:
    return "https" if tls else "http"


@asynccontextmanager
async def misbehaving_server(tls: bool = False) -> AsyncIterator[str]:
    runner = web.AppRunner(misbehaving_app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls() if tls else None)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{_scheme(tls)}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def silent_server(tls: bool = False) -> AsyncIterator[str]:
    """Accepts connections (and completes the TLS handshake) and never answers: no response headers, ever."""
    conns: list[asyncio.StreamWriter] = []

    async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        conns.append(w)

    server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=server_tls() if tls else None)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{_scheme(tls)}://127.0.0.1:{port}"
    finally:
        for w in conns:
            w.close()
        server.close()


def refused_url(tls: bool = False) -> str:
    """A port nothing listens on (bound then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"{_scheme(tls)}://127.0.0.1:{port}/sse"


@asynccontextmanager
async def raw_server(response: bytes, tls: bool = False) -> AsyncIterator[str]:
    """Answers every request head with ``response``, byte for byte, then closes: malformed HTTP on demand."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_tls() if tls else None)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{_scheme(tls)}://127.0.0.1:{port}"
    finally:
        server.close()


Answer = Callable[[socket.socket, bytes], None]  # (the connection, its request head without the blank line)


class _ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # a handler still on a connection never holds up the test's end


@contextmanager
def thread_server(answer: Answer) -> Iterator[str]:
    """A raw socket server in a thread of its own, for a client that runs its own event loop (the CLI's
    ``main``): reads each request head, calls ``answer(sock, head)``, then closes its side and
    waits for the client to close (so nothing unread turns the close into a reset). Yields the base URL."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            data = b""
            while b"\r\n\r\n" not in data:
                piece = sock.recv(65536)
                if not piece:
                    return
                data += piece
            try:
                answer(sock, data.split(b"\r\n\r\n", 1)[0])
                sock.shutdown(socket.SHUT_WR)
                sock.recv(1)
            except OSError:
                pass  # the client hung up (at its cap, or on a malformed answer): what these servers are for

    with _ThreadingServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


@contextmanager
def in_a_thread(server: Callable[[], AbstractAsyncContextManager[str]]) -> Iterator[str]:
    """An asyncio server (one of the above, ``server()`` yielding its URL) on a loop in a thread of its own,
    for a client that runs its own event loop (the CLI's ``main``); stopped when the block ends."""
    ready: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        async with server() as url:
            ready.put(url)
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield ready.get(timeout=30)
    finally:
        stop.set()
        thread.join(30)
