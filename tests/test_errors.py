"""One error family: every error a user can see is a SseprobeError with its exit code, and the command
line turns any of them into one line on stderr and that code, at one place (cli.main)."""

from __future__ import annotations

from pathlib import Path

import pytest

import sseprobe
from sseprobe._errors import SseprobeError
from sseprobe.load.calibrate import CalibrationFailed
from sseprobe.load.cluster import ClusterError
from sseprobe.load.runner import RunFailure
from sseprobe.ops.monitor import MonitorError
from sseprobe.report.history import HistoryError

from .conftest import in_process

FAMILY = [
    sseprobe.UsageProblem,
    sseprobe.ScenarioError,
    sseprobe.PolicyError,
    sseprobe.ResultsError,
    HistoryError,
    MonitorError,
    RunFailure,
    ClusterError,
    CalibrationFailed,
]


@pytest.mark.parametrize("cls", FAMILY, ids=lambda c: c.__name__)
def test_every_user_visible_error_is_one_of_ours_with_exit_3(cls: type[Exception]) -> None:
    assert issubclass(cls, SseprobeError)
    assert cls("x").exit_code == 3
    # the built-in base each had before stays, so a caller's `except ValueError` / `RuntimeError` still holds
    assert issubclass(cls, ValueError) or issubclass(cls, RuntimeError)


def test_the_family_is_public() -> None:
    assert sseprobe.SseprobeError is SseprobeError
    assert "SseprobeError" in sseprobe.__all__


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["report", "{missing}", "--html", "{out}"], "cannot read"),  # ResultsError
        (["history", "--db", "{missing}"], "no such file"),  # HistoryError
        (["monitor", "--config", "{missing}"], "{missing}"),  # MonitorError
        (["compare", "{missing}"], "cannot read"),  # ResultsError, offline compare
    ],
)
def test_the_command_line_says_one_line_and_exits_3(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    names = {"missing": str(tmp_path / "nope.json"), "out": str(tmp_path / "r.html")}
    code, out, err = in_process(capfd, *(a.format(**names) for a in argv))
    assert code == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sseprobe: error: "), err
    assert said.format(**names) in lines[0] and "Traceback" not in err
