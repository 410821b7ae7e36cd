"""Shared pieces of the commands: exit codes, option groups, and input that becomes value objects.

The engine never sees click: options are turned into :mod:`._config` objects here, and bad input
becomes a :class:`UsageProblem` (one line, exit 3).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import click

from ._config import FLOWS, SESSION_CREATE, FlowOptions, Limits, Timeouts
from ._engine import CohortSpec, Load
from ._redact import SECRET_HEADERS, redact_url

__all__ = [
    "EXIT_OK", "EXIT_WARNING", "EXIT_CRITICAL", "EXIT_UNKNOWN", "UsageProblem", "parse_url",
    "parse_headers", "public_headers", "load_options", "flow_options", "build_timeouts", "build_load",
    "build_limits", "build_flow",
]

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3


class UsageProblem(click.ClickException):
    """Bad input: one line, exit 3 (click's own usage errors are remapped to 3 as well)."""

    exit_code = EXIT_UNKNOWN


# --- option parsing helpers ------------------------------------------------------------------

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


def parse_headers(values: tuple[str, ...], bearer_env: str | None,
                  bearer_file: str | None) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for raw in values:
        name, sep, val = raw.partition(":")
        if not sep or not name.strip():
            raise UsageProblem(f"--header expects 'Name: value', got {raw.split(':')[0]!r}...")
        headers.append((name.strip(), val.strip()))
    token = None
    if bearer_env:
        token = os.environ.get(bearer_env)
        if not token:
            raise UsageProblem(f"--bearer-env: environment variable {bearer_env} is not set or empty")
    if bearer_file:
        try:
            token = Path(bearer_file).read_text().strip()
        except OSError as exc:
            raise UsageProblem(f"--bearer-file: cannot read {bearer_file}: {exc.strerror}") from None
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    return tuple(headers)


def public_headers(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Header names for the results document; secret values replaced."""
    return {k: ("REDACTED" if k.lower() in SECRET_HEADERS else v) for k, v in headers}


def load_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by run and compare: how much load, and the timeouts and limits."""
    opts = [
        click.option("--sessions", "-n", type=int, default=None,
                     help="Sessions to run in all (default 100 when no --duration)."),
        click.option("--duration", "-d", type=float, default=None,
                     help="Stop starting sessions after this many seconds."),
        click.option("--concurrency", "-c", type=int, default=10, show_default=True,
                     help="Closed model: sessions in flight at once."),
        click.option("--connect-timeout", type=float, default=10.0, show_default=True,
                     help="Seconds for the TCP connect and for response headers."),
        click.option("--idle-timeout", type=float, default=60.0, show_default=True,
                     help="Seconds an open stream may stay silent (idle_timeout outcome)."),
        click.option("--timeout", "session_timeout", type=float, default=330.0, show_default=True,
                     help="Seconds for a whole session, all requests included (timeout outcome)."),
        click.option("--grace", type=float, default=30.0, show_default=True,
                     help="On stop (duration over, Ctrl-C): seconds in-flight sessions may finish."),
        click.option("--connections", type=int, default=0, show_default=True,
                     help="Cap on open connections (0: unlimited; one stream holds one)."),
        click.option("--max-line", type=int, default=1 << 20, show_default=True,
                     help="Longest SSE line or event in bytes before protocol_error."),
        click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
                     help="Results document path (default: results/<kind>-<time>.json)."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print the results document on stdout, and nothing else there."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def flow_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """What each session sends."""
    opts = [
        click.option("--app", default="vana", show_default=True, help="ADK app name."),
        click.option("--user-prefix", default="sseprobe", show_default=True,
                     help="Prefix of the per-session user id (a uuid follows)."),
        click.option("--message", default="test", show_default=True, help="The user message text."),
        click.option("--session-create", type=click.Choice(SESSION_CREATE), default="adk",
                     show_default=True,
                     help="Canonical: create the session ADK-style (POST .../sessions/{id}), "
                          "backend-style (POST .../sessions) or not at all."),
        click.option("--header", "-H", "headers", multiple=True, metavar="'NAME: VALUE'",
                     help="Extra request header (repeatable). Values never reach any output."),
        click.option("--bearer-env", metavar="VAR",
                     help="Send 'Authorization: Bearer' with the token in this environment variable."),
        click.option("--bearer-file", metavar="FILE", help="Same, with the token read from a file."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_timeouts(connect_timeout: float, idle_timeout: float, session_timeout: float) -> Timeouts:
    try:
        return Timeouts(connect=connect_timeout, idle=idle_timeout, session=session_timeout)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


def build_load(sessions: int | None, duration: float | None, concurrency: int, grace: float) -> Load:
    if sessions is None and duration is None:
        sessions = 100
    try:
        return Load(sessions=sessions, duration=duration, concurrency=concurrency, grace=grace)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


def build_limits(connections: int, max_line: int) -> Limits:
    try:
        return Limits(connections=connections, max_line=max_line, max_event=max_line)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


def build_flow(flow: str, url: str, **kw: Any) -> FlowOptions:
    try:
        return FlowOptions(flow=flow, url=parse_url(url), **kw)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
