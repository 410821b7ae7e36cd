"""Every option a plan reads, as one frozen value: the single source of their built-in defaults.

The command line's flags take their defaults from :data:`OPTIONS` and the Python API's ``DEFAULTS`` is
derived from it. Which options were set explicitly (a flag on the command line, a key in a caller's
overrides) travels beside the value as ``given``, never guessed from a value: a flag given at its
default value still counts as given. Precedence: built-in default < scenario file < given.
New values are made with :func:`dataclasses.replace`; nothing here is ever changed in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from .._config import LOOK_EVERY, MAX_IN_FLIGHT, MAX_SESSIONS, METRICS_LINGER_S
from .._errors import UsageProblem

__all__ = ["Options", "OPTIONS", "OPTION_NAMES", "options_from"]


@dataclass(frozen=True)
class Options:
    """Options of ``run`` and ``compare``, named as the command line's parameters (``--timeout`` is
    ``session_timeout``, ``--policy`` is ``policy_file``, ``--json`` is ``as_json``, ``--html`` is
    ``html_path``). Unchecked values: the plan checks them, with one line saying what is wrong."""

    # load: how much, how it arrives
    scenario: str | None = None
    sessions: int | None = None  # None with no duration and no rate: 100
    duration: float | None = None
    concurrency: int = 10
    think: float = 0.0
    rate: float | None = None
    poisson: bool | None = None
    seed: int | None = None
    max_in_flight: int = MAX_IN_FLIGHT
    workers: int | None = None  # None: one per CPU
    cluster: str | None = None
    workers_per_node: int | None = None
    on_node_loss: str | None = None  # with --cluster: abort
    abort_on_trigger: float | None = None
    # timeouts and limits
    connect_timeout: float = 10.0
    idle_timeout: float = 60.0
    session_timeout: float = 330.0
    grace: float = 30.0
    connections: int = 0  # 0: unlimited
    pin_address: bool = False  # every new connection to a name's first address (default: they take turns)
    max_line: int = 1 << 20
    # judging and output
    policy_file: str | None = None
    out: str | None = None
    as_json: bool = False
    quiet: bool = False
    html_path: str | None = None
    # what each session sends
    app: str = "vana"
    user_prefix: str = "sseprobe"
    messages: tuple[str, ...] = ("test",)
    session_create: str = "auto"
    legacy_stream: str = "run"
    headers: tuple[str, ...] | Mapping[str, str] = ()  # 'Name: value' lines, or a table of them
    bearer_env: str | None = None
    bearer_file: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    cert: str | None = None
    key: str | None = None
    tls_resume: bool = True  # a new connection resumes the origin's TLS session, as browsers do
    # compare
    canonical_url: str | None = None
    legacy_url: str | None = None
    split: str | None = None
    until_decided: bool = False
    look_every: int = LOOK_EVERY
    max_sessions: int = MAX_SESSIONS
    max_duration: float | str | None = None  # seconds, or a span such as "30m"
    traffic_rate: float | None = None
    # live metrics (run and compare)
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_linger: float = METRICS_LINGER_S
    # run
    flow: str | None = None
    url: str | None = None
    method: str = "GET"
    body: str | bytes | None = None
    body_file: str | None = None
    complete_on: str | None = None
    first_answer_event: str | None = None
    first_answer_field: str | None = None


OPTIONS = Options()  # the built-in defaults
OPTION_NAMES = frozenset(f.name for f in fields(Options))


def options_from(values: Mapping[str, object], base: Options = OPTIONS) -> Options:
    """``base`` with ``values`` laid over it (a Python caller's overrides); an unknown name is bad input."""
    unknown = set(values) - OPTION_NAMES
    if unknown:
        raise UsageProblem(f"unknown option(s): {', '.join(sorted(unknown))}")
    return replace(base, **values)  # type: ignore[arg-type]
