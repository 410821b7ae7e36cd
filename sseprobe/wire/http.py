"""sseprobe's HTTP/1.1 client, ``http://`` and ``https://``: the one transport sessions and ``check`` use.

Why its own: aiohttp's ClientSession costs about twice the CPU per session (bench/README.md). This
client does only what a session needs: a request written in one ``transport.write``, the response
framed by llhttp (:mod:`.h1`), the body pushed to the reader's sink from the connection's data
callback (no task switch per chunk), connections kept alive in a LIFO pool (so a session's requests
stay on one connection, TLS ones included), and the idle deadline kept by one lazily re-armed timer
per connection instead of one timer per read. TLS runs in memory (``ssl.SSLObject`` over two
MemoryBIOs) inside the connection's own callbacks: on a kept-alive connection that costs a session
about a third less CPU than the event loop's SSL transport, and the TCP connect and the handshake
are timed apart (``tcp_ms``, ``tls_ms``). Sockets are read by the client itself with the kernel's
receive timestamps on (:mod:`.sockio`; one connection's state is :mod:`.conn`): a session stamps bytes
when they reached the socket, so a loop kept busy (or off the CPU) does not inflate TTFE, at 1.0-1.2x
the loop transport's CPU per session.

Its failures are already sseprobe's outcome exceptions (:mod:`._outcomes`), mapped here at the
transport boundary: not reaching the server is ConnectError, no head in time is HeadTimeout (a
SessionTimeout), silence mid-body IdleTimeout, a body cut short PrematureClose, a malformed
response ProtocolError.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Protocol
from urllib.parse import quote

from .._config import TLSOptions
from .._outcomes import ConnectError
from .body import MAX_READ_BODY
from .conn import NEVER, Conn, HeadTimeout
from .h1 import Head
from .sockio import READ_SIZE, SocketIO
from .tls import tls_context

__all__ = ["LeanClient", "LeanResponse", "HeadTimeout", "Transport", "Response", "tls_context"]

_KEEPALIVE_S = 15.0  # a pooled connection idle longer than this is closed, not reused
_DNS_TTL_S = 300.0
_USER_AGENT = "sseprobe"
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?#[]"
_DEFAULT_TLS = TLSOptions()


class Response(Protocol):
    """A response whose head has arrived; its body is read once, by ``consume`` or ``read``."""

    status: int
    headers: Head
    ready_at: float  # the client's clock when the request's connection was ready (new or reused)
    tcp_ms: float | None  # the TCP connect of a new connection; None on a reused one
    tls_ms: float | None  # its TLS handshake; None on a reused or plain connection
    address: str | None  # the address a new connection went to; None on a reused one
    tls_resumed: bool  # a new connection's TLS handshake resumed an earlier session
    head_arrival: float  # wall clock at which the head reached the socket; 0.0: unknown (stamp when read)

    @property
    def content_type(self) -> str: ...

    @property
    def cookies(self) -> SimpleCookie: ...

    async def consume(self, sink: Callable[[bytes], bool]) -> bool: ...

    async def read(self) -> bytes: ...

    def release(self) -> None: ...

    def close(self) -> None: ...

    async def __aenter__(self) -> Response: ...

    async def __aexit__(self, *exc: object) -> None: ...


class Transport(Protocol):
    """What a session needs of an HTTP client; every error it raises is an outcome exception.

    ``receive_lag``: inside a body sink, how long (seconds) the bytes being handled waited in the
    socket before the event loop got to them; a sink subtracts it from its clock to stamp arrival."""

    receive_lag: float

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        head_timeout: float | None = None,
        tls: TLSOptions | None = None,
        max_body: int = MAX_READ_BODY,
    ) -> Response: ...

    async def close(self) -> None: ...


class LeanResponse:
    """One response: status, headers, content_type, cookies, the body by ``consume`` (pushed to a sink)
    or ``read``; ``release`` (or ``async with``) hands the connection back."""

    __slots__ = (
        "_client",
        "_conn",
        "_key",
        "status",
        "version",
        "headers",
        "_released",
        "ready_at",
        "tcp_ms",
        "tls_ms",
        "address",
        "tls_resumed",
        "head_arrival",
    )

    def __init__(self, client: LeanClient, conn: Conn, key: _Key, ready_at: float) -> None:
        head = conn.head
        assert head is not None
        self._client, self._conn, self._key = client, conn, key
        self.status, self.headers = head.status, head
        self.version = (1, head.minor)
        self._released = False
        self.ready_at = ready_at
        self.head_arrival = conn.head_arrival
        fresh = not conn.used
        self.tcp_ms = conn.tcp_ms if fresh else None
        self.tls_ms = conn.tls_ms if fresh else None
        self.address = conn.address if fresh else None
        self.tls_resumed = fresh and conn.tls_resumed
        conn.used = True

    @property
    def content_type(self) -> str:
        ct = self.headers.get("content-type")
        if not ct:
            return "application/octet-stream"
        return ct.partition(";")[0].strip().lower()

    @property
    def cookies(self) -> SimpleCookie:
        jar: SimpleCookie = SimpleCookie()
        for value in self.headers.getall("set-cookie"):
            try:
                jar.load(value)
            except Exception:  # noqa: BLE001 - a malformed cookie is ignored, as browsers do
                pass
        return jar

    async def readany(self) -> bytes:
        """The body bytes received so far (waiting for some); b"" once the body is complete."""
        conn = self._conn
        while True:
            if conn.pieces:
                pieces = conn.pieces
                data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                conn.pieces = []
                conn.arrivals = []
                conn.nbuf = 0
                return data
            if conn.error is not None:
                raise conn.error
            if conn.framer.pending:
                conn.pump_held()
                continue
            if conn.done or conn.lost:
                return b""
            await conn.wait()

    def _push_held(self, conn: Conn, sink: Callable[[bytes], bool]) -> None:
        """Body bytes that came before this reader (with the head, say), each stamped at its arrival."""
        pieces, arrivals = conn.pieces, conn.arrivals
        conn.pieces, conn.arrivals, conn.nbuf = [], [], 0
        client = self._client
        try:
            for piece, arrival in zip(pieces, arrivals, strict=True):
                client.receive_lag = max(time.time() - arrival, 0.0) if arrival else 0.0
                if sink(piece):
                    conn.finished = True
                    break
        except BaseException as exc:  # noqa: BLE001 - raised to the reader, as from _push
            conn.error = exc
            conn.finished = True
        finally:
            client.receive_lag = 0.0

    async def consume(self, sink: Callable[[bytes], bool]) -> bool:
        """Push the body to ``sink`` as it arrives, from the connection's data callback, until the
        sink returns True (then True), or the body ends (False). The sink's exceptions, timeouts
        and transport errors are raised here."""
        conn = self._conn
        conn.finished = False
        conn.sink = sink
        try:
            if conn.pieces:
                self._push_held(conn, sink)
            if conn.framer.pending and not conn.finished:
                conn.schedule_pump()
            while True:
                if conn.finished and conn.error is None:
                    return True
                if conn.error is not None:
                    raise conn.error
                if conn.done or conn.lost:
                    return False
                await conn.wait()
        finally:
            conn.sink = None

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.readany():
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        """Drop the connection (a stream read only in part is never reused)."""
        if not self._released:
            self._released = True
            self._client._done(self._conn, self._key, reuse=False)

    def release(self) -> None:
        """Back to the pool if the body was read to its end on a keep-alive connection, else closed."""
        if not self._released:
            self._released = True
            conn = self._conn
            reuse = (
                conn.done
                and not conn.lost
                and not conn.stray
                and conn.error is None
                and not conn.pieces
                and self.version[1] == 1
                and "close" not in (self.headers.get("connection") or "").lower()
            )
            self._client._done(conn, self._key, reuse)

    async def __aenter__(self) -> LeanResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


_Key = tuple[str, int, TLSOptions | None]  # host, port, TLS options (None: plain http)


def _split(url: str) -> tuple[str, str, int, str]:
    """(host header, host, port, request target) of an ``http://`` or ``https://`` URL."""
    tls = url.startswith("https://")
    rest = url[8:] if tls else url[7:]
    slash = rest.find("/")
    query = rest.find("?")
    cut = min(i for i in (slash, query, len(rest)) if i >= 0)
    authority, target = rest[:cut], rest[cut:] or "/"
    if target[0] == "?":
        target = "/" + target
    if "#" in target:
        target = target[: target.index("#")]
    if "@" in authority:
        raise ConnectError("credentials in the URL are not supported: use a header")
    if authority.startswith("["):
        end = authority.index("]")
        host, port_text = authority[1:end], authority[end + 2 :]
    else:
        host, _, port_text = authority.rpartition(":") if ":" in authority else (authority, "", "")
    try:
        port = int(port_text) if port_text else 443 if tls else 80
    except ValueError:
        raise ConnectError(f"bad port {port_text[:20]!r} in the URL") from None
    if not host:
        raise ConnectError("no host in the URL")
    if not target.isascii() or " " in target:
        target = quote(target, safe=_PATH_SAFE)
    return authority, host, port, target


