"""``check`` says what it knows: the flag is on, off, or not visible from outside (and why), never
"on" by elimination; /health values that are not checks are shown, not judged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sseprobe._config import FlowOptions
from sseprobe.ops.check import CheckResult, health_findings, run_checks
from sseprobe.target import CohortKnobs, TargetConfig, running_target

from .conftest import in_process, target_process

FAST = CohortKnobs(ttfe_ms=5.0, ttfe_spread=0.0, events=3, gap_ms=2.0)


def checks(**config: Any) -> dict[str, CheckResult]:
    async def main() -> list[CheckResult]:
        async with running_target(TargetConfig(**{"canonical": FAST, "legacy": FAST, **config})) as target:
            return await run_checks(FlowOptions(url=target.url), ("canonical", "legacy"), timeout=10)

    return by_name(asyncio.run(main()))


@pytest.mark.parametrize("profile", ["default", "vana-real"])
@pytest.mark.parametrize("flag", [True, False])
def test_flag_state_is_what_shows_from_outside(profile: str, flag: bool) -> None:
    found = checks(profile=profile, canonical_enabled=flag)
    detail = found["canonical.flag"].detail
    if profile == "vana-real":  # ADK's routes answer /run_sse whatever the flag says
        assert detail.startswith("not-visible from outside") and not detail.startswith("ON")
        assert "without event: done" in detail and "list-apps" in detail and "unknown app name" in detail
        assert found["canonical.session"].level == "OK"
    elif flag:
        assert detail.startswith("ON") and "event: done" in detail
        assert found["canonical.session"].level == "OK"
    else:
        assert detail.startswith("OFF") and "501" in detail
        assert found["canonical.session"].detail.startswith("skipped")
    assert found["canonical.flag"].level == "INFO" and found["legacy.session"].level == "OK"


def test_adk_itself_never_reads_as_on() -> None:
    """The ADK api_server has no flag at all: its streams close without `done`."""
    detail = checks(adk_style=True)["canonical.flag"].detail
    assert detail.startswith("not-visible from outside") and "without event: done" in detail


def test_health_values_are_shown_not_judged() -> None:
    deps = {"google_api_configured": True, "cloud_logging": True, "project_id": "vana-dev-project"}
    dependencies = by_name(health_findings({"status": "healthy", "dependencies": deps}))["health.dependencies"]
    assert dependencies.level == "OK" and "all 2 required true" in dependencies.detail
    assert "project_id='vana-dev-project'" in dependencies.detail
    down = by_name(health_findings({"status": "healthy", "dependencies": {**deps, "cloud_logging": False}}))
    judged, _, shown = down["health.dependencies"].detail.partition("; values: ")
    assert down["health.dependencies"].level == "WARN"
    assert judged == "not true: cloud_logging" and shown == "project_id='vana-dev-project'"


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_vana_real_health_is_ok_with_its_project_id() -> None:
    dependencies = checks(profile="vana-real")["health.dependencies"]
    assert dependencies.level == "OK" and "values: project_id=" in dependencies.detail


def test_check_against_the_default_target_exits_0(capfd: pytest.CaptureFixture[str]) -> None:
    """The first check a new user runs, on our own reference service, does not warn."""
    with target_process() as url:
        code, out, err = in_process(capfd, "check", url)
    assert code == 0, out + err
    assert "WARN" not in out and "FAIL" not in out


def test_degraded_health_shape_is_still_available() -> None:
    found = checks(cloud_logging=False)
    assert found["health.dependencies"].level == "WARN" and "cloud_logging" in found["health.dependencies"].detail


def test_a_failed_probe_stream_says_unknown_not_hidden() -> None:
    """A stream that ends in an in-stream error tells nothing about which route served it."""
    flag = checks(canonical=CohortKnobs(ttfe_ms=5.0, ttfe_spread=0.0, p_stream_error=1.0))["canonical.flag"]
    assert flag.level == "WARN" and flag.detail.startswith("unknown: the probe stream ended with an error")
