"""``sseprobe target``: run the built-in reference service, with every knob as an option.

The knob options are generated from :class:`CohortKnobs` / :class:`TargetConfig`, so a new
knob in the target is a new option here with no second list to keep in step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from ..target import PROFILES, CohortKnobs, TargetConfig, serve
from ._common import EXIT_OK, UsageProblem

__all__ = ["target_cmd", "knob_options", "config_from_options"]

KNOB_HELP = {
    "ttfe_ms": "median delay before the first answer event (ms)",
    "ttfe_spread": "lognormal sigma of that delay (0: constant)",
    "events": "answer (content) events per session",
    "gap_ms": "delay between answer events (ms)",
    "p_5xx": "probability the start request answers 500",
    "p_429": "probability the start request answers 429",
    "p_stream_error": "probability of an in-stream error event",
    "p_premature_close": "probability the stream closes before completion",
    "p_stall": "probability the stream goes silent after the first event",
}
GLOBAL_HELP = {
    "canonical_enabled": "the ENABLE_ADK_CANONICAL_STREAM flag (off: /run_sse answers 501)",
    "adk_style": "behave like the ADK api_server: canonical streams close without 'event: done'",
    "keepalive_s": "legacy keepalive interval (s)",
    "stall_max_s": "how long a stalled stream is held open (s)",
    "rate_limit": "requests per 60 s per client before 429 (0: off)",
    "require_token": "require 'Authorization: Bearer TOKEN'",
    "health_ci_shape": "/health with 'environment' as a plain string (the CI=true shape)",
    "unhealthy": "/health reports degraded with a dependency down",
    "cloud_logging": "/health reports cloud_logging true (off: the development shape, which check warns about)",
    "seed": "random seed: the same seed gives the same faults and delays",
    "profile": "default: the protocol as specified; vana-real: what the real backend does on the wire "
    "(ADK routes hide the flag, bookkeeping first events, masked legacy failures, model limiter)",
    "model_delay_ms": "(vana-real) the model's constant delay to the first answer text, both flows (ms; "
    "default: each cohort's ttfe_ms and ttfe_spread)",
    "model_fail_rate": "(vana-real) probability the model fails (legacy masks it, canonical sends an error)",
    "legacy_model_limit": "(vana-real) legacy runs the model limiter admits per window (0: off)",
    "legacy_model_window_s": "(vana-real) the model limiter's window (s)",
    "legacy_model_wait_s": "(vana-real) how long a run beyond the limit waits before 'Rate limiter timeout' (s)",
}
_TYPES: dict[str, click.ParamType[Any] | type] = {"profile": click.Choice(PROFILES), "model_delay_ms": float}
COHORTS = ("canonical", "legacy")


def _option(name: str, default: Any, help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    flag = "--" + name.replace("_", "-")
    if isinstance(default, bool):
        return click.option(
            f"{flag}/--no-{flag[2:]}",
            name,
            default=default,
            show_default=True,
            help=help_text[0].upper() + help_text[1:] + ".",
        )
    kind = _TYPES.get(name, type(default) if default is not None else str)
    return click.option(
        flag, name, type=kind, default=default, show_default=True, help=help_text[0].upper() + help_text[1:] + "."
    )


def knob_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """One option per knob per cohort (``--canonical-ttfe-ms``), plus the global ones."""
    knobs = CohortKnobs()
    for field in reversed(dataclasses.fields(TargetConfig)):
        if field.name in GLOBAL_HELP:
            default = field.default if field.default is not dataclasses.MISSING else None
            f = _option(field.name, default, GLOBAL_HELP[field.name])(f)
    for cohort in reversed(COHORTS):
        for field in reversed(dataclasses.fields(CohortKnobs)):
            f = _option(
                f"{cohort}_{field.name}",
                getattr(knobs, field.name),
                f"{cohort}: {KNOB_HELP.get(field.name, field.name)}",
            )(f)
    return f


def config_from_options(values: dict[str, Any]) -> TargetConfig:
    try:
        per_cohort: dict[str, Any] = {
            cohort: CohortKnobs(**{f.name: values.pop(f"{cohort}_{f.name}") for f in dataclasses.fields(CohortKnobs)})
            for cohort in COHORTS
        }
        return TargetConfig(**per_cohort, **values)
    except (TypeError, ValueError) as exc:
        raise UsageProblem(f"target: {exc}") from None


@click.command("target")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to bind (0: any free)."
)
@click.option(
    "--access-log",
    type=click.Path(dir_okay=False),
    default=None,
    help="Append one JSON line per stream to this file, in Cloud Logging's shape (compare --from-log FILE "
    "--log-map cloud-logging reads it; docs/real-traffic.md).",
)
@knob_options
def target_cmd(host: str, port: int, access_log: str | None, **knobs: Any) -> int:
    """Run the built-in reference service (PROTOCOLS.md) until Ctrl-C.

    Emulates /health, the canonical POST /run_sse (with session creation, 501 when the flag
    is off, 404 for an unknown session) and the legacy POST/GET .../run streams, with
    latency and fault knobs per cohort. --profile vana-real adds what the real backend does
    beyond its specification. Runtime changes: PATCH /_target/config.
    """
    config = config_from_options(knobs)
    if access_log and config.profile != "default":
        raise UsageProblem("--access-log: the default profile only (vana-real's streams are not logged)")
    if access_log:
        try:
            open(access_log, "ab").close()  # noqa: SIM115 - only whether it can be written, before listening
        except OSError as exc:
            raise UsageProblem(f"--access-log {access_log}: cannot write there: {exc.strerror or exc}") from None
    if config.profile == "vana-real" and config.legacy_model_limit:  # the limiter shapes every legacy timing
        click.echo(
            f"sseprobe target: vana-real: the legacy model limiter admits {config.legacy_model_limit} runs per "
            f"{config.legacy_model_window_s:g} s; a legacy run beyond waits up to {config.legacy_model_wait_s:g} s "
            "(a compare then spends its end 'finishing' those), then fails 'Rate limiter timeout'",
            err=True,
        )
    try:
        serve(
            config,
            host=host,
            port=port,
            ready=lambda url: click.echo(f"sseprobe target listening on {url}", err=True),
            access_log=access_log,
        )
    except OSError as exc:
        raise UsageProblem(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return EXIT_OK
