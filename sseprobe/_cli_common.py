"""Shared pieces of the commands: exit codes, option groups, and input that becomes value objects.

The engine never sees click: options become :mod:`._config` objects here, in one order of
precedence: built-in default < scenario file < flag given on the command line. Bad input
becomes a :class:`UsageProblem` (one line, exit 3).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from click.core import ParameterSource

from ._config import SESSION_CREATE, FlowOptions, Limits, Timeouts
from ._engine import Load
from ._pacer import Phase, Schedule
from ._policy import DEFAULT_POLICY, Policy, PolicyError, load_policy
from ._redact import SECRET_HEADERS, redact_url
from ._runner import RunOptions, default_workers, useful_workers
from ._scenario import Scenario, ScenarioError, load_scenario

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
    "resolve",
    "build_timeouts",
    "build_load",
    "build_limits",
    "build_flow",
    "build_run_options",
    "read_scenario",
    "read_policy",
    "load_config",
    "flow_from",
    "given",
]

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3


class UsageProblem(click.ClickException):
    """Bad input: one line, exit 3."""

    exit_code = EXIT_UNKNOWN


# --- plain parsing ------------------------------------------------------------------------------


def parse_url(value: str, what: str = "--url") -> str:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise UsageProblem(f"{what}: not an http(s) URL: {redact_url(value)!r}")
    return value


def parse_headers(
    values: tuple[str, ...] | dict[str, str], bearer_env: str | None, bearer_file: str | None
) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    items = values.items() if isinstance(values, dict) else [_split_header(v) for v in values]
    headers.extend((k.strip(), v.strip()) for k, v in items)
    token = None
    if bearer_env:
        token = os.environ.get(bearer_env)
        if not token:
            raise UsageProblem(f"bearer token: environment variable {bearer_env} is not set or empty")
    if bearer_file:
        try:
            token = Path(bearer_file).read_text().strip()
        except OSError as exc:
            raise UsageProblem(f"bearer token: cannot read {bearer_file}: {exc.strerror}") from None
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    return tuple(headers)


def _split_header(raw: str) -> tuple[str, str]:
    name, sep, val = raw.partition(":")
    if not sep or not name.strip():
        raise UsageProblem(f"--header expects 'Name: value', got {name[:40]!r}...")
    return name, val


def public_headers(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Header names for the results document; secret values replaced."""
    return {k: ("REDACTED" if k.lower() in SECRET_HEADERS else v) for k, v in headers}


# --- option groups ------------------------------------------------------------------------------


def _apply(f: Callable[..., Any], opts: list[Callable[..., Any]]) -> Callable[..., Any]:
    for opt in reversed(opts):
        f = opt(f)
    return f


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
                default=None,
                help="Sessions to run in all (default 100 when no --duration or --rate).",
            ),
            click.option(
                "--duration", "-d", type=float, default=None, help="Stop starting sessions after this many seconds."
            ),
            click.option(
                "--concurrency",
                "-c",
                type=int,
                default=10,
                show_default=True,
                help="Closed model: sessions in flight at once (users).",
            ),
            click.option(
                "--think",
                type=float,
                default=0.0,
                show_default=True,
                help="Closed model: seconds a user waits between sessions.",
            ),
            click.option(
                "--rate",
                "-r",
                type=float,
                default=None,
                help="Open model: new sessions per second, arriving whether or not earlier "
                "ones finished (needs --duration or --sessions).",
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
                default=15_000,
                show_default=True,
                help="Open model: cap on sessions in flight; held-back arrivals show as lag.",
            ),
            click.option(
                "--workers",
                "-w",
                type=int,
                default=None,
                help="Engine processes, each with its share of the load (default: the number of CPUs).",
            ),
            click.option(
                "--abort-on-trigger",
                type=float,
                default=None,
                metavar="SECONDS",
                help="Stop early when a rollback trigger holds this long.",
            ),
            click.option(
                "--connect-timeout",
                type=float,
                default=10.0,
                show_default=True,
                help="Seconds for the TCP connect and for response headers.",
            ),
            click.option(
                "--idle-timeout",
                type=float,
                default=60.0,
                show_default=True,
                help="Seconds an open stream may stay silent (idle_timeout outcome).",
            ),
            click.option(
                "--timeout",
                "session_timeout",
                type=float,
                default=330.0,
                show_default=True,
                help="Seconds for a whole session, all requests included (timeout outcome).",
            ),
            click.option(
                "--grace",
                type=float,
                default=30.0,
                show_default=True,
                help="On stop (duration over, Ctrl-C): seconds in-flight sessions may finish.",
            ),
            click.option(
                "--connections",
                type=int,
                default=0,
                show_default=True,
                help="Cap on open connections (0: unlimited; one stream holds one).",
            ),
            click.option(
                "--max-line",
                type=int,
                default=1 << 20,
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
        ],
    )


