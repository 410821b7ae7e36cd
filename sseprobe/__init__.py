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
    from ._api import DEFAULTS, Result, RunPlan, compare, plan_from, run
    from ._compare import Verdict, decided, judge, judge_sequential
    from ._config import FlowOptions, Limits, Timeouts, TLSOptions
    from ._engine import CohortSpec, Load
    from ._outcomes import Outcome
    from ._pacer import Phase, Schedule
    from ._plan import UsageProblem
    from ._policy import DEFAULT_POLICY, FiredTrigger, Policy, PolicyError, check_triggers, load_policy
    from ._record import SessionRecord
    from ._report_html import render_report, write_report
    from ._results import (
        ResultsError,
        build_document,
        cohort_from_document,
        dumps,
        read_document,
        read_documents,
        write_atomic,
    )
    from ._runner import Measured, RunOptions, measure
    from ._scenario import Scenario, ScenarioError, load_scenario
    from ._sequential import Looks, UntilDecided
    from ._session import FirstEvent, observe_first_events
    from ._spending import SequentialPlan
    from ._stats import CohortStats

__version__ = "0.1.0"

_LAZY = {
    # a plan and two calls
    "RunPlan": "._api",
    "Result": "._api",
    "plan_from": "._api",
    "run": "._api",
    "compare": "._api",
    "DEFAULTS": "._api",
    "UsageProblem": "._plan",
    # value objects
    "FlowOptions": "._config",
    "Timeouts": "._config",
    "Limits": "._config",
    "TLSOptions": "._config",
    "Load": "._engine",
    "CohortSpec": "._engine",
    "Phase": "._pacer",
    "Schedule": "._pacer",
    "Policy": "._policy",
    "DEFAULT_POLICY": "._policy",
    "PolicyError": "._policy",
    "load_policy": "._policy",
    "Scenario": "._scenario",
    "ScenarioError": "._scenario",
    "load_scenario": "._scenario",
    # measured and judged
    "Outcome": "._outcomes",
    "SessionRecord": "._record",
    "CohortStats": "._stats",
    "Verdict": "._compare",
    "judge": "._compare",
    "FiredTrigger": "._policy",
    "check_triggers": "._policy",
    # the sequential machinery `compare --until-decided` looks and decides with (pure)
    "judge_sequential": "._compare",
    "decided": "._compare",
    "SequentialPlan": "._spending",
    "Looks": "._sequential",
    "UntilDecided": "._sequential",
    # the results document and its reports
    "ResultsError": "._results",
    "build_document": "._results",
    "cohort_from_document": "._results",
    "dumps": "._results",
    "read_document": "._results",
    "read_documents": "._results",
    "write_atomic": "._results",
    "render_report": "._report_html",
    "write_report": "._report_html",
    # the engine, one level down
    "measure": "._runner",
    "Measured": "._runner",
    "RunOptions": "._runner",
    "FirstEvent": "._session",
    "observe_first_events": "._session",
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
