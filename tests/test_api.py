"""The Python API: a comparison in ten lines of public names, and the plan's precedence without click."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest

import sseprobe
from sseprobe.cli import cli
from tests.conftest import in_process, target_process


def test_a_comparison_in_ten_lines_of_public_names(tmp_path: Path) -> None:
    with target_process("--canonical-ttfe-ms", "200", "--legacy-ttfe-ms", "20", "--legacy-gap-ms", "5") as url:
        # -- the README's example, public names only --
        import sseprobe as sp

        plan = sp.plan_from(None, {"canonical_url": url, "legacy_url": url, "sessions": 60, "concurrency": 6,
                                   "workers": 1, "quiet": True, "out": str(tmp_path / "cmp.json")})  # fmt: skip
        result = sp.compare(plan)
        sp.write_atomic(plan.out, sp.dumps(result.document))
        saved = sp.read_document(plan.out)
        html = sp.render_report([(plan.out, saved)])
    # canonical's first answer is ten times later: judged worse, whatever the noise
    assert result.verdict is not None and result.verdict.overall in ("YELLOW", "RED")
    assert result.exit_code == {"YELLOW": 1, "RED": 2}[result.verdict.overall]
    assert saved["verdict"]["overall"] == result.verdict.overall
    assert set(saved["cohorts"]) == {"canonical", "legacy"} and result.cohorts["canonical"].attempts == 60
    assert "<html" in html.lower()


def test_a_run_and_the_first_event_observer(tmp_path: Path) -> None:
    seen: list[sseprobe.FirstEvent] = []
    stop = sseprobe.observe_first_events(seen.append)
    try:
        with target_process("--canonical-ttfe-ms", "5") as url:
            plan = sseprobe.plan_from(None, {"flow": "canonical", "url": url, "sessions": 5, "concurrency": 1,
                                             "workers": 1, "quiet": True, "out": str(tmp_path / "r.json")},
                                      "run")  # fmt: skip
            result = sseprobe.run(plan)
    finally:
        stop()
    assert result.exit_code == 0 and result.verdict is None and result.cohorts["canonical"].ok == 5
    assert len(seen) == 5 and all(s.events and s.ttfe_ms is not None for s in seen)


def test_precedence_default_scenario_override(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('[load]\nsessions = 40\nconcurrency = 4\n[cohorts.canonical]\nflow = "canonical"\n')
    base = {"canonical_url": "http://127.0.0.1:9", "legacy_url": "http://127.0.0.1:9", "out": str(tmp_path / "x.json")}
    from_scenario = sseprobe.plan_from(scenario, base)
    overridden = sseprobe.plan_from(scenario, {**base, "sessions": 10})
    default = sseprobe.plan_from(None, base)
    # load options count per cohort: two cohorts double them
    assert (from_scenario.load.sessions, from_scenario.load.concurrency) == (80, 8)
    assert (overridden.load.sessions, overridden.load.concurrency) == (20, 8)
    assert (default.load.sessions, default.load.concurrency) == (100, 20)  # 100 in all when none is given
    assert default.timeouts.session == sseprobe.DEFAULTS["session_timeout"]
    assert from_scenario.config["load"]["scenario"] == str(scenario) and default.config["load"]["scenario"] is None


def test_bad_input_is_a_usage_problem_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(sseprobe.UsageProblem, match="unknown option"):
        sseprobe.plan_from(None, {"canonical_url": "http://127.0.0.1:9", "sesions": 3})
    with pytest.raises(sseprobe.UsageProblem, match="--legacy is required"):
        sseprobe.plan_from(None, {"canonical_url": "http://127.0.0.1:9"})
    with pytest.raises(sseprobe.UsageProblem, match="--flow is required"):
        sseprobe.plan_from(None, {"url": "http://127.0.0.1:9"}, "run")


@pytest.mark.parametrize("command", ["run", "compare"])
def test_the_command_line_and_the_api_share_their_defaults(command: str) -> None:
    cmd = cli.get_command(click.Context(cli), command)
    assert cmd is not None
    with cmd.make_context(command, []) as ctx:  # what click hands the command, no flag given
        params = {name: value for name, value in ctx.params.items() if name in sseprobe.DEFAULTS}
    assert len(params) > 30
    for name, value in params.items():
        assert value == sseprobe.DEFAULTS[name], name


def test_demo_calls_the_library_and_leaves_no_process(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import multiprocessing

    out = tmp_path / "demo.json"
    priority_before = os.getpriority(os.PRIO_PROCESS, 0), _autogroup()
    code, stdout, err = in_process(capfd, "demo", "--slower", "50", "-n", "40", "-c", "20", "-o", str(out))
    assert (os.getpriority(os.PRIO_PROCESS, 0), _autogroup()) == priority_before  # its raised priority is put back
    doc = sseprobe.read_document(out)
    assert {n: c["sessions"] for n, c in doc["cohorts"].items()} == {"canonical": 40, "legacy": 40}, err
    demo = doc["config"]["demo"]  # what it announced is what the document records
    assert demo["max_sessions_per_cohort"] == 40 and demo["in_flight_per_cohort"] == 20 and demo["slower_pct"] == 50
    assert "up to 40 sessions per cohort" in err and "(20 in flight)" in err
    assert doc["config"]["load"]["model"] == "open" and doc["verdict"]["sequential"]["look_every"] == 40
    assert code == {"GREEN": 0, "YELLOW": 1, "RED": 2, "INCONCLUSIVE": 3}[doc["verdict"]["overall"]]
    assert "built-in target on http://127.0.0.1:" in err and f"results: {out}" in stdout
    assert not multiprocessing.active_children()  # the target process was stopped and reaped
    if _may_raise_priority():  # the demo ran ahead of other work, and says so
        assert demo["nice"] == -10
    else:
        assert demo["nice"] == priority_before[0]


def _may_raise_priority() -> bool:
    """CAP_SYS_NICE (bit 23) in this process's effective set: root in a container may lack it."""
    status = Path("/proc/self/status").read_text()
    caps = next((line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), "0")
    return bool(int(caps, 16) >> 23 & 1)


def _autogroup() -> str | None:
    """This session's scheduling group and its niceness ("/autogroup-97 nice 0"), None without autogroups."""
    try:
        return Path("/proc/self/autogroup").read_text().strip()
    except OSError:
        return None
