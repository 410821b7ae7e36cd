"""HTTP/1.1 response framing without a socket: bytes in, head/body/end events out (sans-IO).

Why: the status line, headers, Content-Length and chunked framing are llhttp's (``httptools``), a
strict parser in C that de-chunks without a Python call per framing line; what llhttp leaves to its
caller is kept here, small and testable byte by byte: interim (1xx) responses are skipped, a body
delimited by the connection's close ends at :meth:`ResponseFramer.eof` (httptools has no finish call),
an oversized head is refused, ``Content-Encoding: gzip|deflate`` bodies are inflated piece by piece and
every body is capped (:mod:`.body`: ``body_cap`` decoded bytes per response), and
every malformed response is raised as sseprobe's own :class:`~._outcomes.ProtocolError` naming what
was wrong, so the transport above needs no error mapping of its own.
"""

from __future__ import annotations

from typing import Protocol

import httptools

from .._outcomes import PrematureClose, ProtocolError
from .body import MAX_STREAM_BODY, Inflater, inflater, too_long

__all__ = ["FrameEvents", "ResponseFramer", "Head", "MAX_HEAD"]

MAX_HEAD = 64 * 1024  # status line and headers, bytes


class Head:
    """A response's status, HTTP/1.minor and headers (names lower-cased, in order, repeats kept)."""

    __slots__ = ("status", "minor", "fields")

    def __init__(self, status: int, minor: int, fields: list[tuple[str, str]]) -> None:
        self.status, self.minor, self.fields = status, minor, fields

    def getall(self, name: str, default: list[str] | tuple[()] = ()) -> list[str] | tuple[()]:
        key = name.lower()
        values = [v for k, v in self.fields if k == key]
        return values or default

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.getall(name)
        return ", ".join(values) if values else default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.getall(name))


class FrameEvents(Protocol):
    """What the framer tells its owner, in order: one head, body pieces, one end per response."""

    def got_head(self, head: Head) -> None: ...

    def got_body(self, data: bytes) -> None: ...

    def got_end(self) -> None: ...


