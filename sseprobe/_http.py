"""A lean HTTP/1.1 client for the load engine's hot path: plain ``http://``, keep-alive, no redirects.

Why: aiohttp's ClientSession costs about 0.55 ms of CPU per canonical session (two requests) on the
bench machine, as much as Locust's whole SSE user; the bar (bench/README.md) is half of that. This
client does only what a session needs: a request written in one ``transport.write``, a response
head parsed with ``bytes.find``, a body (Content-Length, chunked, or until close) handed to the
reader as it arrives, connections kept alive in a LIFO pool (so a session's requests stay on one
connection), and the idle deadline kept by one lazily re-armed timer per connection instead of one
timer per read. Anything it does not speak (https, ...) goes to an aiohttp ClientSession.

Failures are raised as aiohttp's own exception types (``ServerTimeoutError``, ``ClientPayloadError``,
``ServerDisconnectedError``) or as the session's outcome errors (``ConnectError``), so a session is
classified the same whichever transport carried it.
"""

from __future__ import annotations

import asyncio
import socket
import time
import zlib
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

import aiohttp

from ._outcomes import ConnectError, ProtocolError

__all__ = ["LeanClient", "LeanResponse", "HeadTimeout"]

_MAX_HEAD = 64 * 1024  # status line and headers
_MAX_CHUNK_LINE = 4096
_HIGH_WATER = 256 * 1024  # unread body bytes before the socket stops being read
_KEEPALIVE_S = 15.0  # a pooled connection idle longer than this is closed, not reused
_DNS_TTL_S = 300.0
_USER_AGENT = "sseprobe"
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?#[]"

_NEVER = float("inf")

# body framing of the response being received
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


class HeadTimeout(TimeoutError):
    """The response head did not come within the request's ``head_timeout``."""


class _Headers:
    """Response headers read straight from the raw head, by case-insensitive name, only when asked:
    most responses are only asked for two or three. ``get`` joins repeated headers with ", "."""

    __slots__ = ("raw", "low")

    def __init__(self, raw: bytes, low: bytes) -> None:
        self.raw, self.low = raw, low  # the head after the status line's CRLF (low: lower-cased)

    def getall(self, name: str, default: Any = ()) -> Any:
        raw, low = self.raw, self.low
        key = b"\r\n" + name.lower().encode("latin-1") + b":"
        out = []
        i = low.find(key)
        while i >= 0:
            start = i + len(key)
            end = raw.find(b"\r\n", start)
            if end < 0:
                end = len(raw)
            out.append(raw[start:end].strip().decode("latin-1"))
            i = low.find(key, end)
        return out or default

    def get(self, name: str, default: Any = None) -> Any:
        values = self.getall(name)
        return ", ".join(values) if values else default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value  # type: ignore[no-any-return]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.getall(name))


