"""``sseprobe run``: one cohort, one flow, one results document. Exit 2 when a rollback trigger fires."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._cli_common import (
    EXIT_CRITICAL,
    EXIT_OK,
    EXIT_UNKNOWN,
    UsageProblem,
    build_flow,
    build_limits,
    build_load,
    build_timeouts,
    flow_options,
    load_options,
    parse_headers,
    public_headers,
)
from ._config import FLOWS, FlowOptions
from ._engine import CohortSpec
from ._outcomes import Outcome
from ._policy import DEFAULT_POLICY, check_triggers
from ._redact import redact_url
from ._results import build_document, default_out_path, dumps, write_atomic
from ._runner import Measured, measure
from ._stats import CohortStats
from ._summary import render_run

__all__ = ["run_cmd", "flow_config", "emit"]


def flow_config(opts: FlowOptions) -> dict[str, Any]:
    """A cohort's configuration for the results document: no secrets."""
    cfg: dict[str, Any] = {
        "flow": opts.flow, "url": redact_url(opts.url), "app": opts.app, "message": opts.message,
        "session_create": opts.session_create, "headers": public_headers(opts.headers),
    }
    if opts.flow == "generic":
        cfg.update(method=opts.method, complete_on=opts.complete_on)
    return cfg


def unreachable(stats: CohortStats) -> str | None:
    """Why nothing could be measured, when every attempt failed to connect at all."""
    if stats.attempts and stats.outcomes.get(Outcome.CONNECT_ERROR, 0) == stats.attempts:
        return f"cannot reach {stats.url}: every session failed to connect"
    return None


def emit(doc: dict[str, Any], out: str | None, kind: str, as_json: bool, text: str) -> Path:
    """Write the document atomically; print it (``--json``) or the human summary."""
    path = write_atomic(out or default_out_path(kind), dumps(doc))
    if as_json:
        click.echo(dumps(doc).decode(), nl=False)
    else:
        click.echo(text)
        click.echo(f"\nresults: {path}")
    return path


@click.command("run")
@click.option("--flow", type=click.Choice(FLOWS), required=True,
              help="canonical: POST /run_sse; legacy: POST then GET .../run; generic: any SSE URL.")
@click.option("--url", required=True,
              help="Base URL of the service (canonical, legacy) or the full SSE URL (generic).")
@flow_options
@click.option("--method", default="GET", show_default=True, help="Generic flow: HTTP method.")
@click.option("--body", default=None, help="Generic flow: request body (text).")
@click.option("--body-file", type=click.Path(dir_okay=False), default=None,
              help="Generic flow: request body read from a file.")
@click.option("--complete-on", default=None, metavar="EVENT",
              help="Generic flow: named event that completes a session "
                   "(default: a clean close after at least one event).")
@load_options
def run_cmd(flow: str, url: str, app: str, user_prefix: str, message: str, session_create: str,
            headers: tuple[str, ...], bearer_env: str | None, bearer_file: str | None, method: str,
            body: str | None, body_file: str | None, complete_on: str | None, sessions: int | None,
            duration: float | None, concurrency: int, connect_timeout: float, idle_timeout: float,
            session_timeout: float, grace: float, connections: int, max_line: int, out: str | None,
            as_json: bool) -> int:
    """Measure one flow against one URL.

    Prints connect success, completion, TTFE and completion percentiles, 5xx and timeout
    rates and any rollback trigger; writes the results document. Exit 2 when a rollback
    trigger fires, 3 when nothing could be measured, else 0.
    """
    raw_body: bytes | None = body.encode() if body is not None else None
    if body_file is not None:
        try:
            raw_body = Path(body_file).read_bytes()
        except OSError as exc:
            raise UsageProblem(f"--body-file: cannot read {body_file}: {exc.strerror}") from None
    opts = build_flow(
        flow, url, app=app, user_prefix=user_prefix, message=message,
        session_create=session_create, headers=parse_headers(headers, bearer_env, bearer_file),
        method=method.upper(), body=raw_body, complete_on=complete_on,
    )
    load = build_load(sessions, duration, concurrency, grace)
    timeouts = build_timeouts(connect_timeout, idle_timeout, session_timeout)
    limits = build_limits(connections, max_line)
    measured: Measured = measure([CohortSpec(flow, opts)], load, timeouts, limits)
    stats = measured.cohorts[flow]
    triggers = check_triggers(stats, DEFAULT_POLICY)
    config = {
        "command": "run", "cohorts": {flow: flow_config(opts)},
        "load": {"sessions": load.sessions, "duration": load.duration,
                 "concurrency": load.concurrency, "grace": load.grace},
        "timeouts": {"connect": timeouts.connect, "idle": timeouts.idle, "session": timeouts.session},
    }
    info = measured.info
    doc = build_document(started=info.started, duration_s=info.duration_s, config=config,
                         cohorts=measured.cohorts, interrupted=info.interrupted,
                         extra={"triggers": triggers, "stop_reason": info.stop_reason})
    emit(doc, out, "run", as_json, render_run(measured.cohorts, triggers, info.duration_s,
                                              info.interrupted))
    problem = unreachable(stats)
    if problem:
        click.echo(f"sseprobe: error: {problem}", err=True)
        return EXIT_UNKNOWN
    if triggers:
        return EXIT_CRITICAL
    return EXIT_UNKNOWN if info.interrupted or not stats.attempts else EXIT_OK
