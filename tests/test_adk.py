"""sseprobe against a real Google ADK ``adk api_server`` (the scripted agent in testsupport/adk_agents).

Every other test talks to servers written here; these check that what sseprobe sees of the real
canonical endpoint (session create, ``/run_sse``, ADK's own in-stream error) is right, and that its
TTFE agrees with a raw-socket client's on the same server (a difference, with a generous margin).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import in_process
from testsupport.adk_server import APP, raw_session

FAST = "delay=20 events=3 gap=5"


def _run(
    capfd: pytest.CaptureFixture[str], url: str, out: Path, message: str, *load: str
) -> tuple[int, dict[str, Any]]:
    """``sseprobe run --flow canonical`` with ADK-style session creation; (exit code, cohort)."""
    proc = in_process(
        capfd,
        "run",
        "--flow",
        "canonical",
        "--url",
        url,
        "--app",
        APP,
        "--session-create",
        "adk",
        "--message",
        message,
        "--json",
        "-o",
        str(out),
        *load,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    return proc.returncode, doc["cohorts"]["canonical"]


def _peak(url: str) -> int:
    """The most runs the server had in flight at once since the last look (the agent counts)."""
    text = raw_session(url, "peak").last_text
    assert text.startswith("peak="), text
    return int(text.removeprefix("peak="))


def test_canonical_sessions_are_ok_with_every_event(
    adk_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code, cohort = _run(capfd, adk_server, tmp_path / "r.json", FAST, "-n", "6", "-c", "2", "-w", "1")
    assert code == 0
    assert cohort["outcomes"] == {"ok": 6}
    assert cohort["events"] == 6 * 3
    assert cohort["http_status"] == {"200": 6}


def test_agent_failure_is_a_stream_error(adk_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, cohort = _run(capfd, adk_server, tmp_path / "r.json", "fail delay=10", "-n", "3", "-c", "1", "-w", "1")
    assert cohort["outcomes"] == {"stream_error": 3}  # ADK's {"error": "RuntimeError: ..."} in a 200 stream
    assert cohort["http_status"] == {"200": 3}
    assert code in (0, 2)  # never 3 (it ran) nor 1; 2 where a run judges its completion rate


def test_one_in_flight_means_one_at_the_server_whatever_the_workers(
    adk_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _peak(adk_server)  # reset
    _run(capfd, adk_server, tmp_path / "two.json", FAST, "-n", "6", "-c", "2", "-w", "1")
    assert _peak(adk_server) == 2  # the agent sees concurrent runs when there are some
    code, cohort = _run(capfd, adk_server, tmp_path / "one.json", FAST, "-n", "6", "-c", "1", "-w", "2")
    assert (code, cohort["outcomes"]) == (0, {"ok": 6})
    assert _peak(adk_server) == 1
    assert json.loads((tmp_path / "one.json").read_text())["config"]["load"]["workers"] == 1  # as it ran
    open_model = ("-n", "6", "--rate", "50", "--max-in-flight", "1", "-w", "2")
    code, cohort = _run(capfd, adk_server, tmp_path / "open.json", FAST, *open_model)
    assert (code, cohort["outcomes"]) == (0, {"ok": 6})
    assert _peak(adk_server) == 1


def _check_line(output: str, name: str) -> str:
    lines = [line.strip() for line in output.splitlines() if name in line]
    assert len(lines) == 1, output
    return lines[0]


def test_check_runs_a_canonical_session(adk_server: str, capfd: pytest.CaptureFixture[str]) -> None:
    common = ("check", adk_server, "--flows", "canonical", "--app", APP, "--session-create", "adk")
    good = in_process(capfd, *common, "--message", FAST)
    assert good.returncode != 3, good.stdout + good.stderr
    line = _check_line(good.stdout, "canonical.session")
    assert line.startswith("OK") and "3 events" in line, line
    bad = in_process(capfd, *common, "--message", "fail delay=10")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    line = _check_line(bad.stdout, "canonical.session")  # stdout is the report
    assert line.startswith("FAIL") and "stream_error" in line and "scripted failure" in line, line


def test_compare_canonical_with_itself_is_not_worse(
    adk_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "self.toml"
    cohort = f'flow = "canonical"\nurl = "{adk_server}"\napp = "{APP}"\nmessages = ["{FAST}"]\n'
    scenario.write_text(f"[cohorts.canonical]\n{cohort}\n[cohorts.legacy]\n{cohort}")
    proc = in_process(
        capfd,
        "compare",
        "--scenario",
        str(scenario),
        "-n",
        "10",
        "-c",
        "2",
        "-w",
        "1",
        "--json",
        "-o",
        str(tmp_path / "c.json"),
    )
    doc = json.loads(proc.stdout)
    for name in ("canonical", "legacy"):
        assert doc["cohorts"][name]["outcomes"] == {"ok": 10}, name
    overall = doc["verdict"]["overall"]
    assert (overall, proc.returncode) in (("GREEN", 0), ("INCONCLUSIVE", 3)), proc.stderr


def test_ttfe_agrees_with_a_raw_socket_client(
    adk_server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Alternating rounds, one session at a time: sseprobe's TTFE p50 against the time a blocking
    socket sees the first ``data:`` byte of the same two requests. Medians of rounds; the margin is
    wide (the machine may be busy), and still far below the ~10 % a second session in flight gave."""
    message = "delay=60 events=2 gap=5"
    ours, oracle = [], []
    for i in range(3):
        _, cohort = _run(capfd, adk_server, tmp_path / f"r{i}.json", message, "-n", "5", "-c", "1")
        assert cohort["outcomes"] == {"ok": 5}
        ours.append(cohort["ttfe_ms"]["p50"])
        oracle.append(statistics.median(raw_session(adk_server, message).first_data_ms for _ in range(5)))
    ours_ms, oracle_ms = statistics.median(ours), statistics.median(oracle)
    assert oracle_ms >= 60 and ours_ms >= 60  # both waited for the agent's delay
    assert abs(ours_ms - oracle_ms) <= 5 + 0.15 * oracle_ms, (ours, oracle)
