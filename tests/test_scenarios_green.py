"""Every shipped scenario, shortened, runs GREEN against a healthy built-in target.

A scenario that is RED against our own healthy reference service (as the backend-style ones were,
when the server's session id was ignored) would send a rollout back for nothing. Each is cut to a
few seconds by rewriting its load numbers only, so the cohorts, timeouts and session creation
tested are the shipped ones.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sseprobe.plan.scenario import load_scenario

from .conftest import in_process

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
# policy-default.toml is a comparison policy, not a scenario: it is loaded by the policy tests
SHIPPED = sorted(p for p in SCENARIOS.glob("*.toml") if p.name not in ("policy-default.toml", "monitor-example.toml"))
MAX_SESSIONS, MAX_SECONDS = 12, 6.0


def shortened(path: Path, into: Path) -> Path:
    """The scenario with few sessions and short phases; everything else as shipped."""
    text = path.read_text()
    text = re.sub(r"(?m)^sessions = \d+", f"sessions = {MAX_SESSIONS}", text)
    text = re.sub(r"(?m)^duration_s = [\d.]+", "duration_s = 1.5", text)
    text = re.sub(r"(?m)^grace_s = [\d.]+", "grace_s = 2", text)
    out = into / path.name
    out.write_text(text)
    short = load_scenario(out)  # the cut must really be short, whatever the shipped file holds
    sessions, duration = short.load.get("sessions", 0), short.load.get("duration_s", 0)
    assert isinstance(sessions, int) and sessions <= MAX_SESSIONS
    assert isinstance(duration, int | float) and duration + sum(p.duration for p in short.phases) <= MAX_SECONDS
    return out


def test_every_scenario_is_covered() -> None:
    names = {p.name for p in SHIPPED}
    assert {"smoke.toml", "nightly.toml", "soak.toml", "staging-load.toml", "rollout-5pct.toml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_is_green(path: Path, target: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    short = shortened(path, tmp_path)
    cohorts = load_scenario(short).cohorts
    assert {c.name for c in cohorts} == {"canonical", "legacy"}
    for cohort in cohorts:
        out = tmp_path / f"{cohort.name}.json"
        args = [
            "run",
            "--scenario",
            str(short),
            "--flow",
            cohort.name,
            "--url",
            target,
            "--workers",
            "1",
            "-o",
            str(out),
        ]
        done = in_process(capfd, *args)
        assert done.returncode == 0, (cohort.name, done.stdout[-2000:], done.stderr[-2000:])
        stats = json.loads(out.read_text())["cohorts"][cohort.values["flow"]]
        assert stats["attempts"] >= 1
        assert stats["outcomes"] == {"ok": stats["attempts"]}, (cohort.name, stats["outcomes"])


def test_monitor_example_pass_is_green(target: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The example monitor config, pointed at the target, with its scenario shortened and paths in tmp.

    A short pass cannot decide a comparison (too few sessions, and no baseline on a first pass):
    those parts say so and nothing else; every part that can be decided is GREEN.
    """
    shortened(SCENARIOS / "nightly.toml", tmp_path)
    config = (SCENARIOS / "monitor-example.toml").read_text()
    config = config.replace('url = "http://127.0.0.1:8000"', f'url = "{target}"')
    config = config.replace('"../results', '"results')
    assert target in config and "../results" not in config
    path = tmp_path / "monitor.toml"
    path.write_text(config)
    done = in_process(capfd, "monitor", "--config", str(path))
    parts = {name: (level, why) for name, level, why in PART.findall(done.stdout)}
    assert {"check", "canonical targets", "legacy targets"} <= parts.keys(), done.stdout
    undecided = {name: why for name, (level, why) in parts.items() if level != "GREEN"}
    assert set(undecided) <= {"baseline", "canonical vs legacy"}, done.stdout
    assert all("cannot tell at" in why or "none saved yet" in why for why in undecided.values()), done.stdout
    assert done.returncode in (0, 3), done.stdout  # never YELLOW (1) or RED (2)


PART = re.compile(r"(?m)^  (\S.*?)\s{2,}(GREEN|YELLOW|RED|UNKNOWN)\s+(.*)$")