class LeanClient:
    """HTTP/1.1 keep-alive client for ``http://`` and ``https://`` URLs (the :class:`Transport`).

    ``connect`` bounds the TCP connect and TLS handshake; ``idle`` the silence while a response is
    awaited or read. ``limit`` caps connections in use at once (0: no cap). ``clock`` stamps when
    each request's connection is ready (new or reused), for ``connect_ms``.
    """

    def __init__(
        self,
        connect: float,
        idle: float,
        limit: int = 0,
        clock: Callable[[], float] = time.perf_counter,
        pin_address: bool = False,
    ) -> None:
        self._connect_timeout = connect
        self._idle = idle
        self._limit = asyncio.Semaphore(limit) if limit else None
        self._clock = clock
        self._pool: dict[_Key, list[Conn]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}
        self._split: dict[str, tuple[str, str, int, str]] = {}
        self._ssl: dict[TLSOptions, ssl.SSLContext] = {}
        self._pin = pin_address
        self._turn: dict[tuple[str, int], int] = {}  # next address of each name to connect to
        self._tls_sessions: dict[_Key, ssl.SSLSession] = {}  # the last TLS session per origin, to resume
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.receive_lag = 0.0  # see Transport; set by _SocketIO around each read it hands on
        self.read_buf = bytearray(READ_SIZE)  # every connection's reads land here first (one loop, one read at a time)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, looked up once (each look-up costs a getpid system call)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # --- requests -------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        head_timeout: float | None = None,
        tls: TLSOptions | None = None,
        max_body: int = MAX_READ_BODY,
    ) -> LeanResponse:
        """Send one request and return its response once the head has arrived.

        ``head_timeout``: seconds from now for connect plus response head, else :class:`HeadTimeout`.
        ``tls``: how an https:// server is trusted (default: the system's CAs).
        ``max_body``: decoded body bytes the response may carry, else ProtocolError naming the cap
        (:mod:`.body`: 1 MiB for a body read whole, the default; ``MAX_STREAM_BODY`` for a stream).
        """
        if url.startswith("https://"):
            cut = url.find("/", 8)
            tls = tls or _DEFAULT_TLS
        elif url.startswith("http://"):
            cut = url.find("/", 7)
            tls = None
        else:
            raise ConnectError(f"unsupported URL scheme in {url.partition(':')[0][:10]!r}: http or https only")
        # the origin (scheme, host, port) is parsed once; the path is taken as it is when plain
        origin = url if cut < 0 else url[:cut]
        split = self._split.get(origin)
        if split is None:
            split = _split(origin)
            if len(self._split) < 256:
                self._split[origin] = split
        authority, host, port, _ = split
        target = url[cut:] if cut >= 0 else "/"
        if not target.isascii() or " " in target or "#" in target or "@" in origin or "?" in origin:
            authority, host, port, target = _split(url)
        payload = _request_bytes(method, target, authority, data, headers)
        key = (host, port, tls)
        loop = self._loop or self.loop
        start = loop.time()
        conn = await self._acquire(key, start, head_timeout)
        ready_at = self._clock()
        conn.active = True
        conn.done = conn.stray = False
        conn.head = None
        conn.error = None
        conn.framer.body_cap = max_body
        conn.idle = self._idle
        conn.last = now = loop.time()
        conn.head_timeout = head_timeout or 0.0
        conn.deadline = NEVER if head_timeout is None else start + head_timeout
        if now >= conn.deadline:
            self._done(conn, key, reuse=True)
            raise HeadTimeout(f"no response headers within {head_timeout:g}s")
        conn.send(payload)
        try:
            while conn.head is None:
                if conn.error is not None:
                    raise conn.error
                if conn.lost:
                    raise ConnectError("the server closed the connection before the response head")
                await conn.wait()
        except BaseException:
            self._done(conn, key, reuse=False)
            raise
        return LeanResponse(self, conn, key, ready_at)

    async def _acquire(self, key: _Key, start: float, head_timeout: float | None) -> Conn:
        """A connection for ``key`` under the connection cap, within the head deadline."""
        try:
            if self._limit is not None:
                if head_timeout is None:
                    await self._limit.acquire()
                else:
                    async with asyncio.timeout(head_timeout):
                        await self._limit.acquire()
            try:
                return await self._checkout(key)
            except BaseException:
                if self._limit is not None:
                    self._limit.release()
                raise
        except TimeoutError:
            raise HeadTimeout(f"no connection free within {head_timeout:g}s (--connections)") from None

    async def _checkout(self, key: _Key) -> Conn:
        pool = self._pool.get(key)
        if pool:
            now = time.monotonic()
            while pool:
                conn = pool.pop()
                if not conn.lost and now - conn.pooled_at < _KEEPALIVE_S:
                    return conn
                conn.close()
        return await self._open(key)

    async def _open(self, key: _Key) -> Conn:
        """A new connection: TCP, then TLS for https, each timed (``tcp_ms``, ``tls_ms``)."""
        loop = self.loop
        host, port, tls = key
        ctx = self._ssl_context(tls) if tls is not None else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                t0 = self._clock()
                sock, address = await self._tcp(loop, host, port)
                t1 = self._clock()
                conn = Conn(loop)
                conn.address = address
                try:
                    SocketIO(self, sock, conn)
                except BaseException:
                    sock.close()
                    raise
                conn.tcp_ms = (t1 - t0) * 1000.0
                if ctx is not None:
                    try:
                        await conn.start_tls(
                            ctx, host, self._tls_sessions.get(key) if tls is not None and tls.resume else None
                        )
                    except BaseException:
                        conn.close()
                        raise
                    conn.tls_ms = (self._clock() - t1) * 1000.0
                    conn.tls_resumed = conn.tls is not None and conn.tls.session_reused
                return conn
        except TimeoutError:
            raise ConnectError(f"connect timed out: {host}:{port} within {self._connect_timeout:g}s") from None
        except ssl.SSLError as exc:
            why = getattr(exc, "verify_message", None) or exc.reason or exc
            raise ConnectError(f"TLS handshake with {host}:{port} failed: {why}"[:200]) from None
        except OSError as exc:
            raise ConnectError(f"{type(exc).__name__}: {exc}"[:200]) from None

    async def _tcp(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> tuple[socket.socket, str]:
        """A connected non-blocking socket, and the address it went to. The addresses of a name take
        turns (round robin: the n-th connection starts at address n mod k, then tries the rest in order);
        pinned, each connection starts at the first."""
        last: OSError | None = None
        addrs = await self._resolve(loop, host, port)
        if len(addrs) > 1 and not self._pin:
            turn = self._turn.get((host, port), 0)
            self._turn[(host, port)] = turn + 1
            i = turn % len(addrs)
            addrs = addrs[i:] + addrs[:i]
        for addr, aport in addrs:
            sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (addr, aport))
                return sock, (f"[{addr}]:{aport}" if ":" in addr else f"{addr}:{aport}")
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError):
                    raise
                last = exc
        assert last is not None
        raise last

    def _ssl_context(self, tls: TLSOptions) -> ssl.SSLContext:
        ctx = self._ssl.get(tls)
        if ctx is None:
            try:
                ctx = self._ssl[tls] = tls_context(tls)
            except ValueError as exc:
                raise ConnectError(str(exc)[:200]) from None
        return ctx

    async def _resolve(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[tuple[str, int]]:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
            return [(host, port)]  # an address already
        except OSError:
            pass
        now = time.monotonic()
        cached = self._dns.get((host, port))
        if cached is not None and now - cached[0] < _DNS_TTL_S:
            return cached[1]
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addrs = [(str(info[4][0]), port) for info in infos]
        self._dns[(host, port)] = (now, addrs)
        return addrs

    def _done(self, conn: Conn, key: _Key, reuse: bool) -> None:
        if self._limit is not None:
            self._limit.release()
        if conn.tls is not None and key[2] is not None and key[2].resume:
            # after a response the server's session ticket has come (TLS 1.3 sends it after the handshake)
            session = conn.tls.session
            if session is not None and session.has_ticket:
                self._tls_sessions[key] = session
        # an armed timer is left to fire: with no reader waiting it just lapses (cheaper than a
        # cancel and a new timer per request)
        conn.idle = conn.deadline = NEVER
        conn.active = False
        if reuse and not self._closed:
            conn.pooled_at = time.monotonic()
            conn.head = None
            self._pool.setdefault(key, []).append(conn)
        else:
            conn.close()

    # --- lifetime -------------------------------------------------------------------------------
    async def close(self) -> None:
        self._closed = True
        for pool in self._pool.values():
            for conn in pool:
                conn.close()
        self._pool.clear()

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _request_bytes(
    method: str, target: str, authority: str, data: bytes | None, headers: dict[str, str] | None
) -> bytes:
    """The whole request, for one write. Compressed bodies are refused up front (identity)."""
    block = "".join([f"{name}: {value}\r\n" for name, value in headers.items()]) if headers else ""
    if block.count("\n") != len(headers or ()) or block.count("\r") != len(headers or ()):
        raise ValueError("a header name or value holds a line break")
    names = " ".join(headers).lower().split() if headers else ()
    if "host" not in names:
        block += f"Host: {authority}\r\n"
    if "accept-encoding" not in names:
        block += "Accept-Encoding: identity\r\n"
    if data is not None or method in ("POST", "PUT", "PATCH"):
        block += f"Content-Length: {len(data) if data is not None else 0}\r\n"
    payload = f"{method} {target} HTTP/1.1\r\n{block}User-Agent: {_USER_AGENT}\r\n\r\n".encode("latin-1")
    return payload + data if data else payload