class _Conn(asyncio.Protocol):
    """One keep-alive connection and the framing state of the response it is receiving."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = b""  # bytes not yet parsed (a partial head or chunk framing line)
        self.mode = _DONE
        self.remaining = 0  # bytes left of the Content-Length body or of the current chunk
        self.pieces: list[bytes] = []  # body bytes received, not yet read
        self.nbuf = 0
        self.head: tuple[int, int, _Headers] | None = None  # (status, HTTP/1.minor, headers)
        self.method = "GET"
        self.error: BaseException | None = None  # ends the response being read (raised to the reader)
        self.lost = False
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.last = 0.0  # loop time of the last bytes received
        self.idle = _NEVER  # read deadline: no bytes for this long while a reader waits
        self.deadline = _NEVER  # loop time by which the response head must have come
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = _NEVER
        self.pooled_at = 0.0
        self.sink: Callable[[bytes], bool] | None = None  # consume(): body bytes pushed as they come
        self.finished = False  # the sink said the reader has all it wants

    # --- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        mode = self.mode
        if mode == _UNTIL_CLOSE:
            self.mode = _DONE  # a body delimited by the close ends cleanly here
        elif mode == _HEAD and self.buf:
            self.error = ProtocolError(f"connection closed in the middle of the response head ({len(self.buf)} bytes)")
        elif mode == _HEAD:
            self.error = aiohttp.ServerDisconnectedError("Server disconnected before the response headers")
        elif mode != _DONE:
            self.error = aiohttp.ClientPayloadError("Response payload is not completed: the connection closed mid-body")
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
        mode = self.mode
        if mode == _LENGTH and not self.buf:  # the common fast path: raw body bytes
            n = len(data)
            if n <= self.remaining:
                self.remaining -= n
                self.pieces.append(data)
                self.nbuf += n
                if not self.remaining:
                    self.mode = _DONE
            else:  # more than the body: the rest is nobody's response, so the connection is not reused
                self.pieces.append(data[: self.remaining])
                self.nbuf += self.remaining
                self.buf = data[self.remaining :]
                self.remaining = 0
                self.mode = _DONE
        elif mode == _CHUNK_SIZE and not self.buf and self._one_chunk(data):
            pass  # one whole chunk (an SSE server's one event), maybe with the last-chunk marker
        elif mode == _UNTIL_CLOSE:
            self.pieces.append(data)
            self.nbuf += len(data)
        elif mode == _DONE:  # bytes nobody asked for: the connection cannot be trusted any more
            if self.transport is not None:
                self.transport.close()
            return
        else:
            try:
                self._parse(self.buf + data if self.buf else data)
            except ValueError as exc:  # a server reached, answering what is not HTTP/1.1 as we speak it
                if self.head is None:
                    self.error = ProtocolError(f"malformed HTTP response head: {exc}")
                else:
                    self.error = aiohttp.ClientPayloadError(f"malformed HTTP response: {exc}")
                self.mode = _DONE
                if self.transport is not None:
                    self.transport.close()
        if self.sink is not None:
            if self.pieces and not self.finished:
                self._push()
            if not (self.finished or self.error is not None or self.mode == _DONE):
                return  # the waiting reader wakes only at the end
        elif self.nbuf > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def _one_chunk(self, data: bytes) -> bool:
        """The fast path: ``data`` is exactly one chunk, or one chunk and the last-chunk marker."""
        nl = data.find(b"\r\n")
        if nl <= 0 or nl > 8:
            return False
        try:
            size = int(data[:nl], 16)
        except ValueError:
            return False  # extensions, bad digits: the full parser decides
        end = nl + 2 + size
        if not size or data[end : end + 2] != b"\r\n":
            return False
        rest = len(data) - end - 2
        if rest and (rest != 5 or data[end + 2 :] != b"0\r\n\r\n"):
            return False
        self.pieces.append(data[nl + 2 : end])
        self.nbuf += size
        if rest:
            self.mode = _DONE
        return True

    def _push(self) -> None:
        """Hand the body pieces to the sink one by one (joining large reads would cost a copy)."""
        pieces, sink = self.pieces, self.sink
        self.pieces = []
        self.nbuf = 0
        try:
            for piece in pieces:
                if sink(piece):  # type: ignore[misc]
                    self.finished = True
                    break
        except BaseException as exc:  # noqa: BLE001 - raised to the reader, never into the loop
            self.error = exc
            self.finished = True

    # --- framing --------------------------------------------------------------------------------
    def _parse(self, data: bytes) -> None:
        """Parse ``data`` (the unparsed bytes so far plus new ones) in the current mode."""
        pos, n = 0, len(data)
        pieces = self.pieces
        while pos < n:
            mode = self.mode
            if mode == _CHUNK_DATA:
                take = min(n - pos, self.remaining)
                pieces.append(data[pos : pos + take] if take < n or pos else data)
                self.nbuf += take
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self.mode = _CHUNK_END
            elif mode == _CHUNK_SIZE or mode == _CHUNK_END or mode == _TRAILER:
                end = data.find(b"\n", pos)
                if end < 0:
                    if n - pos > _MAX_CHUNK_LINE:
                        raise ValueError("chunk framing line too long")
                    break
                line = data[pos:end]
                pos = end + 1
                if line[-1:] == b"\r":
                    line = line[:-1]
                if mode == _CHUNK_END:
                    if line:
                        raise ValueError("chunk data longer than its size")
                    self.mode = _CHUNK_SIZE
                elif mode == _CHUNK_SIZE:
                    size = int(line.split(b";", 1)[0].strip(), 16)  # ValueError: malformed
                    if size < 0:
                        raise ValueError("negative chunk size")
                    if size:
                        self.remaining, self.mode = size, _CHUNK_DATA
                    else:
                        self.mode = _TRAILER
                elif not line:  # the blank line after the trailers: the body is complete
                    self.mode = _DONE
            elif mode == _LENGTH:
                take = min(n - pos, self.remaining)
                pieces.append(data[pos : pos + take])
                self.nbuf += take
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self.mode = _DONE
            elif mode == _UNTIL_CLOSE:
                pieces.append(data[pos:])
                self.nbuf += n - pos
                pos = n
            elif mode == _HEAD:
                start = data[pos : pos + 7]
                if start != b"HTTP/1."[: len(start)]:
                    raise ValueError(f"not an HTTP/1.x response (it starts {start!r}; an HTTP/2 server?)")
                end = data.find(b"\r\n\r\n", pos)
                if end < 0:
                    if n - pos > _MAX_HEAD:
                        raise ValueError(f"response head longer than {_MAX_HEAD // 1024} KiB")
                    break
                if end - pos > _MAX_HEAD:
                    raise ValueError(f"response head longer than {_MAX_HEAD // 1024} KiB")
                head = data[pos:end]
                pos = end + 4
                self._head(head)
            else:  # _DONE with bytes left over: kept, so the connection is not reused
                break
        self.buf = data[pos:] if pos < n else b""

    def _head(self, head: bytes) -> None:
        """Status line and the headers framing needs; the rest are read when asked (_Headers)."""
        if not (
            head.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) and head[9:12].isdigit() and head[12:13] in (b" ", b"\r", b"")
        ):
            raise ValueError(f"bad status line {head[:40]!r}")
        status = int(head[9:12])
        if status == 101:
            raise ValueError("101 Switching Protocols: the server upgraded the connection instead of answering")
        if 100 <= status < 200:  # an interim response (100 Continue, 103 Early Hints): the real one follows
            return
        cut = head.find(b"\r\n")
        raw = head[cut:] if cut >= 0 else b""
        headers = _Headers(raw, raw.lower())
        minor = 1 if head[7:8] == b"1" else 0
        self.head = (status, minor, headers)
        if self.method == "HEAD" or status in (204, 304):
            self.mode = _DONE
        elif b"\r\ntransfer-encoding:" in headers.low and "chunked" in headers.get("transfer-encoding", "").lower():
            self.mode = _CHUNK_SIZE
        elif (length := headers.get("content-length")) is not None:
            self.remaining = int(length)
            if self.remaining < 0:
                raise ValueError("negative Content-Length")
            self.mode = _LENGTH if self.remaining else _DONE
        else:
            self.mode = _UNTIL_CLOSE

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
            exc: Exception = HeadTimeout()
        elif now >= self.last + self.idle:
            exc = aiohttp.ServerTimeoutError("Timeout on reading data from socket")
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
        """Until more bytes, the end, or an error. ServerTimeoutError after ``idle`` without bytes,
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
        self.mode = _DONE
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None and not self.lost:
            self.transport.close()
        self.lost = True


