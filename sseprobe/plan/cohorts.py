"""The cohorts of a plan: which flow each one runs, with which options, and what of them the results
document may say (never a secret)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import NotRequired, TypedDict

from .._config import FlowOptions
from .._errors import UsageProblem
from .._redact import redact_url
from ..load.engine import CohortSpec
from ..load.pacer import Phase
from ..verdict.schema import JSONObject, TlsConfigDoc
from .options import Options
from .resolve import flow_from, public_headers, read_small_text, tls_config
from .scenario import Scenario

__all__ = ["compare_cohorts", "run_cohort", "scenario_cohort", "scaled", "parse_split", "flow_config"]

MAX_BODY_FILE = 16 << 20  # a request body for the generic flow


def compare_cohorts(
    params: Options,
    given: Collection[str],
    scenario: Scenario | None,
    split: tuple[float, float],
    notes: list[str],
) -> tuple[CohortSpec, ...]:
    sc = {c.name: c for c in scenario.cohorts} if scenario else {}
    specs = []
    for name, url_opt, share in (("canonical", "canonical_url", split[0]), ("legacy", "legacy_url", split[1])):
        c = sc.get(name)
        values = c.values if c else {}
        weight = share if params.split is not None or c is None else c.weight
        flow = values.get("flow", name)
        opts = flow_from(params, given, values, flow, getattr(params, url_opt), f"--{name}", notes)
        specs.append(CohortSpec(name, opts, weight))
    return tuple(specs)


def run_cohort(params: Options, given: Collection[str], scenario: Scenario | None, notes: list[str]) -> CohortSpec:
    flow, sc_values = scenario_cohort(scenario, params.flow)
    if flow is None:
        raise UsageProblem("--flow is required (canonical, legacy or generic)")
    if params.body_file is not None:
        try:
            params = replace(params, body=read_small_text(params.body_file, MAX_BODY_FILE, "--body-file"))
        except OSError as exc:
            raise UsageProblem(f"--body-file: cannot read {params.body_file}: {exc.strerror or exc}") from None
    return CohortSpec(flow, flow_from(params, given, sc_values, flow, params.url, notes=notes))


def scenario_cohort(scenario: Scenario | None, flow: str | None) -> tuple[str | None, JSONObject]:
    if scenario is None or not scenario.cohorts:
        return flow, {}
    for c in scenario.cohorts:
        if flow is None or c.values.get("flow") == flow or c.name == flow:
            return c.values.get("flow", flow), c.values
    return flow, {}


def scaled(phase: Phase, n: int) -> Phase:
    return replace(phase, start_rate=phase.start_rate * n, end_rate=phase.end_rate * n)


def parse_split(text: str | None) -> tuple[float, float]:
    """``5/95`` -> canonical 5, legacy 95 (shares of the sessions)."""
    if text is None:
        return 1.0, 1.0
    try:
        a, b = (float(x) for x in text.split("/"))
    except ValueError:
        raise UsageProblem(f"--split expects CANONICAL/LEGACY shares such as 5/95, got {text!r}") from None
    if a <= 0 or b <= 0:
        raise UsageProblem("--split shares must both be > 0")
    return a, b


class FlowConfigDoc(TypedDict):
    """``config.cohorts.NAME``: a cohort's configuration for the results document (no secrets)."""

    flow: str
    url: str  # redacted
    app: str
    messages: list[str]
    session_create: str
    headers: dict[str, str]  # secret values replaced
    legacy_stream: NotRequired[str]  # legacy
    method: NotRequired[str]  # generic
    complete_on: NotRequired[str | None]
    first_answer_event: NotRequired[str | None]
    first_answer_field: NotRequired[str | None]
    tls: NotRequired[TlsConfigDoc]  # https


def flow_config(opts: FlowOptions) -> FlowConfigDoc:
    """A cohort's configuration for the results document: no secrets."""
    cfg: FlowConfigDoc = {
        "flow": opts.flow,
        "url": redact_url(opts.url),
        "app": opts.app,
        "messages": list(opts.messages),
        "session_create": opts.session_create,
        "headers": public_headers(opts.headers),
    }
    if opts.flow == "legacy":
        cfg["legacy_stream"] = opts.legacy_stream
    if opts.flow == "generic":
        cfg["method"] = opts.method
        cfg["complete_on"] = opts.complete_on
        cfg["first_answer_event"] = opts.first_answer_event
        cfg["first_answer_field"] = opts.first_answer_field
    if (tls := tls_config(opts)) is not None:
        cfg["tls"] = tls
    return cfg
