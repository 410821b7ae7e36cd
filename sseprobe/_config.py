"""Value objects for one run: timeouts, limits and what each flow sends. Immutable, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Timeouts",
    "Limits",
    "TLSOptions",
    "FlowOptions",
    "FLOWS",
    "SESSION_CREATE",
    "LEGACY_STREAMS",
    "MAX_IN_FLIGHT",
    "LOOK_EVERY",
    "MAX_SESSIONS",
    "METRICS_LINGER_S",
]

FLOWS = ("canonical", "legacy", "generic")
SESSION_CREATE = ("auto", "adk", "backend", "none")
LEGACY_STREAMS = ("run", "agent_network_sse")

# Defaults shared by the stages that hold them (the plan's options, the engine's Load, the sequential
# mode's UntilDecided), each written once here.
MAX_IN_FLIGHT = 15_000  # open model: the cap on sessions in flight (held-back arrivals show as lag)
LOOK_EVERY = 100  # --until-decided: sessions per cohort between looks
MAX_SESSIONS = 20_000  # --until-decided: sessions per cohort before it stops undecided
# --metrics-linger: a little over one scrape interval (Prometheus' default is 15 s): the last values are
# scraped once at least
METRICS_LINGER_S = 16.0


@dataclass(frozen=True)
class Timeouts:
    """Seconds. ``connect`` bounds the TCP connect and the wait for response headers; ``idle`` the
    silence between bytes of an open stream; ``session`` the whole session, all steps included."""

    connect: float = 10.0
    idle: float = 60.0
    session: float = 330.0  # the service bounds a run at 300 s server-side

    def __post_init__(self) -> None:
        for name in ("connect", "idle", "session"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} timeout must be > 0 seconds")


@dataclass(frozen=True)
class Limits:
    """``connections`` 0 = unlimited (one stream holds one connection); line/event bounds in bytes;
    ``pin_address``: every new connection to the first resolved address (default: the addresses of a name
    take turns, so a service behind several A records gets its load spread as its clients would)."""

    connections: int = 0
    pin_address: bool = False
    max_line: int = 1 << 20
    max_event: int = 1 << 20

    def __post_init__(self) -> None:
        if self.connections < 0:
            raise ValueError("connection limit must be >= 0")
        if self.max_line < 1 or self.max_event < 1:
            raise ValueError("line and event limits must be >= 1 byte")


@dataclass(frozen=True)
class TLSOptions:
    """How an ``https://`` target is trusted: the system's CAs unless ``ca_file``; ``insecure`` verifies
    nothing (marked as such wherever results show); ``cert``/``key``: a client certificate (mTLS);
    ``resume``: a new connection resumes the TLS session of an earlier one to the same host, as browsers
    do (an abbreviated handshake); False gives a full handshake each time."""

    ca_file: str | None = None
    insecure: bool = False
    cert: str | None = None
    key: str | None = None
    resume: bool = True

    def __post_init__(self) -> None:
        if self.key is not None and self.cert is None:
            raise ValueError("--key needs --cert (the client certificate it belongs to)")
        if self.insecure and self.ca_file is not None:
            raise ValueError("--insecure and --ca-file contradict each other: use one")


FlowName = Literal["canonical", "legacy", "generic"]


@dataclass(frozen=True)
class FlowOptions:
    """What one session sends. Each session gets fresh uuids for user and session ids."""

    flow: FlowName = "canonical"
    url: str = "http://127.0.0.1:8000"
    app: str = "vana"
    user_prefix: str = "sseprobe"
    messages: tuple[str, ...] = ("test",)  # one is picked per session
    session_create: Literal["auto", "adk", "backend", "none"] = "auto"
    legacy_stream: Literal["run", "agent_network_sse"] = "run"  # legacy: GET .../run or the older GET
    headers: tuple[tuple[str, str], ...] = ()  # may hold secrets: never printed or stored
    method: str = "GET"  # generic only
    body: bytes | None = None  # generic only
    complete_on: str | None = None  # generic: named event that means success
    first_answer_event: str | None = None  # generic: named event that carries answer content (TTFE)
    first_answer_field: str | None = None  # generic: dotted JSON path whose non-empty value is answer content
    tls: TLSOptions = TLSOptions()  # https:// only

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("at least one message text is needed")
        if self.flow not in FLOWS:
            raise ValueError(f"unknown flow {self.flow!r} (expected one of {', '.join(FLOWS)})")
        if self.first_answer_field is not None and "" in self.first_answer_field.split("."):
            raise ValueError(f"first answer field {self.first_answer_field!r} is not a dotted path (a.b.c)")
        if self.session_create not in SESSION_CREATE:
            raise ValueError(
                f"unknown session create style {self.session_create!r} (expected one of {', '.join(SESSION_CREATE)})"
            )
        if self.legacy_stream not in LEGACY_STREAMS:
            raise ValueError(
                f"unknown legacy stream {self.legacy_stream!r} (expected one of {', '.join(LEGACY_STREAMS)})"
            )
