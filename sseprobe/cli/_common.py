"""Shared pieces of the commands: the option groups, and the flags given on the command line.

The engine never sees click: options become value objects in :mod:`._plan`, in one order of precedence:
built-in default < scenario file < flag given on the command line (``given``). The names below that are
not click's are re-exported from there, so each command imports its helpers from one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click
from click.core import ParameterSource

from .._config import LEGACY_STREAMS, SESSION_CREATE
from ..load.cluster import NODE_LOSS
from ..plan.options import OPTION_NAMES, OPTIONS, Options, options_from
from ..plan.resolve import (
    UsageProblem,
    build_flow,
    build_limits,
    build_load,
    build_run_options,
    build_timeouts,
    build_tls,
    check_outputs,
    check_token,
    fit_open_files,
    load_config,
    parse_headers,
    parse_span,
    parse_url,
    prepare_run,
    public_headers,
    read_policy,
    read_scenario,
    split_credentials,
    tls_config,
    worker_count,
)
from ..plan.scenario import out_of_bounds
from ..verdict.levels import EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN, EXIT_WARNING

__all__ = [
    "EXIT_OK",
    "EXIT_WARNING",
    "EXIT_CRITICAL",
    "EXIT_UNKNOWN",
    "UsageProblem",
    "parse_url",
    "parse_headers",
    "public_headers",
    "load_options",
    "flow_options",
    "answer_options",
    "build_timeouts",
    "build_load",
    "build_limits",
    "build_flow",
    "build_run_options",
    "worker_count",
    "prepare_run",
    "check_outputs",
    "fit_open_files",
    "split_credentials",
    "check_token",
    "read_scenario",
    "read_policy",
    "load_config",
    "given",
    "planned",
    "build_tls",
    "tls_config",
    "sequential_options",
]


def given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def planned(ctx: click.Context, params: Mapping[str, object]) -> tuple[Options, frozenset[str]]:
    """The options a plan reads (a flag not given holds its default, read from OPTIONS), and the names
    of those given on the command line: what the plan lays over a scenario. The command's other
    parameters (offline compare's files and cohorts) stay with the command."""
    values = {k: v for k, v in params.items() if k in OPTION_NAMES}
    return options_from(values), frozenset(k for k in values if given(ctx, k))


# --- option groups ------------------------------------------------------------------------------


def _apply(f: Callable[..., Any], opts: list[Callable[..., Any]]) -> Callable[..., Any]:
    for opt in reversed(opts):
        f = opt(f)
    return f


def _bounded(_ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Every count, rate and time is checked where it enters: finite, within sane bounds."""
    expected = out_of_bounds(param.name or "", value)
    if expected:
        raise click.BadParameter(f"{value!r}: expected {expected}", param=param)
    return value


def load_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """How much load, how it arrives, timeouts, limits, output. Shared by run and compare."""
    return _apply(
        f,
        [
            click.option(
                "--scenario",
                "-s",
                type=click.Path(dir_okay=False),
                default=None,
                help="Scenario TOML file (cohorts, load, phases, timeouts, policy); "
                "flags given here override its values.",
            ),
            click.option(
                "--sessions",
                "-n",
                type=int,
                callback=_bounded,
                default=None,
                help="Sessions to run (compare: per cohort on average; default 100 when no --duration or --rate).",
            ),
            click.option(
                "--duration",
                "-d",
                type=float,
                callback=_bounded,
                default=None,
                help="Stop starting sessions after this many seconds.",
            ),
            click.option(
                "--concurrency",
                "-c",
                type=int,
                callback=_bounded,
                default=OPTIONS.concurrency,
                show_default=True,
                help="Closed model: sessions in flight at once (users; compare: per cohort).",
            ),
            click.option(
                "--think",
                type=float,
                callback=_bounded,
                default=OPTIONS.think,
                show_default=True,
                help="Closed model: seconds a user waits between sessions.",
            ),
            click.option(
                "--rate",
                "-r",
                type=float,
                callback=_bounded,
                default=None,
                help="Open model: new sessions per second (compare: per cohort on average), arriving whether "
                "or not earlier ones finished (needs --duration or --sessions).",
            ),
            click.option(
                "--poisson",
                is_flag=True,
                default=None,
                help="Open model: Poisson (random) arrivals instead of evenly spaced ones.",
            ),
            click.option(
                "--max-in-flight",
                type=int,
                callback=_bounded,
                default=OPTIONS.max_in_flight,
                show_default=True,
                help="Open model: cap on sessions in flight; held-back arrivals show as lag.",
            ),
            click.option(
                "--workers",
                "-w",
                type=int,
                callback=_bounded,
                default=None,
                help="Engine processes, each with its share of the load (default: the number of CPUs).",
            ),
            click.option(
                "--cluster",
                default=None,
                metavar="local:N|ray://HOST:PORT|auto",
                help="Run the shares as Ray actors on every node of a cluster (needs the ray extra): "
                "local:N starts Ray here with N CPUs, auto joins the cluster of a Ray job.",
            ),
            click.option(
                "--workers-per-node",
                type=int,
                default=None,
                help="With --cluster: actors on each node (default: the node's CPUs).",
            ),
            click.option(
                "--on-node-loss",
                type=click.Choice(NODE_LOSS),
                default=OPTIONS.on_node_loss,
                help="With --cluster: when an actor or node is lost, stop the rest (abort, the default: the "
                "run is interrupted) or continue (the load is flagged as below target).",
            ),
            click.option(
                "--abort-on-trigger",
                type=float,
                callback=_bounded,
                default=None,
                metavar="SECONDS",
                help="Stop early when a rollback trigger holds this long.",
            ),
            click.option(
                "--connect-timeout",
                type=float,
                callback=_bounded,
                default=OPTIONS.connect_timeout,
                show_default=True,
                help="Seconds for the TCP connect and for response headers.",
            ),
            click.option(
                "--idle-timeout",
                type=float,
                callback=_bounded,
                default=OPTIONS.idle_timeout,
                show_default=True,
                help="Seconds an open stream may stay silent (idle_timeout outcome).",
            ),
            click.option(
                "--timeout",
                "session_timeout",
                type=float,
                callback=_bounded,
                default=OPTIONS.session_timeout,
                show_default=True,
                help="Seconds for a whole session, all requests included (timeout outcome).",
            ),
            click.option(
                "--grace",
                type=float,
                callback=_bounded,
                default=OPTIONS.grace,
                show_default=True,
                help="On stop (duration over, Ctrl-C): seconds in-flight sessions may finish.",
            ),
            click.option(
                "--connections",
                type=int,
                callback=_bounded,
                default=OPTIONS.connections,
                show_default=True,
                help="Cap on open connections (0: unlimited; one stream holds one).",
            ),
            click.option(
                "--pin-address",
                is_flag=True,
                default=OPTIONS.pin_address,
                help="Every new connection to the first address a host name resolves to (default: its "
                "addresses take turns, as several A records spread a service's clients).",
            ),
            click.option(
                "--max-line",
                type=int,
                callback=_bounded,
                default=OPTIONS.max_line,
                show_default=True,
                help="Longest SSE line or event in bytes before protocol_error.",
            ),
            click.option(
                "--policy",
                "policy_file",
                type=click.Path(dir_okay=False),
                default=None,
                help="Policy TOML file: thresholds, metrics, triggers, confidence.",
            ),
            click.option(
                "--out",
                "-o",
                type=click.Path(dir_okay=False),
                default=None,
                help="Results document path (default: results/<kind>-<time>.json).",
            ),
            click.option(
                "--json", "as_json", is_flag=True, help="Print the results document on stdout, and nothing else there."
            ),
            click.option(
                "--quiet",
                "-q",
                is_flag=True,
                help="No progress on stderr (by default a live line on a terminal, else a plain line every 10 s).",
            ),
            click.option(
                "--metrics-port",
                type=int,
                callback=_bounded,
                default=None,
                metavar="PORT",
                help="Serve live Prometheus metrics on this port while the run lasts (0: any free port; "
                "docs/metrics.md).",
            ),
            click.option(
                "--metrics-host",
                default=OPTIONS.metrics_host,
                show_default=True,
                help="With --metrics-port: the address to listen on (loopback unless told otherwise).",
            ),
            click.option(
                "--metrics-linger",
                type=float,
                callback=_bounded,
                default=OPTIONS.metrics_linger,
                show_default=True,
                metavar="SECONDS",
                help="With --metrics-port: how long the endpoint stays up after the run (the last scrape).",
            ),
        ],
    )


def _span(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """--max-duration: seconds, or 30m / 1.5h; bounded like every other time."""
    try:
        seconds = parse_span(value)
    except UsageProblem as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1], param=param) from None
    return _bounded(ctx, param, seconds)  # type: ignore[no-any-return]


def sequential_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """compare --until-decided: sample until the verdict is decided or a cap is hit."""
    return _apply(
        f,
        [
            click.option(
                "--until-decided",
                is_flag=True,
                default=False,
                help="Keep both cohorts running, looking after every --look-every sessions per cohort, "
                "until every critical metric is decided or a cap is hit (instead of --sessions/--duration).",
            ),
            click.option(
                "--look-every",
                type=int,
                callback=_bounded,
                default=OPTIONS.look_every,
                show_default=True,
                help="With --until-decided: sessions per cohort between looks.",
            ),
            click.option(
                "--max-sessions",
                type=int,
                callback=_bounded,
                default=OPTIONS.max_sessions,
                show_default=True,
                help="With --until-decided: stop undecided after this many sessions per cohort.",
            ),
            click.option(
                "--max-duration",
                callback=_span,
                default=None,
                metavar="SPAN",
                help="With --until-decided: stop undecided after this long (seconds, or e.g. 30m, 2h); "
                "the batch it cuts short still counts.",
            ),
            click.option(
                "--traffic-rate",
                type=float,
                callback=_bounded,
                default=None,
                metavar="N",
                help="Sessions per second the service sees: says how long a decision takes at each rollout "
                "step (default: this run's own rate).",
            ),
        ],
    )


def flow_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """What each session sends."""
    return _apply(
        f,
        [
            click.option("--app", default=OPTIONS.app, show_default=True, help="ADK app name."),
            click.option(
                "--user-prefix",
                default=OPTIONS.user_prefix,
                show_default=True,
                help="Prefix of the per-session user id (a uuid follows).",
            ),
            click.option(
                "--message",
                "messages",
                multiple=True,
                default=OPTIONS.messages,
                show_default=True,
                help="User message text (repeatable: one is picked per session).",
            ),
            click.option(
                "--session-create",
                type=click.Choice(SESSION_CREATE),
                default=OPTIONS.session_create,
                show_default=True,
                help="Canonical: create the session backend-style (POST .../sessions; the id the server "
                "returns is used), ADK-style (POST .../sessions/{id} with our id), auto (backend style, "
                "ADK style where that route is missing, remembered per cohort) or not at all.",
            ),
            click.option(
                "--legacy-stream",
                type=click.Choice(LEGACY_STREAMS),
                default=OPTIONS.legacy_stream,
                show_default=True,
                help="Legacy: stream from GET .../run, or from the older GET /agent_network_sse/{session}.",
            ),
            click.option(
                "--header",
                "-H",
                "headers",
                multiple=True,
                metavar="'NAME: VALUE'",
                help="Extra request header (repeatable). Values never reach any output.",
            ),
            click.option(
                "--bearer-env",
                metavar="VAR",
                help="Send 'Authorization: Bearer' with the token in this environment variable.",
            ),
            click.option("--bearer-file", metavar="FILE", help="Same, with the token read from a file."),
            *_TLS_OPTIONS,
        ],
    )


_TLS_OPTIONS = [
    click.option(
        "--ca-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="https: trust the CA certificates in this PEM file instead of the system's.",
    ),
    click.option(
        "--insecure",
        is_flag=True,
        default=False,
        help="https: verify neither certificate nor host name (marked as such in output and results).",
    ),
    click.option(
        "--cert", type=click.Path(dir_okay=False), default=None, help="https: client certificate (PEM), mTLS."
    ),
    click.option(
        "--key", type=click.Path(dir_okay=False), default=None, help="https: its private key, if not in --cert."
    ),
    click.option(
        "--tls-resume/--no-tls-resume",
        default=OPTIONS.tls_resume,
        help="https: a new connection resumes the TLS session of an earlier one to the same host, as browsers "
        "do (default); --no-tls-resume: a full handshake every time.",
    ),
]


def answer_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """What carries answer content in a generic stream (canonical and legacy know theirs)."""
    return _apply(
        f,
        [
            click.option(
                "--first-answer-event",
                metavar="NAME",
                help="Generic flow: the named event that carries answer content; TTFE runs to the first one "
                "(default: any data event but the completing one).",
            ),
            click.option(
                "--first-answer-field",
                metavar="PATH",
                help="Generic flow: a dotted JSON path (e.g. choices.0.delta.content) whose non-empty value "
                "in an event's data is answer content.",
            ),
        ],
    )