def flow_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """What each session sends."""
    return _apply(
        f,
        [
            click.option("--app", default="vana", show_default=True, help="ADK app name."),
            click.option(
                "--user-prefix",
                default="sseprobe",
                show_default=True,
                help="Prefix of the per-session user id (a uuid follows).",
            ),
            click.option(
                "--message",
                "messages",
                multiple=True,
                default=("test",),
                show_default=True,
                help="User message text (repeatable: one is picked per session).",
            ),
            click.option(
                "--session-create",
                type=click.Choice(SESSION_CREATE),
                default="adk",
                show_default=True,
                help="Canonical: create the session ADK-style (POST .../sessions/{id}), "
                "backend-style (POST .../sessions) or not at all.",
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
        ],
    )


# --- precedence: default < scenario < command line -----------------------------------------------

_SCENARIO_NAMES = {
    "duration_s": "duration",
    "think_s": "think",
    "grace_s": "grace",
    "abort_on_trigger_s": "abort_on_trigger",
}


def read_scenario(path: str | None) -> Scenario | None:
    if path is None:
        return None
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        raise UsageProblem(str(exc)) from None


def given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def resolve(ctx: click.Context, params: dict[str, Any], scenario: Scenario | None) -> dict[str, Any]:
    """Options with the scenario's load values laid under the flags given on the command line."""
    out = dict(params)
    if scenario is not None:
        for key, value in scenario.load.items():
            name = _SCENARIO_NAMES.get(key, key)
            if not given(ctx, name):
                out[name] = value
    return out


# --- value objects ---------------------------------------------------------------------------------


def _value_object(build: Callable[[], Any]) -> Any:
    try:
        return build()
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


def build_timeouts(o: dict[str, Any]) -> Timeouts:
    return _value_object(
        lambda: Timeouts(connect=o["connect_timeout"], idle=o["idle_timeout"], session=o["session_timeout"])
    )


def build_limits(o: dict[str, Any]) -> Limits:
    return _value_object(lambda: Limits(connections=o["connections"], max_line=o["max_line"], max_event=o["max_line"]))


def build_load(o: dict[str, Any], phases: tuple[Phase, ...] = ()) -> Load:
    """Closed model unless a rate or phases are given; a rate needs an end (duration or sessions)."""
    sessions, duration, rate = o["sessions"], o["duration"], o.get("rate")
    if rate is not None and phases:
        raise UsageProblem("--rate and scenario phases both given: use one")
    schedule = None
    if phases:
        schedule = _value_object(lambda: Schedule(phases, bool(o.get("poisson")), o.get("seed") or 0))
    elif rate is not None:
        if not rate > 0:
            raise UsageProblem("--rate must be > 0 sessions per second")
        if duration is None and sessions is None:
            raise UsageProblem("--rate needs --duration or --sessions to know when to stop")
        span = duration if duration is not None else sessions / rate
        schedule = _value_object(
            lambda: Schedule((Phase(span, rate, rate, "constant"),), bool(o.get("poisson")), o.get("seed") or 0)
        )
    elif sessions is None and duration is None:
        sessions = 100
    return _value_object(
        lambda: Load(
            sessions=sessions,
            duration=duration,
            concurrency=o["concurrency"],
            think=o["think"],
            schedule=schedule,
            max_in_flight=o["max_in_flight"],
            grace=o["grace"],
        )
    )


def read_policy(path: str | None) -> Policy:
    if path is None:
        return DEFAULT_POLICY
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise UsageProblem(str(exc)) from None


def build_run_options(o: dict[str, Any], policy: Policy) -> RunOptions:
    workers = o.get("workers") or default_workers()
    if workers < 1:
        raise UsageProblem("--workers must be >= 1")
    abort = o.get("abort_on_trigger")
    if abort is not None and not abort > 0:
        raise UsageProblem("--abort-on-trigger must be > 0 seconds")
    progress = sys.stderr if (sys.stderr.isatty() and not o.get("as_json")) else None
    return RunOptions(workers=workers, progress=progress, abort_on_trigger=abort, policy=policy)


def build_flow(flow: str, url: str | None, what: str = "--url", **kw: Any) -> FlowOptions:
    if not url:
        raise UsageProblem(f"{what} is required (on the command line or in the scenario)")
    return _value_object(lambda: FlowOptions(flow=flow, url=parse_url(url, what), **kw))


def load_config(o: dict[str, Any], load: Load, timeouts: Timeouts, workers: int) -> dict[str, Any]:
    """The load part of the results document's config (no secrets live here)."""
    schedule = load.schedule
    return {
        "sessions": load.sessions,
        "duration": load.duration,
        "concurrency": load.concurrency,
        "think": load.think,
        "grace": load.grace,
        "workers": useful_workers(load, workers),  # the processes that ran
        "scenario": o.get("scenario"),
        "model": "open" if schedule else "closed",
        "phases": [
            {"name": p.name, "duration_s": p.duration, "rate": [p.start_rate, p.end_rate]} for p in schedule.phases
        ]
        if schedule
        else [],
        "poisson": bool(schedule and schedule.poisson),
        "timeouts": {"connect": timeouts.connect, "idle": timeouts.idle, "session": timeouts.session},
    }


_FLOW_KEYS = (
    "app",
    "user_prefix",
    "messages",
    "session_create",
    "headers",
    "bearer_env",
    "bearer_file",
    "method",
    "body",
    "complete_on",
)


def flow_from(
    ctx: click.Context,
    params: dict[str, Any],
    scenario_values: dict[str, Any],
    flow: str,
    url: str | None,
    what: str = "--url",
) -> FlowOptions:
    """One cohort's FlowOptions: a scenario cohort's values under the flags given on the command line."""
    v = dict(scenario_values)
    if "message" in v:
        v["messages"] = (v.pop("message"),)
    for key in _FLOW_KEYS:
        if key in params and (given(ctx, key) or key not in v):
            v[key] = params[key]
    headers = parse_headers(v.pop("headers", ()) or (), v.pop("bearer_env", None), v.pop("bearer_file", None))
    body = v.pop("body", None)
    if isinstance(body, str):
        body = body.encode()
    v.pop("flow", None)
    v.pop("url", None)
    method = str(v.pop("method", "GET")).upper()
    return build_flow(flow, url or scenario_values.get("url"), what, headers=headers, body=body, method=method, **v)
