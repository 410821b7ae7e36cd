"""``check`` says what failed on stderr too: stdout stays the whole report, stderr carries only what went wrong."""

from __future__ import annotations

import re

from .conftest import sseprobe, target_process
from .servers import refused_url


def test_check_failures_go_to_stderr_and_the_report_stays_on_stdout() -> None:
    with target_process() as url:
        ok = sseprobe("check", url, "--optional-dependency", "cloud_logging")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "health.status" in ok.stdout and "sseprobe check:" not in ok.stderr

    with target_process("--unhealthy") as url:
        bad = sseprobe("check", url, "--flows", "canonical")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert re.search(r"^  \S*FAIL\S* +health.status ", bad.stdout, re.M)  # the report keeps every line
    assert re.search(rf"^sseprobe check: FAIL {re.escape(url)} health.status: status is ", bad.stderr, re.M)
    assert all(re.match(r"sseprobe check: (WARN|FAIL|UNKNOWN) ", ln) for ln in bad.stderr.splitlines())  # only that

    unreachable = sseprobe("check", refused_url().rsplit("/", 1)[0], "--timeout", "2")
    assert unreachable.returncode == 3
    assert re.search(r"^sseprobe check: UNKNOWN \S+ \S+: cannot reach", unreachable.stderr, re.M), unreachable.stderr
