"""``check`` says what failed on stderr too: stdout stays the whole report, stderr carries only what went wrong."""

from __future__ import annotations

import re

import pytest

from .conftest import in_process, target_process
from .servers import refused_url


def test_check_failures_go_to_stderr_and_the_report_stays_on_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    with target_process() as url:
        code, out, err = in_process(capfd, "check", url, "--optional-dependency", "cloud_logging")
    assert code == 0, out + err
    assert "health.status" in out and "sseprobe check:" not in err

    with target_process("--unhealthy") as url:
        code, out, err = in_process(capfd, "check", url, "--flows", "canonical")
    assert code == 2, out + err
    assert re.search(r"^  \S*FAIL\S* +health.status ", out, re.M)  # the report keeps every line
    assert re.search(rf"^sseprobe check: FAIL {re.escape(url)} health.status: status is ", err, re.M)
    assert all(re.match(r"sseprobe check: (WARN|FAIL|UNKNOWN) ", ln) for ln in err.splitlines())  # only that

    code, out, err = in_process(capfd, "check", refused_url().rsplit("/", 1)[0], "--timeout", "2")
    assert code == 3
    assert re.search(r"^sseprobe check: UNKNOWN \S+ \S+: cannot reach", err, re.M), err