class ResponseFramer:
    """Responses on one connection, one after another. ``feed`` bytes as they arrive; ``eof`` when
    the connection closes. Both raise ProtocolError (malformed) or PrematureClose (cut short)."""

    __slots__ = (
        "_events",
        "_parser",
        "_fields",
        "_in_head",
        "_head_bytes",
        "_interim",
        "_until_close",
        "_started",
        "_inflate",
        "_first",
        "body_cap",
        "_body_bytes",
        "budget",
        "_end_pending",
    )

    def __init__(self, events: FrameEvents) -> None:
        self._events = events
        self._parser = httptools.HttpResponseParser(self)
        self._fields: list[tuple[str, str]] = []
        self._in_head = False  # between a response's first byte and the end of its head
        self._head_bytes = 0
        self._interim = False  # the response being parsed is a 1xx: the real one follows
        self._until_close = False  # the body has no length: the connection's close ends it
        self._started = False  # a response has begun and not ended
        self._inflate: Inflater | None = None
        self._first = b""  # the first bytes of the response, to name an HTTP/2 answer
        self.body_cap = MAX_STREAM_BODY  # decoded body bytes a response may carry (its owner sets it per request)
        self._body_bytes = 0
        self.budget = 1 << 62  # inflated bytes the owner takes now (it sets this before feed and pump)
        self._end_pending = False  # the message ended while compressed bytes still wait: end after them

    # --- the owner's side -----------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        in_head = self._in_head or not self._started
        if in_head and len(self._first) < 40:
            self._first += data[: 40 - len(self._first)]
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise ProtocolError(f"the server switched protocols (HTTP {self._parser.get_status_code()})") from None
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Exception):
                raise cause from None
            raise ProtocolError(f"malformed HTTP response: {exc}") from None
        except httptools.HttpParserError as exc:
            raise ProtocolError(self._malformed(exc)) from None
        if in_head and self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                raise ProtocolError(f"response head longer than {MAX_HEAD // 1024} KiB")

    def eof(self) -> None:
        """The connection closed. A body delimited by the close ends here (``end``); a response cut
        short raises PrematureClose. Nothing happens between responses."""
        if self._end_pending:  # complete on the wire, not yet inflated: all of it now
            self.pump(1 << 62)
            return
        if not self._started:
            return
        if self._in_head or self._interim:  # a reachable server that sent part of a head: not a connect failure
            raise ProtocolError("the server closed the connection in the middle of the response head")
        if not self._until_close:
            raise PrematureClose("the connection closed mid-body (response payload not completed)")
        self._started = False
        self._finish_body()
        self._events.got_end()

    @property
    def busy(self) -> bool:
        """A response has begun and has not ended."""
        return self._started

    @property
    def pending(self) -> bool:
        """Compressed body bytes wait to be inflated (``pump``), or the end waits behind them."""
        return self._end_pending or (self._inflate is not None and self._inflate.pending)

    def pump(self, budget: int) -> None:
        """Inflate up to ``budget`` more bytes of a compressed body; the end follows its last byte."""
        self.budget = budget
        if self._inflate is not None:
            self._inflate.pull(budget, self._piece)
        if self._end_pending and not (self._inflate is not None and self._inflate.pending):
            self._end_pending = False
            self._finish_body()
            self._events.got_end()

    def _malformed(self, exc: Exception) -> str:
        first = self._first
        # an HTTP/2 server's first bytes: its preface, or a binary frame header (never text)
        if first[:1] == b"\0" or (first[:1] == b"P" and b"PRI * HTTP/2".startswith(first[:12])):
            return "the server answered in HTTP/2, not HTTP/1.1"
        if isinstance(exc, httptools.HttpParserInvalidStatusError):
            line = first.split(b"\r", 1)[0]
            return f"malformed HTTP response: invalid status line {line!r}"
        return f"malformed HTTP response: {exc}"

    # --- llhttp's callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._started = True
        self._in_head = True
        self._interim = False
        self._head_bytes = 0
        self._body_bytes = 0
        self._fields = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # trailers (after a chunked body) are not the head's
            self._fields.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status == 101:
            raise ProtocolError("the server switched protocols (HTTP 101): not an HTTP/1.1 response")
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the real one follows
            self._interim = True
            return
        self._in_head = False
        fields = self._fields
        if sum(len(k) + len(v) for k, v in fields) > MAX_HEAD:  # a head that came whole in one read
            raise ProtocolError(f"response head longer than {MAX_HEAD // 1024} KiB")
        framed = any(k == "content-length" or k == "transfer-encoding" for k, _ in fields)
        self._until_close = not framed and status not in (204, 304)
        self._inflate = inflater(fields)
        self._end_pending = False
        self._events.got_head(Head(status, int(parser.get_http_version()[2:]), fields))

    def on_body(self, data: bytes) -> None:
        inflate = self._inflate
        if inflate is None:
            self._piece(data)
            return
        inflate.push(data)
        if self.budget > 0:
            inflate.pull(self.budget, self._piece)

    def _piece(self, data: bytes) -> None:
        """One piece of the decoded body, counted against ``body_cap`` before anyone holds it."""
        self._body_bytes += len(data)
        self.budget -= len(data)
        if self._body_bytes > self.body_cap:
            raise too_long(self.body_cap)
        self._events.got_body(data)

    def on_message_complete(self) -> None:
        self._first = b""
        if self._interim:
            self._interim = False
            self._started = False
            return
        self._started = False
        if self._inflate is not None and self._inflate.pending:
            self._end_pending = True  # pump() ends it once the waiting bytes are inflated
            return
        self._finish_body()
        self._events.got_end()

    def _finish_body(self) -> None:
        inflate, self._inflate = self._inflate, None
        if inflate is not None:
            inflate.finish(self._piece)