class LeanResponse:
    """The parts of aiohttp's ClientResponse a session uses: status, headers, content_type,
    ``content.readany()``, ``read()``, ``cookies``, ``close()``, and ``async with`` to release."""

    __slots__ = ("_client", "_conn", "_key", "status", "version", "headers", "_released", "_decode")

    def __init__(self, client: LeanClient, conn: _Conn, key: tuple[str, int]) -> None:
        assert conn.head is not None
        self._client, self._conn, self._key = client, conn, key
        self.status, minor, self.headers = conn.head
        self.version = (1, minor)
        self._released = False
        # a body the server compressed anyway (we ask for identity) is decoded as it streams
        self._decode = _decoder(self.headers) if b"\r\ncontent-encoding:" in self.headers.low else None

    @property
    def content(self) -> LeanResponse:
        return self

    @property
    def content_type(self) -> str:
        ct = self.headers.get("content-type")
        if not ct:
            return "application/octet-stream"
        return ct.partition(";")[0].strip().lower()  # type: ignore[no-any-return]

    @property
    def cookies(self) -> SimpleCookie:
        jar: SimpleCookie = SimpleCookie()
        for value in self.headers.getall("set-cookie"):
            try:
                jar.load(value)
            except Exception:  # noqa: BLE001 - a malformed cookie is ignored, as aiohttp does
                pass
        return jar

    async def readany(self) -> bytes:
        """The body bytes received so far (waiting for some); b"" once the body is complete."""
        if self._decode is not None:
            while data := await self._readany_raw():
                if decoded := self._decode(data):
                    return decoded
            return b""
        return await self._readany_raw()

    async def _readany_raw(self) -> bytes:
        conn = self._conn
        while True:
            if conn.pieces:
                pieces = conn.pieces
                data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                conn.pieces = []
                conn.nbuf = 0
                return data
            if conn.error is not None:
                raise conn.error
            if conn.mode == _DONE or conn.lost:
                return b""
            await conn.wait()

    async def consume(self, sink: Callable[[bytes], bool]) -> bool:
        """Push the body to ``sink`` as it arrives, from the connection's data callback, until the
        sink returns True (then True), or the body ends (False). The sink's exceptions, timeouts
        and transport errors are raised here."""
        conn = self._conn
        conn.finished = False
        decode = self._decode
        conn.sink = sink if decode is None else (lambda piece: sink(decode(piece)))
        try:
            if conn.pieces:
                conn._push()
            while True:
                if conn.finished and conn.error is None:
                    return True
                if conn.error is not None:
                    raise conn.error
                if conn.mode == _DONE or conn.lost:
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
                conn.mode == _DONE
                and not conn.lost
                and conn.error is None
                and not conn.pieces
                and not conn.buf
                and self.version[1] == 1
                and "close" not in (self.headers.get("connection") or "").lower()
            )
            self._client._done(conn, self._key, reuse)

    async def __aenter__(self) -> LeanResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


