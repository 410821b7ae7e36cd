"""Outcome classes and the exception tree that maps onto them.

Every session ends in exactly one :class:`Outcome`. Flows raise a :class:`SessionError`
subclass to end a session early; the engine maps the exception's ``outcome`` onto the
record, so no failure is ever raised out of a session.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "Outcome",
    "SessionError",
    "ConnectError",
    "HTTPStatusError",
    "BadContentType",
    "StreamError",
    "ProtocolError",
    "PrematureClose",
    "IdleTimeout",
    "SessionTimeout",
    "EmptyAnswer",
]


class Outcome(StrEnum):
    OK = "ok"
    CONNECT_ERROR = "connect_error"
    HTTP_ERROR = "http_error"
    BAD_CONTENT_TYPE = "bad_content_type"
    STREAM_ERROR = "stream_error"
    PROTOCOL_ERROR = "protocol_error"
    PREMATURE_CLOSE = "premature_close"
    IDLE_TIMEOUT = "idle_timeout"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    EMPTY = "empty"  # reached its success event (or clean close) without any answer content
    INTERNAL_ERROR = "internal_error"  # a bug in sseprobe inside one session: recorded, never raised


class SessionError(Exception):
    """Ends a session with ``outcome``; the message is kept (short) in the record."""

    outcome: Outcome = Outcome.INTERNAL_ERROR

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConnectError(SessionError):
    outcome = Outcome.CONNECT_ERROR


class HTTPStatusError(SessionError):
    outcome = Outcome.HTTP_ERROR


class BadContentType(SessionError):
    outcome = Outcome.BAD_CONTENT_TYPE


class StreamError(SessionError):
    outcome = Outcome.STREAM_ERROR


class ProtocolError(SessionError):
    outcome = Outcome.PROTOCOL_ERROR


class PrematureClose(SessionError):
    outcome = Outcome.PREMATURE_CLOSE


class IdleTimeout(SessionError):
    outcome = Outcome.IDLE_TIMEOUT


class SessionTimeout(SessionError):
    outcome = Outcome.TIMEOUT


class EmptyAnswer(SessionError):
    """A "success" that delivered nothing: the legacy path masks model failures this way."""

    outcome = Outcome.EMPTY
