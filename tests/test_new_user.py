"""What a new user stumbled on (issue 24, items 19-25): each wording or meaning, checked where it shows."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from sseprobe.report.summary import render_run
from sseprobe.verdict.policy import FiredTrigger
from sseprobe.verdict.stats import CohortStats

from .conftest import in_process


def test_baseline_triggers_are_noted_not_rollback(capfd: pytest.CaptureFixture[str]) -> None:
    """#24.21: a trigger on the baseline cohort is the reference's, not a rollback of the candidate."""
    cohorts = {"legacy": CohortStats(flow="legacy", sessions=3), "canonical": CohortStats(flow="canonical", sessions=3)}
    fired = FiredTrigger("completion_rate", "completion_rate", "<", 0.95, 0.5, "legacy: completion_rate 50 %")
    text = render_run(cohorts, [replace(fired, cohort="baseline")], 1.0, False)
    assert "ROLLBACK TRIGGERS FIRED" not in text and "BASELINE (noted" in text and "completion_rate 50 %" in text
    fired = replace(fired, cohort="candidate", reason="canonical: completion_rate 50 %")
    text = render_run(cohorts, [fired], 1.0, False)
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


def test_report_of_base_and_candidate_compares_them(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """#24.24: ``report base.json cand.json`` judges the candidate against the base, not only each alone."""
    from sseprobe.report.document import dumps
    from sseprobe.verdict.compare import judge
    from sseprobe.verdict.policy import DEFAULT_POLICY

    from .report_docs import results_doc

    base, cand = tmp_path / "base.json", tmp_path / "cand.json"
    base.write_bytes(dumps(results_doc(seed=1)))
    cand.write_bytes(dumps(results_doc(ttfe_ms=80.0, seed=2)))
    out = tmp_path / "r.html"
    code, stdout, _ = in_process(capfd, "report", str(base), str(cand), "--html", str(out))
    first = CohortStats.from_dict(results_doc(seed=1)["cohorts"]["canonical"])
    second = CohortStats.from_dict(results_doc(ttfe_ms=80.0, seed=2)["cohorts"]["canonical"])
    expected = judge(first, second, DEFAULT_POLICY).overall
    assert code == 0 and f"comparison: {cand} (canonical) against {base} (canonical): {expected}" in stdout
    html = out.read_text()
    assert "cand.json against base.json" in html and "baseline:canonical" in html and "candidate:canonical" in html


def test_a_red_monitor_report_says_which_part_is_red() -> None:
    """#24.24: a report titled RED above a GREEN comparison names the part that is RED."""
    from types import SimpleNamespace

    from sseprobe.ops.monitor import Part, monitor_title

    done = SimpleNamespace(overall="RED", parts=[Part("check", "RED", "x"), Part("canonical vs legacy", "GREEN", "")])
    assert monitor_title(done) == "sseprobe monitor RED (check RED, canonical vs legacy GREEN)"  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["", "run", "compare", "check", "monitor", "report", "calibrate", "target"])
def test_help_speaks_plainly(capfd: pytest.CaptureFixture[str], command: str) -> None:
    """#24.25: help says time to first *answer* (TTFE), no RST double backticks, and compare's -n
    agrees with "load options count per cohort"."""
    code, out, _ = in_process(capfd, *([command] if command else []), "--help")
    assert code == 0 and "``" not in out
    assert "first event (TTFE)" not in out
    if command == "compare":
        assert "Load options count per cohort" in out and "Sessions to run in all" not in out
        assert "(compare: per cohort on average" in " ".join(out.split())


def test_each_flow_times_its_first_answer_from_the_request_that_carries_the_message(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """#24.23 (docs/target.md): both flows' TTFE start at the message and the target holds the first
    answer ``ttfe_ms`` from it. A lower bound only: what a busy machine adds on top is measured (and
    documented), not judged, here."""
    from .conftest import target_process

    out = tmp_path / "aa.json"
    knobs = ["--canonical-ttfe-ms", "300", "--legacy-ttfe-ms", "300", "--canonical-ttfe-spread", "0"]
    with target_process(*knobs, "--legacy-ttfe-spread", "0") as url:
        _, _, err = in_process(
            capfd, "compare", "--canonical", url, "--legacy", url, "-n", "6", "-c", "2", "-w", "1", "-o", str(out)
        )
    doc = json.loads(out.read_text())
    for name in ("canonical", "legacy"):
        c = doc["cohorts"][name]
        assert c["outcomes"] == {"ok": 6}, (name, c["outcomes"], err)
        assert c["ttfe_ms"]["p50"] >= 300  # never before the target's delay, counted from the message


def test_insecure_is_warned_once_and_only_for_https() -> None:
    """#24.18: two https cohorts share one warning; an http:// URL, which TLS never touches, none."""
    from sseprobe import plan_from

    def warnings(url: str) -> int:
        plan = plan_from(None, {"canonical_url": url, "legacy_url": url, "insecure": True}, "compare")
        return sum("--insecure" in note for note in plan.notes)

    assert warnings("https://127.0.0.1:9") == 1
    assert warnings("http://127.0.0.1:9") == 0
