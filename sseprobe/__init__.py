"""sseprobe: SSE streaming health prober and load generator.

The Python API (the command line is built on the same calls)::

    import sseprobe

    plan = sseprobe.plan_from(None, {"canonical_url": url, "legacy_url": url, "sessions": 200, "quiet": True})
    result = sseprobe.compare(plan)          # measures both cohorts, interleaved, in one window
    print(result.verdict.overall)            # GREEN / YELLOW / RED / INCONCLUSIVE
    sseprobe.write_atomic(plan.out, sseprobe.dumps(result.document))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below load when first asked for (see __getattr__)
    from ._api import DEFAULTS, Result, RunPlan, compare, make_plan, plan_from, run
    from ._config import FlowOptions, Limits, Timeouts, TLSOptions
    from ._errors import SseprobeError, UsageProblem
    from ._outcomes import Outcome
    from ._record import SessionRecord
    from .load.engine import CohortSpec, Load
    from .load.pacer import Phase, Schedule
    from .load.runner import Measured, RunOptions, measure
    from .plan.options import Options
    from .plan.scenario import Scenario, ScenarioError, load_scenario
    from .report.document import (
        ResultsError,
        build_document,
        cohort_from_document,
        dumps,
        read_document,
        read_documents,
        write_atomic,
    )
    from .report.html import render_report, write_report
    from .verdict.compare import Verdict, decided, judge, judge_sequential
    from .verdict.policy import DEFAULT_POLICY, FiredTrigger, Policy, PolicyError, check_triggers, load_policy
    from .verdict.sequential import Looks, UntilDecided
    from .verdict.spending import SequentialPlan
    from .verdict.stats import CohortStats
    from .wire.session import FirstEvent, observe_first_events

__version__ = "0.1.0"

_LAZY = {
    # a plan and two calls
    "RunPlan": "._api",
    "Result": "._api",
    "plan_from": "._api",
    "make_plan": "._api",
    "Options": ".plan.options",
    "run": "._api",
    "compare": "._api",
    "DEFAULTS": "._api",
    "SseprobeError": "._errors",
    "UsageProblem": "._errors",
    # value objects
    "FlowOptions": "._config",
    "Timeouts": "._config",
    "Limits": "._config",
    "TLSOptions": "._config",
    "Load": ".load.engine",
    "CohortSpec": ".load.engine",
    "Phase": ".load.pacer",
    "Schedule": ".load.pacer",
    "Policy": ".verdict.policy",
    "DEFAULT_POLICY": ".verdict.policy",
    "PolicyError": ".verdict.policy",
    "load_policy": ".verdict.policy",
    "Scenario": ".plan.scenario",
    "ScenarioError": ".plan.scenario",
    "load_scenario": ".plan.scenario",
    # measured and judged
    "Outcome": "._outcomes",
    "SessionRecord": "._record",
    "CohortStats": ".verdict.stats",
    "Verdict": ".verdict.compare",
    "judge": ".verdict.compare",
    "FiredTrigger": ".verdict.policy",
    "check_triggers": ".verdict.policy",
    # the sequential machinery `compare --until-decided` looks and decides with (pure)
    "judge_sequential": ".verdict.compare",
    "decided": ".verdict.compare",
    "SequentialPlan": ".verdict.spending",
    "Looks": ".verdict.sequential",
    "UntilDecided": ".verdict.sequential",
    # the results document and its reports
    "ResultsError": ".report.document",
    "build_document": ".report.document",
    "cohort_from_document": ".report.document",
    "dumps": ".report.document",
    "read_document": ".report.document",
    "read_documents": ".report.document",
    "write_atomic": ".report.document",
    "render_report": ".report.html",
    "write_report": ".report.html",
    # the engine, one level down
    "measure": ".load.runner",
    "Measured": ".load.runner",
    "RunOptions": ".load.runner",
    "FirstEvent": ".wire.session",
    "observe_first_events": ".wire.session",
}

__all__ = [
    "CohortSpec",
    "CohortStats",
    "DEFAULTS",
    "DEFAULT_POLICY",
    "FiredTrigger",
    "FirstEvent",
    "FlowOptions",
    "Limits",
    "Load",
    "Looks",
    "Measured",
    "Options",
    "Outcome",
    "Phase",
    "Policy",
    "PolicyError",
    "Result",
    "ResultsError",
    "RunOptions",
    "RunPlan",
    "Scenario",
    "ScenarioError",
    "Schedule",
    "SequentialPlan",
    "SessionRecord",
    "SseprobeError",
    "TLSOptions",
    "Timeouts",
    "UntilDecided",
    "UsageProblem",
    "Verdict",
    "build_document",
    "check_triggers",
    "cohort_from_document",
    "compare",
    "decided",
    "dumps",
    "judge",
    "judge_sequential",
    "load_policy",
    "load_scenario",
    "measure",
    "make_plan",
    "observe_first_events",
    "plan_from",
    "read_document",
    "read_documents",
    "render_report",
    "run",
    "write_atomic",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """Imported when first asked for: the command line starts (and can take a Ctrl-C) before numpy loads."""
    if name not in _LAZY:
        raise AttributeError(name)
    from importlib import import_module

    return getattr(import_module(_LAZY[name], __name__), name)


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
