"""``sseprobe check URL``: the checklist's pre-deployment validation, one line per check."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from .._redact import redact_url
from ..ops.check import run_checks
from ._common import (
    EXIT_CRITICAL,
    EXIT_OK,
    EXIT_UNKNOWN,
    EXIT_WARNING,
    build_flow,
    build_tls,
    flow_options,
    parse_headers,
)

__all__ = ["check_cmd"]

_FAILURES = ("WARN", "FAIL", "UNKNOWN")  # the levels that move the exit code off 0
_COLORS = {"OK": "green", "INFO": "cyan", "WARN": "yellow", "FAIL": "red", "UNKNOWN": "magenta"}


@click.command("check")
@click.argument("urls", nargs=-1, required=True, metavar="URL...")
@click.option(
    "--flows",
    default="canonical,legacy",
    show_default=True,
    help="Comma-separated flows to run one end-to-end session of.",
)
@click.option(
    "--timeout", type=float, default=10.0, show_default=True, help="Seconds each check (and each session) may take."
)
@click.option(
    "--optional-dependency",
    "optional",
    multiple=True,
    metavar="NAME",
    help="A /health dependency allowed to be false (repeatable), e.g. cloud_logging.",
)
@flow_options
def check_cmd(
    urls: tuple[str, ...],
    flows: str,
    timeout: float,
    optional: tuple[str, ...],
    app: str,
    user_prefix: str,
    messages: tuple[str, ...],
    session_create: str,
    legacy_stream: str,
    headers: tuple[str, ...],
    bearer_env: str | None,
    bearer_file: str | None,
    **tls_flags: Any,
) -> int:
    """Pre-deploy validation of each URL: /health answers 'healthy' with every dependency true, the canonical
    flag as far as it shows from outside, and one end-to-end session per flow.

    /health: each differing field is named, values that are not true/false shown. The flag: OFF is a
    501; ON a stream ending with the backend's event: done; else not-visible, with why. The session
    must finish within --timeout with events flowing.

    Exit 0 all OK, 1 a warning, 2 a check failed, 3 the service could not be reached.
    """
    wanted = tuple(f.strip() for f in flows.split(",") if f.strip())
    hdrs = parse_headers(headers, bearer_env, bearer_file)
    tls = build_tls(**tls_flags)
    codes = []
    for url in urls:
        opts = build_flow(
            wanted[0] if wanted else "canonical",
            url,
            app=app,
            user_prefix=user_prefix,
            messages=messages,
            session_create=session_create,
            legacy_stream=legacy_stream,
            headers=hdrs,
            tls=tls,
        )
        for flow in wanted:
            build_flow(flow, url)  # validates each flow name
        click.echo(f"check {redact_url(url)}")
        results = asyncio.run(run_checks(opts, wanted, timeout, frozenset(optional)))
        for r in results:
            click.echo(f"  {click.style(f'{r.level:<7}', fg=_COLORS[r.level])} {r.name:<20} {r.detail}")
        for r in results:  # stdout keeps the whole report; what went wrong is said on stderr too
            if r.level in _FAILURES:
                click.echo(f"sseprobe check: {r.level} {redact_url(url)} {r.name}: {r.detail}", err=True)
        levels = {r.level for r in results}
        codes.append(
            EXIT_CRITICAL
            if "FAIL" in levels
            else EXIT_UNKNOWN
            if "UNKNOWN" in levels
            else EXIT_WARNING
            if "WARN" in levels
            else EXIT_OK
        )
    # a failure anywhere outranks "could not tell" elsewhere
    return EXIT_CRITICAL if EXIT_CRITICAL in codes else max(codes)