def _decoder(headers: _Headers) -> Callable[[bytes], bytes] | None:
    """The streaming decoder of the response's Content-Encoding (gzip, deflate); an encoding we cannot
    decode is a protocol_error when the body is read, never a silent premature_close."""
    encoding = (headers.get("content-encoding") or "").strip().lower()
    if encoding in ("", "identity"):
        return None
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:

        def refuse(_piece: bytes) -> bytes:
            raise ProtocolError(f"the body is {encoding!r}-encoded, which sseprobe does not decode")

        return refuse
    inflate = zlib.decompressobj(wbits)

    def decode(piece: bytes) -> bytes:
        try:
            return inflate.decompress(piece)
        except zlib.error as exc:
            raise ProtocolError(f"the {encoding} body is corrupt: {exc}") from None

    return decode


def _split(url: str) -> tuple[str, str, int, str]:
    """(host header, host, port, request target) of an ``http://`` URL."""
    rest = url[7:]
    slash = rest.find("/")
    query = rest.find("?")
    cut = min(i for i in (slash, query, len(rest)) if i >= 0)
    authority, target = rest[:cut], rest[cut:] or "/"
    if target[0] == "?":
        target = "/" + target
    if "#" in target:
        target = target[: target.index("#")]
    if "@" in authority:
        raise ValueError("credentials in the URL are not supported by the lean client")
    if authority.startswith("["):
        end = authority.index("]")
        host, port_text = authority[1:end], authority[end + 2 :]
    else:
        host, _, port_text = authority.rpartition(":") if ":" in authority else (authority, "", "")
    port = int(port_text) if port_text else 80
    if not host:
        raise ValueError(f"no host in {url!r}")
    if not target.isascii() or " " in target:
        target = quote(target, safe=_PATH_SAFE)
    return authority, host, port, target


