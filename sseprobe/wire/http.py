"""sseprobe's HTTP/1.1 client, ``http://`` and ``https://``: the one transport sessions and ``check`` use.

Why its own: aiohttp's ClientSession costs about twice the CPU per session (bench/README.md). This
client does only what a session needs: a request written in one ``transport.write``, the response
framed by llhttp (:mod:`._h1`), the body pushed to the reader's sink from the connection's data
callback (no task switch per chunk), connections kept alive in a LIFO pool (so a session's requests
stay on one connection, TLS ones included), and the idle deadline kept by one lazily re-armed timer
per connection instead of one timer per read. TLS runs in memory (``ssl.SSLObject`` over two
MemoryBIOs) inside the connection's own callbacks: on a kept-alive connection that costs a session
about a third less CPU than the event loop's SSL transport, and the TCP connect and the handshake
are timed apart (``tcp_ms``, ``tls_ms``). Sockets are read by the client itself with the kernel's
receive timestamps on (:class:`_SocketIO`): a session stamps bytes when they reached the socket, so a
loop kept busy (or off the CPU) does not inflate TTFE, at 1.0-1.2x the loop transport's CPU per session.

Its failures are already sseprobe's outcome exceptions (:mod:`._outcomes`), mapped here at the
transport boundary: not reaching the server is ConnectError, no head in time is HeadTimeout (a
SessionTimeout), silence mid-body IdleTimeout, a body cut short PrematureClose, a malformed
response ProtocolError.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Protocol
from urllib.parse import quote

from .._config import TLSOptions
from .._outcomes import ConnectError, IdleTimeout, ProtocolError, SessionError, SessionTimeout
from .h1 import Head, ResponseFramer

__all__ = ["LeanClient", "LeanResponse", "HeadTimeout", "Transport", "Response", "tls_context"]

_HIGH_WATER = 256 * 1024  # unread body bytes before the socket stops being read
_KEEPALIVE_S = 15.0  # a pooled connection idle longer than this is closed, not reused
_DNS_TTL_S = 300.0
_USER_AGENT = "sseprobe"
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?#[]"
_DEFAULT_TLS = TLSOptions()

_NEVER = float("inf")
_READ = 256 * 1024  # bytes per socket read (as the event loop's own transport reads)
# Linux's SO_TIMESTAMPNS (the socket module does not name it): each read says when its bytes reached the
# socket. Elsewhere no kernel stamps: bytes are stamped when read.
_SO_TIMESTAMPNS = 35 if sys.platform == "linux" else None
_STAMP_SPACE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0  # one struct timespec
_TLS_READ = 1 << 14  # bytes per TLS read: one record's plaintext at most (a larger buffer costs more to allocate)


class HeadTimeout(SessionTimeout):
    """The response head did not come in time (``head_timeout``, or the idle timeout without one)."""


class Response(Protocol):
    """A response whose head has arrived; its body is read once, by ``consume`` or ``read``."""

    status: int
    headers: Head
    ready_at: float  # the client's clock when the request's connection was ready (new or reused)
    tcp_ms: float | None  # the TCP connect of a new connection; None on a reused one
    tls_ms: float | None  # its TLS handshake; None on a reused or plain connection
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
    ) -> Response: ...

    async def close(self) -> None: ...


def tls_context(opts: TLSOptions) -> ssl.SSLContext:
    """The client context for ``opts``: system CAs (or ``ca_file``), host names checked, ALPN
    http/1.1, the client certificate loaded. ``insecure`` checks nothing. ValueError on bad files."""
    try:
        ctx = ssl.create_default_context(cafile=opts.ca_file)
        if opts.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if opts.cert is not None:
            ctx.load_cert_chain(opts.cert, opts.key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TLS setup failed: {exc}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class _SocketIO(asyncio.Transport):
    """A connection's socket, read and written by this client rather than by the event loop's
    transport: each read comes with the kernel's receive timestamp (``SO_TIMESTAMPNS``), so bytes are
    stamped when they reached the socket, not when a busy loop got round to them (bench/README.md,
    benchmark 9: at 5,000 open streams on a loaded machine, TTFE error p50 from 0.3-13 ms to 0.015 ms)."""

    def __init__(self, client: LeanClient, sock: socket.socket, conn: _Conn) -> None:
        super().__init__()
        self.client, self.sock, self.conn, self.loop = client, sock, conn, conn.loop
        self.fd = sock.fileno()
        self.reading = self.closed = False
        self.unsent = b""
        if sock.family in (socket.AF_INET, socket.AF_INET6):  # as the loop's transports do: no Nagle delay
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stamp_space = 0  # no kernel stamps: bytes are stamped when read
        if _SO_TIMESTAMPNS is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self.stamp_space = _STAMP_SPACE
            except OSError:
                pass
        conn.connection_made(self)
        self.resume_reading()

    def _readable(self) -> None:
        client, buf = self.client, self.client._buf
        try:
            n, ancillary, _, _ = self.sock.recvmsg_into((buf,), self.stamp_space)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not n:
            self._lost(None)
            return
        now = time.time()
        arrival = now
        if ancillary and len(ancillary[0][2]) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(ancillary[0][2])
            arrival = min(sec + nsec * 1e-9, now)  # both CLOCK_REALTIME: no offset
        client.receive_lag = now - arrival
        self.conn.arrival = arrival
        try:
            self.conn.data_received(bytes(memoryview(buf)[:n]))
        finally:
            client.receive_lag = 0.0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            return
        if self.unsent:
            self.unsent += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lost(exc)
            return
        if sent < len(data):
            self.unsent = bytes(data[sent:])
            self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        self.unsent = self.unsent[sent:]
        if not self.unsent:
            self.loop.remove_writer(self.fd)

    def pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    def resume_reading(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self.loop.add_reader(self.fd, self._readable)

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self._lost(None)

    def abort(self) -> None:
        self._lost(None)

    def _lost(self, exc: Exception | None) -> None:
        """Closed, by either side or by an error: the connection hears it once, on the next turn of the
        loop (as from the loop's own transports)."""
        if self.closed:
            return
        self.closed = True
        self.pause_reading()
        if self.unsent:
            self.loop.remove_writer(self.fd)
            self.unsent = b""
        self.sock.close()
        self.loop.call_soon(self.conn.connection_lost, exc)


_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux: seconds, nanoseconds


class _Conn(asyncio.Protocol):
    """One keep-alive connection and the state of the response it is receiving."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.framer = ResponseFramer(self)
        self.active = False  # a request was sent and its response has not been handed back
        self.done = False  # the response has ended
        self.stray = False  # bytes came that no request asked for: never reused
        self.pieces: list[bytes] = []  # body bytes received, not yet read
        self.nbuf = 0
        self.head: Head | None = None
        self.error: BaseException | None = None  # ends the response being read (raised to the reader)
        self.lost = False
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.last = 0.0  # loop time of the last bytes received
        self.arrival = 0.0  # wall clock at which the bytes being handled reached the socket (0: unknown)
        self.arrivals: list[float] = []  # each body piece's ``arrival``, beside ``pieces``
        self.head_arrival = 0.0  # the response head's ``arrival``
        self.idle = _NEVER  # read deadline: no bytes for this long while a reader waits
        self.deadline = _NEVER  # loop time by which the response head must have come
        self.head_timeout = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = _NEVER
        self.pooled_at = 0.0
        self.sink: Callable[[bytes], bool] | None = None  # consume(): body bytes pushed as they come
        self.finished = False  # the sink said the reader has all it wants
        self.tcp_ms: float | None = None  # set by the client when it opens this connection
        self.tls_ms: float | None = None
        self.used = False  # has carried a request before
        # TLS in memory (https): records are decrypted here, in the data callback, with no transport layer
        # of the loop's in between (a third less CPU per kept-alive session than the loop's SSL transport)
        self.tls: ssl.SSLObject | None = None
        self.tls_in = self.tls_out = ssl.MemoryBIO()
        self.handshake: asyncio.Future[None] | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_exception(ConnectError("the server closed the connection during the TLS handshake"))
        if self.active and not self.done and self.error is None:
            try:
                self.framer.eof()  # a body delimited by the close ends here; a head cut short is refused
            except SessionError as err:
                self.error = err
            if self.head is None and self.error is None:
                self.error = ConnectError("the server closed the connection before the response head")
            if self.sink is not None and self.pieces and not self.finished:
                self._push()
        self._wake()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def pause_writing(self) -> None:  # requests are small: nothing to do
        pass

    def resume_writing(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.last = self.loop.time()
        if self.tls is not None:
            data = self._decrypt(data)
            if not data:
                return
        if not self.active or self.done:  # bytes nobody asked for: the connection cannot be trusted
            self.stray = True
            if self.transport is not None:
                self.transport.close()
            return
        try:
            self.framer.feed(data)
        except Exception as exc:  # noqa: BLE001 - raised to the reader, never into the loop
            if self.done:  # garbage after a complete response: that response stands, the connection goes
                self.stray = True
            else:
                self.error = exc
            if self.transport is not None:
                self.transport.close()
        if self.sink is not None:
            if self.pieces and not self.finished:
                self._push()
            if not (self.finished or self.error is not None or self.done):
                return  # the waiting reader wakes only at the end
        elif self.nbuf > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    # --- TLS in memory ---------------------------------------------------------------------------
    def start_tls(self, ctx: ssl.SSLContext, host: str) -> asyncio.Future[None]:
        """Begin the handshake (ClientHello sent); the future is done when it completes or fails."""
        self.tls_in, self.tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.tls_in, self.tls_out, server_hostname=host)
        self.handshake = self.loop.create_future()
        self._handshake_step()
        return self.handshake

    def _handshake_step(self) -> None:
        fut = self.handshake
        assert self.tls is not None and fut is not None
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_tls()
            return
        except ssl.SSLError as exc:
            self._flush_tls()
            why = getattr(exc, "verify_message", None) or exc.reason or exc
            if not fut.done():
                fut.set_exception(ConnectError(f"TLS handshake failed: {why}"[:200]))
            return
        self._flush_tls()
        self.handshake = None
        if not fut.done():
            fut.set_result(None)

    def _flush_tls(self) -> None:
        if self.tls_out.pending and self.transport is not None:
            self.transport.write(self.tls_out.read())

    def _tls_closed(self) -> None:
        """The server's close_notify: ours back (so it need not wait for it), then the close, which ends
        a body delimited by it (or cuts one short) as a TCP close would."""
        assert self.tls is not None
        try:
            self.tls.unwrap()
        except ssl.SSLError:
            pass
        self._flush_tls()
        if self.transport is not None:
            self.transport.close()

    def send(self, payload: bytes) -> None:
        """One write of the whole request (encrypted first on https)."""
        assert self.transport is not None
        if self.tls is None:
            self.transport.write(payload)
        else:
            self.tls.write(payload)
            self.transport.write(self.tls_out.read())

    def _decrypt(self, raw: bytes) -> bytes:
        """The plaintext of ``raw`` (b"" when it held none: a partial record, a ticket, the handshake)."""
        tls, tls_in = self.tls, self.tls_in
        assert tls is not None
        tls_in.write(raw)
        if self.handshake is not None:
            self._handshake_step()
            if self.handshake is not None or not tls_in.pending:
                return b""
        chunks = []
        try:
            while True:
                chunk = tls.read(_TLS_READ)
                if not chunk:  # close_notify: the server is done with the connection
                    self._tls_closed()
                    break
                chunks.append(chunk)
                if not tls_in.pending and not tls.pending():
                    break
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self._tls_closed()
        except ssl.SSLError as exc:
            if self.error is None and self.active and not self.done:
                kind = ConnectError if self.head is None else ProtocolError
                self.error = kind(f"TLS: {getattr(exc, 'reason', None) or exc}"[:200])
                self._wake()
            if self.transport is not None:
                self.transport.close()
        if self.tls_out.pending:
            self._flush_tls()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # --- the framer's events --------------------------------------------------------------------
    def got_head(self, head: Head) -> None:
        if self.head is not None or self.done:
            self.stray = True  # a second response to one request
            return
        self.head = head
        self.head_arrival = self.arrival

    def got_body(self, data: bytes) -> None:
        if self.done:
            self.stray = True
            return
        self.pieces.append(data)
        self.arrivals.append(self.arrival)
        self.nbuf += len(data)

    def got_end(self) -> None:
        if self.done:
            self.stray = True
        self.done = True

    def _push(self) -> None:
        """Hand the body pieces to the sink one by one (joining large reads would cost a copy)."""
        pieces, sink = self.pieces, self.sink
        self.pieces = []
        self.arrivals = []
        self.nbuf = 0
        try:
            for piece in pieces:
                if sink(piece):  # type: ignore[misc]
                    self.finished = True
                    break
        except BaseException as exc:  # noqa: BLE001 - raised to the reader, never into the loop
            self.error = exc
            self.finished = True

    # --- the reader's side ----------------------------------------------------------------------
    def _wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def _on_timer(self) -> None:
        self.timer = None
        if self.waiter is None:
            return  # nobody waits: re-armed by the next wait
        now = self.loop.time()
        if self.head is None and now >= self.deadline:
            exc: Exception = HeadTimeout(f"no response headers within {self.head_timeout:g}s")
        elif now >= self.last + self.idle:
            if self.head is None:
                exc = HeadTimeout(f"no response headers: the connection was silent for {self.idle:g}s")
            else:
                exc = IdleTimeout(f"no bytes for {self.idle:g}s")
        else:
            due = min(self.last + self.idle, self.deadline if self.head is None else _NEVER)
            if due != _NEVER:
                self.timer = self.loop.call_at(due, self._on_timer)
                self.timer_due = due
            return
        w, self.waiter = self.waiter, None
        if not w.done():
            w.set_exception(exc)

    async def wait(self) -> None:
        """Until more bytes, the end, or an error: IdleTimeout after ``idle`` without bytes,
        HeadTimeout past ``deadline`` without the response head. One timer, re-armed lazily."""
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        fut = self.waiter = self.loop.create_future()
        due = min(self.last + self.idle, self.deadline if self.head is None else _NEVER)
        if due < self.timer_due or self.timer is None:  # an armed timer due earlier re-arms itself
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if due != _NEVER:
                self.timer = self.loop.call_at(due, self._on_timer)
                self.timer_due = due
        await fut

    def close(self) -> None:
        self.active = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None and not self.lost:
            self.transport.close()
        self.lost = True


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
        "head_arrival",
    )

    def __init__(self, client: LeanClient, conn: _Conn, key: _Key, ready_at: float) -> None:
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
            if conn.done or conn.lost:
                return b""
            await conn.wait()

    def _push_held(self, conn: _Conn, sink: Callable[[bytes], bool]) -> None:
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
        self, connect: float, idle: float, limit: int = 0, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._connect_timeout = connect
        self._idle = idle
        self._limit = asyncio.Semaphore(limit) if limit else None
        self._clock = clock
        self._pool: dict[_Key, list[_Conn]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}
        self._split: dict[str, tuple[str, str, int, str]] = {}
        self._ssl: dict[TLSOptions, ssl.SSLContext] = {}
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.receive_lag = 0.0  # see Transport; set by _SocketIO around each read it hands on
        self._buf = bytearray(_READ)  # every connection's reads land here first (one loop, one read at a time)

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
    ) -> LeanResponse:
        """Send one request and return its response once the head has arrived.

        ``head_timeout``: seconds from now for connect plus response head, else :class:`HeadTimeout`.
        ``tls``: how an https:// server is trusted (default: the system's CAs).
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
        conn.idle = self._idle
        conn.last = now = loop.time()
        conn.head_timeout = head_timeout or 0.0
        conn.deadline = _NEVER if head_timeout is None else start + head_timeout
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

    async def _acquire(self, key: _Key, start: float, head_timeout: float | None) -> _Conn:
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

    async def _checkout(self, key: _Key) -> _Conn:
        pool = self._pool.get(key)
        if pool:
            now = time.monotonic()
            while pool:
                conn = pool.pop()
                if not conn.lost and now - conn.pooled_at < _KEEPALIVE_S:
                    return conn
                conn.close()
        return await self._open(key)

    async def _open(self, key: _Key) -> _Conn:
        """A new connection: TCP, then TLS for https, each timed (``tcp_ms``, ``tls_ms``)."""
        loop = self.loop
        host, port, tls = key
        ctx = self._ssl_context(tls) if tls is not None else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                t0 = self._clock()
                sock = await self._tcp(loop, host, port)
                t1 = self._clock()
                conn = _Conn(loop)
                try:
                    _SocketIO(self, sock, conn)
                except BaseException:
                    sock.close()
                    raise
                conn.tcp_ms = (t1 - t0) * 1000.0
                if ctx is not None:
                    try:
                        await conn.start_tls(ctx, host)
                    except BaseException:
                        conn.close()
                        raise
                    conn.tls_ms = (self._clock() - t1) * 1000.0
                return conn
        except TimeoutError:
            raise ConnectError(f"connect timed out: {host}:{port} within {self._connect_timeout:g}s") from None
        except ssl.SSLError as exc:
            why = getattr(exc, "verify_message", None) or exc.reason or exc
            raise ConnectError(f"TLS handshake with {host}:{port} failed: {why}"[:200]) from None
        except OSError as exc:
            raise ConnectError(f"{type(exc).__name__}: {exc}"[:200]) from None

    async def _tcp(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
        """A connected non-blocking socket to the first address of ``host`` that answers."""
        last: OSError | None = None
        for addr, aport in await self._resolve(loop, host, port):
            sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (addr, aport))
                return sock
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

    def _done(self, conn: _Conn, key: _Key, reuse: bool) -> None:
        if self._limit is not None:
            self._limit.release()
        # an armed timer is left to fire: with no reader waiting it just lapses (cheaper than a
        # cancel and a new timer per request)
        conn.idle = conn.deadline = _NEVER
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
