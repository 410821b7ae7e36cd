"""One small record per session: the unit everything downstream folds over."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from ._outcomes import Outcome

__all__ = ["SessionRecord", "SessionRecordDoc"]


class SessionRecordDoc(TypedDict):
    """A SessionRecord as plain values (``SessionRecord.to_dict``): its fields, the outcome as its name."""

    cohort: str
    seq: int
    scheduled: float
    started: float
    status: int | None
    outcome: str
    connected: bool
    setup_ms: float | None
    connect_ms: float | None
    tcp_ms: float | None
    tls_ms: float | None
    address: str | None
    tls_resumed: bool
    headers_ms: float | None
    first_event_ms: float | None
    ttfe_ms: float | None
    completion_ms: float | None
    events: int
    answer_events: int
    answer_chars: int
    bytes: int
    max_gap_ms: float | None
    error: str | None


@dataclass(slots=True)
class SessionRecord:
    """What one session did. Times are seconds on the run's monotonic clock; durations in ms.

    Every latency is measured from when the message *should* have been sent: the scheduled start
    plus any prerequisite step (``setup_ms``, e.g. session creation), not the actual send time.
    A generator that falls behind shows up as ``lag_ms`` and in every latency, never as a faster
    server (coordinated omission).
    """

    cohort: str
    seq: int
    scheduled: float
    started: float = 0.0
    status: int | None = None  # HTTP status of the stream response (or of the request that failed)
    outcome: Outcome = Outcome.INTERNAL_ERROR
    connected: bool = False  # answered 2xx text/event-stream
    setup_ms: float | None = None  # prerequisite steps (session create), excluded from the latencies below
    connect_ms: float | None = None  # scheduled message send -> stream connection ready
    tcp_ms: float | None = None  # TCP connect, when the session opened a new connection (not reused)
    tls_ms: float | None = None  # TLS handshake of that connection (https only)
    address: str | None = None  # the address that connection went to (several A records take turns)
    tls_resumed: bool = False  # that handshake resumed an earlier TLS session (an abbreviated handshake)
    headers_ms: float | None = None  # scheduled message send -> stream response headers
    first_event_ms: float | None = None  # scheduled message send -> first progress event (even bookkeeping)
    ttfe_ms: float | None = None  # scheduled message send -> first event with answer content (TTFE)
    completion_ms: float | None = None  # scheduled message send -> terminal success
    events: int = 0
    answer_events: int = 0  # events that carried answer content
    answer_chars: int = 0  # characters of answer text, from the final/cumulative text (not re-counted)
    bytes: int = 0
    max_gap_ms: float | None = None  # longest silence between events
    error: str | None = None  # short, never a body, never a secret

    @property
    def lag_ms(self) -> float:
        return max(0.0, (self.started - self.scheduled) * 1000.0)

    def to_dict(self) -> SessionRecordDoc:
        return {
            "cohort": self.cohort,
            "seq": self.seq,
            "scheduled": self.scheduled,
            "started": self.started,
            "status": self.status,
            "outcome": str(self.outcome),
            "connected": self.connected,
            "setup_ms": self.setup_ms,
            "connect_ms": self.connect_ms,
            "tcp_ms": self.tcp_ms,
            "tls_ms": self.tls_ms,
            "address": self.address,
            "tls_resumed": self.tls_resumed,
            "headers_ms": self.headers_ms,
            "first_event_ms": self.first_event_ms,
            "ttfe_ms": self.ttfe_ms,
            "completion_ms": self.completion_ms,
            "events": self.events,
            "answer_events": self.answer_events,
            "answer_chars": self.answer_chars,
            "bytes": self.bytes,
            "max_gap_ms": self.max_gap_ms,
            "error": self.error,
        }