class LeanClient:
    """HTTP/1.1 keep-alive client for ``http://`` URLs; other URLs and other methods go to aiohttp.

    ``connect`` bounds the TCP connect; ``idle`` the silence while a response is awaited or read.
    ``limit`` caps connections in use at once (0: no cap). ``stamp`` hears when each request's
    connection is ready (new or reused), for ``connect_ms``.
    """

    def __init__(
        self,
        connect: float,
        idle: float,
        limit: int = 0,
        stamp: Callable[[], object] | None = None,
        fallback: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        self._connect_timeout = connect
        self._idle = idle
        self._limit = asyncio.Semaphore(limit) if limit else None
        self._stamp = stamp
        self._fallback_factory = fallback
        self._fallback: aiohttp.ClientSession | None = None
        self._pool: dict[tuple[str, int], list[_Conn]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}
        self._split: dict[str, tuple[str, str, int, str]] = {}
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, looked up once (each look-up costs a getpid system call)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # --- aiohttp for the rest -------------------------------------------------------------------
    def aiohttp_session(self) -> aiohttp.ClientSession:
        if self._fallback is None:
            if self._fallback_factory is None:
                raise RuntimeError("no aiohttp session for URLs the lean client does not speak")
            self._fallback = self._fallback_factory()
        return self._fallback

    def __getattr__(self, name: str) -> Any:  # get(), post(), ... as aiohttp's, for health checks
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.aiohttp_session(), name)

    # --- requests -------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        head_timeout: float | None = None,
    ) -> Any:
        """Send one request and return its response once the head has arrived.

        ``head_timeout``: seconds from now for connect plus response head, else :class:`HeadTimeout`.
        """
        if not url.startswith("http://"):
            http = self.aiohttp_session()
            if head_timeout is None:
                return await http.request(method, url, data=data, headers=headers)
            try:
                async with asyncio.timeout(head_timeout) as cm:
                    return await http.request(method, url, data=data, headers=headers)
            except TimeoutError:
                if cm.expired():
                    raise HeadTimeout() from None
                raise
        # the origin (scheme, host, port) is parsed once; the path is taken as it is when plain
        cut = url.find("/", 7)
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
        block = "".join([f"{name}: {value}\r\n" for name, value in headers.items()]) if headers else ""
        if block.count("\n") != len(headers or ()) or block.count("\r") != len(headers or ()):
            raise ValueError("a header name or value holds a line break")
        names = " ".join(headers).lower().split() if headers else ()
        if "host" not in names:
            block += f"Host: {authority}\r\n"
        if "accept-encoding" not in names:  # the stream as it is sent: no decoding on the hot path
            block += "Accept-Encoding: identity\r\n"
        if data is not None or method in ("POST", "PUT", "PATCH"):
            block += f"Content-Length: {len(data) if data is not None else 0}\r\n"
        payload = f"{method} {target} HTTP/1.1\r\n{block}User-Agent: {_USER_AGENT}\r\n\r\n".encode("latin-1")
        if data:
            payload += data
        key = (host, port)
        loop = self._loop or self.loop
        start = loop.time()
        try:
            if self._limit is not None:
                if head_timeout is None:
                    await self._limit.acquire()
                else:
                    async with asyncio.timeout(head_timeout):
                        await self._limit.acquire()
            try:
                conn = await self._checkout(key)
            except BaseException:
                if self._limit is not None:
                    self._limit.release()
                raise
        except TimeoutError as exc:
            if isinstance(exc, HeadTimeout) or loop.time() - start < (head_timeout or _NEVER):
                raise
            raise HeadTimeout() from None
        if self._stamp is not None:
            self._stamp()
        conn.method = method
        conn.head = None
        conn.error = None
        conn.mode = _HEAD
        conn.idle = self._idle
        conn.last = now = loop.time()
        conn.deadline = _NEVER if head_timeout is None else start + head_timeout
        if now >= conn.deadline:
            self._done(conn, key, reuse=True)
            raise HeadTimeout()
        assert conn.transport is not None
        conn.transport.write(payload)
        try:
            while conn.head is None:
                if conn.error is not None:
                    raise conn.error
                if conn.lost:
                    raise aiohttp.ServerDisconnectedError("Server disconnected before the response headers")
                await conn.wait()
        except BaseException:
            self._done(conn, key, reuse=False)
            raise
        return LeanResponse(self, conn, key)

    async def _checkout(self, key: tuple[str, int]) -> _Conn:
        pool = self._pool.get(key)
        if pool:
            now = time.monotonic()
            while pool:
                conn = pool.pop()
                if not conn.lost and now - conn.pooled_at < _KEEPALIVE_S:
                    return conn
                conn.close()
        return await self._open(key)

    async def _open(self, key: tuple[str, int]) -> _Conn:
        loop = asyncio.get_running_loop()
        host, port = key
        try:
            async with asyncio.timeout(self._connect_timeout):
                addrs = await self._resolve(loop, host, port)
                last: OSError | None = None
                for addr in addrs:
                    try:
                        _, conn = await loop.create_connection(lambda: _Conn(loop), addr[0], addr[1])
                        return conn
                    except OSError as exc:
                        last = exc
                assert last is not None
                raise last
        except TimeoutError:
            raise ConnectError(f"connect timed out: {host}:{port} within {self._connect_timeout:g}s") from None
        except OSError as exc:
            raise ConnectError(f"{type(exc).__name__}: {exc}"[:200]) from None

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

    def _done(self, conn: _Conn, key: tuple[str, int], reuse: bool) -> None:
        if self._limit is not None:
            self._limit.release()
        # an armed timer is left to fire: with no reader waiting it just lapses (cheaper than a
        # cancel and a new timer per request)
        conn.idle = conn.deadline = _NEVER
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
        if self._fallback is not None:
            await self._fallback.close()

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
