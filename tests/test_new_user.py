"""What a new user stumbled on (issue 24, items 19-25): each wording or meaning, checked where it shows."""

from __future__ import annotations

import socket

import pytest

from sseprobe.report.summary import render_run
from sseprobe.verdict.stats import CohortStats

from .conftest import in_process


def test_baseline_triggers_are_noted_not_rollback(capfd: pytest.CaptureFixture[str]) -> None:
    """#24.21: a trigger on the baseline cohort is the reference's, not a rollback of the candidate."""
    cohorts = {"legacy": CohortStats(flow="legacy", sessions=3), "canonical": CohortStats(flow="canonical", sessions=3)}
    text = render_run(cohorts, [{"cohort": "baseline", "reason": "legacy: completion_rate 50 %"}], 1.0, False)
    assert "ROLLBACK TRIGGERS FIRED" not in text and "BASELINE (noted" in text and "completion_rate 50 %" in text
    text = render_run(cohorts, [{"cohort": "candidate", "reason": "canonical: completion_rate 50 %"}], 1.0, False)
    assert "ROLLBACK TRIGGERS FIRED" in text and "BASELINE" not in text


def test_vana_real_says_its_model_limiter(capfd: pytest.CaptureFixture[str]) -> None:
    """#24.21: the limiter that makes a legacy cohort queue is said when the target starts."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = in_process(capfd, "target", "--profile", "vana-real", "--port", port)
    assert code == 3 and "cannot listen" in err
    assert "legacy model limiter admits 10 runs per 60 s" in err


def test_a_cohort_named_as_its_flow_is_named_once() -> None:
    """#24.25: no "canonical (canonical)"."""
    text = render_run({"canonical": CohortStats(flow="canonical", url="http://x")}, [], 1.0, False)
    assert "canonical (canonical)" not in text and "canonical http://x" in text
    text = render_run({"canary": CohortStats(flow="canonical", url="http://x")}, [], 1.0, False)
    assert "canary (canonical) http://x" in text


def test_rollout_5pct_names_its_poisson_arrivals_and_runs_long_enough() -> None:
    """#24.22: the progress names the phase "poisson" (the scenario sets it), and the step runs 20 min."""
    from sseprobe import plan_from

    plan = plan_from(
        "scenarios/rollout-5pct.toml", {"canonical_url": "http://127.0.0.1:9", "legacy_url": "http://127.0.0.1:9"}
    )
    schedule = plan.load.schedule
    assert schedule is not None and schedule.poisson
    assert [p.name for p in schedule.phases] == ["poisson"] and schedule.phases[0].duration == 1200


def test_smoke_is_a_check_that_can_pass() -> None:
    """#24.22: smoke is run per flow (a check that passes when no trigger fires), not a comparison."""
    from sseprobe import plan_from

    plan = plan_from("scenarios/smoke.toml", {"url": "http://127.0.0.1:9", "flow": "canonical"}, "run")
    assert [c.name for c in plan.cohorts] == ["canonical"] and plan.load.sessions == 30
    with open("scenarios/smoke.toml") as f:
        assert "sseprobe run --scenario scenarios/smoke.toml --flow canonical" in f.read()
