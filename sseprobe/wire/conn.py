"""One keep-alive connection of sseprobe's client: the response being received (framed by :mod:`.h1`),
TLS decrypted in memory inside the data callback, body bytes held or pushed to a sink, and the one
lazily re-armed timer that keeps the head deadline and the idle timeout."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from .._outcomes import ConnectError, IdleTimeout, ProtocolError, SessionError, SessionTimeout
from .body import HELD_INFLATED, PUMP_INFLATED
from .h1 import Head, ResponseFramer

__all__ = ["Conn", "HeadTimeout", "NEVER"]

HIGH_WATER = 256 * 1024  # unread body bytes before the socket stops being read
NEVER = float("inf")
_TLS_READ = 1 << 14  # bytes per TLS read: one record's plaintext at most (a larger buffer costs more to allocate)


class HeadTimeout(SessionTimeout):
    """The response head did not come in time (``head_timeout``, or the idle timeout without one)."""


class Conn(asyncio.Protocol):
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
        self.idle = NEVER  # read deadline: no bytes for this long while a reader waits
        self.deadline = NEVER  # loop time by which the response head must have come
        self.head_timeout = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = NEVER
        self.pooled_at = 0.0
        self.sink: Callable[[bytes], bool] | None = None  # consume(): body bytes pushed as they come
        self.finished = False  # the sink said the reader has all it wants
        self.tcp_ms: float | None = None  # set by the client when it opens this connection
        self.tls_ms: float | None = None
        self.address: str | None = None  # host:port this connection went to
        self.tls_resumed = False
        self.used = False  # has carried a request before
        # TLS in memory (https): records are decrypted here, in the data callback, with no transport layer
        # of the loop's in between (a third less CPU per kept-alive session than the loop's SSL transport)
        self.tls: ssl.SSLObject | None = None
        self.tls_in = self.tls_out = ssl.MemoryBIO()
        self.handshake: asyncio.Future[None] | None = None
        self.pump_due = False  # a step of inflating into the sink is scheduled

    # --- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_exception(ConnectError("the server closed the connection during the TLS handshake"))
        if self.active and not self.done and self.error is None:
            try:
                # compressed bytes that came before the close: into the sink a step at a time (never all held)
                while self.framer.pending and self.sink is not None and not self.finished and self.error is None:
                    self.framer.pump(PUMP_INFLATED)
                    if self.pieces:
                        self._push()
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
        framer = self.framer
        framer.budget = PUMP_INFLATED if self.sink is not None else max(HELD_INFLATED - self.nbuf, 0)
        try:
            framer.feed(data)
        except Exception as exc:  # noqa: BLE001 - raised to the reader, never into the loop
            if self.done:  # garbage after a complete response: that response stands, the connection goes
                self.stray = True
            else:
                self.error = exc
            if self.transport is not None:
                self.transport.close()
        if framer.pending and self.error is None:  # compressed bytes wait: no more read until they are inflated
            self._hold()
        if self.sink is not None:
            if self.pieces and not self.finished:
                self._push()
            if framer.pending and not self.finished and self.error is None:
                self.schedule_pump()
            if not (self.finished or self.error is not None or self.done):
                return  # the waiting reader wakes only at the end
        elif self.nbuf > HIGH_WATER:
            self._hold()
        self._wake()

    # --- a compressed body, inflated as it is read --------------------------------------------------
    def _hold(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def schedule_pump(self) -> None:
        if not self.pump_due:
            self.pump_due = True
            self.loop.call_soon(self._pump_step)

    def _pump_step(self) -> None:
        """One turn's worth of a compressed body into the sink (PUMP_INFLATED), the rest on the next
        turn: a bomb never holds the loop for more than one step."""
        self.pump_due = False
        if self.sink is not None and not self.finished and self.error is None and self.framer.pending:
            self.last = self.loop.time()  # inflating is progress: the idle timeout waits for it
            try:
                self.framer.pump(PUMP_INFLATED)
            except Exception as exc:  # noqa: BLE001 - raised to the reader, never into the loop
                self.error = exc
                if self.transport is not None:
                    self.transport.close()
            if self.pieces and not self.finished:
                self._push()
            if self.framer.pending and not self.finished and self.error is None:
                self.schedule_pump()
                return
        if self.paused and not self.framer.pending and self.transport is not None and not self.lost:
            self.paused = False
            self.transport.resume_reading()
        if self.finished or self.error is not None or self.done:
            self._wake()

    def pump_held(self) -> None:
        """For a reader that reads the body itself: inflate up to HELD_INFLATED more."""
        try:
            self.framer.pump(max(HELD_INFLATED - self.nbuf, 1))
        except Exception as exc:  # noqa: BLE001 - raised to the reader
            self.error = exc
            if self.transport is not None:
                self.transport.close()

    # --- TLS in memory ---------------------------------------------------------------------------
    def start_tls(self, ctx: ssl.SSLContext, host: str, session: ssl.SSLSession | None = None) -> asyncio.Future[None]:
        """Begin the handshake (ClientHello sent, offering ``session`` to resume); the future is done when it
        completes or fails."""
        self.tls_in, self.tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.tls_in, self.tls_out, server_hostname=host, session=session)
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
            due = min(self.last + self.idle, self.deadline if self.head is None else NEVER)
            if due != NEVER:
                self.timer = self.loop.call_at(due, self._on_timer)
                self.timer_due = due
            return
        w, self.waiter = self.waiter, None
        if not w.done():
            w.set_exception(exc)

    async def wait(self) -> None:
        """Until more bytes, the end, or an error: IdleTimeout after ``idle`` without bytes,
        HeadTimeout past ``deadline`` without the response head. One timer, re-armed lazily."""
        if self.paused and self.transport is not None and not self.framer.pending:
            self.paused = False
            self.transport.resume_reading()
        fut = self.waiter = self.loop.create_future()
        due = min(self.last + self.idle, self.deadline if self.head is None else NEVER)
        if due < self.timer_due or self.timer is None:  # an armed timer due earlier re-arms itself
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if due != NEVER:
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
