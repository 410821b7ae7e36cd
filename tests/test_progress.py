"""Progress while a run goes: what the line says, how workers' progress merges, and where it is printed
(a line redrawn on a terminal, a plain line every so often in a log or pipe, nothing with --quiet)."""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import pty
import re
import select
import struct
import subprocess
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from sseprobe._outcomes import Outcome
from sseprobe._record import SessionRecord
from sseprobe.load.progress import Progress, merge_progress, progress_line
from sseprobe.verdict.intervals import IntervalLog
from sseprobe.verdict.schema import IntervalDoc

from .conftest import CLI, in_process, target_process

FAST = (
    *("--canonical-ttfe-ms", "20", "--legacy-ttfe-ms", "30", "--canonical-gap-ms", "2", "--legacy-gap-ms", "2"),
    *("--canonical-events", "3", "--legacy-events", "3"),
)
PLAIN = re.compile(r"^sseprobe progress: ", re.M)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with target_process(*FAST) as u:
        yield u


def _interval(ttfe_ms: dict[str, list[float]], failed: int = 0) -> IntervalDoc:
    """One closed interval as a worker would send it: counts and an encoded TTFE histogram per cohort."""
    log = IntervalLog()
    for cohort, values in ttfe_ms.items():
        for i, v in enumerate(values):
            log.add(SessionRecord(cohort, i, 0.0, outcome=Outcome.OK, ttfe_ms=v), 0.5)
        for i in range(failed):
            log.add(SessionRecord(cohort, 1000 + i, 0.0, outcome=Outcome.STREAM_ERROR), 0.5)
    last = log.last_closed(1.0)
    assert last is not None
    return last


def _progress(**kw: object) -> Progress:
    base: dict[str, object] = {
        "elapsed": 12.0,
        "phase": "hold",
        "target_rate": 50.0,
        "achieved_rate": 48.5,
        "in_flight": 96,
        "outcomes": {"canonical": {"ok": 510, "stream_error": 3}},
        "interval": None,
        "seconds_left": None,
        "sessions_left": None,
        "fired": [],
    }
    return Progress(**{**base, **kw})  # type: ignore[arg-type]


def test_progress_line_says_rate_in_flight_outcomes_and_triggers() -> None:
    line = progress_line(_progress(fired=["canonical: timeout_rate 0.2 > 0.1"]))
    assert "12.0s" in line and "hold" in line and "48.5/50 /s" in line and "in flight 96" in line
    assert "ok 510" in line and "stream_error 3" in line
    assert "TRIGGER (recent sessions): canonical: timeout_rate" in line


def test_progress_line_says_what_is_left_per_cohort_counts_and_ttfe_of_the_last_interval() -> None:
    interval = _interval({"canonical": [40.0] * 19 + [90.0], "legacy": [60.0] * 20})
    compare = _progress(
        outcomes={"canonical": {"ok": 500, "stream_error": 2, "timeout": 1}, "legacy": {"ok": 480, "cancelled": 4}},
        interval=interval,
        seconds_left=17.6,
    )
    line = progress_line(compare)
    assert "left 18s" in line
    assert "canonical ok 500 failed 3" in line and "legacy ok 480 failed 0" in line  # cancelled is no failure
    assert re.search(r"canonical ok 500 failed 3  TTFE p50 40 p95 40 ms", line), line
    assert re.search(r"legacy ok 480 failed 0  TTFE p50 60 p95 60 ms", line), line

    by_sessions = progress_line(_progress(sessions_left=970, achieved_rate=48.5))
    assert "left 970 sessions (~20s)" in by_sessions
    done = progress_line(_progress(seconds_left=0.0, in_flight=7))
    assert "arrivals done, finishing 7" in done and "left" not in done


def test_workers_progress_merges_counts_and_ttfe_histograms_and_stays_small() -> None:
    a = _progress(
        outcomes={"canonical": {"ok": 100}, "legacy": {"ok": 90, "timeout": 2}},
        interval=_interval({"canonical": [10.0] * 60, "legacy": [20.0] * 50}),
        seconds_left=5.0,
        sessions_left=40,
        achieved_rate=20.0,
        in_flight=4,
    )
    b = _progress(
        outcomes={"canonical": {"ok": 110, "stream_error": 1}, "legacy": {"ok": 95}},
        interval=_interval({"canonical": [30.0] * 40, "legacy": [20.0] * 50}),
        seconds_left=5.5,
        sessions_left=42,
        achieved_rate=21.0,
        in_flight=3,
    )
    merged = merge_progress([a, b])
    assert merged.outcomes == {"canonical": {"ok": 210, "stream_error": 1}, "legacy": {"ok": 185, "timeout": 2}}
    assert merged.sessions_left == 82 and merged.seconds_left == 5.5
    assert merged.achieved_rate == 41.0 and merged.in_flight == 7 and merged.target_rate == 100.0
    assert merged.interval is not None
    canonical = merged.interval["cohorts"]["canonical"]
    # 60 sessions at 10 ms and 40 at 30 ms: the merged median is 10, the 95th percentile 30
    assert canonical["ttfe_p50_ms"] == pytest.approx(10.0, rel=0.01)
    assert canonical["ttfe_p95_ms"] == pytest.approx(30.0, rel=0.01)
    assert merged.interval["cohorts"]["legacy"]["outcomes"] == {"ok": 100}
    # what a worker sends each second: counts and one encoded interval, not whole histograms
    assert len(pickle.dumps(a)) < 4096, len(pickle.dumps(a))


def test_plain_progress_lines_when_stderr_is_not_a_terminal(
    url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSEPROBE_PROGRESS_EVERY", "0.5")
    common = ("--rate", "20", "--duration", "3", "--workers", "2", "--out", str(tmp_path / "c.json"))
    r = in_process(capfd, "compare", "--canonical", url, "--legacy", url, *common, "--json")
    assert "Traceback" not in r.stderr  # the verdict of so short a run is beside the point (INCONCLUSIVE: 3)
    assert json.loads(r.stdout)["schema"] == "sseprobe.result/1"  # stdout holds the document and nothing else
    lines = PLAIN.findall(r.stderr)
    assert len(lines) >= 2, r.stderr  # a 3 s run, a line every tick (1 s) at a 0.5 s period
    progress = [ln for ln in r.stderr.splitlines() if ln.startswith("sseprobe progress: ")]
    assert all(re.search(r"canonical ok \d+ failed \d+", ln) and "legacy ok " in ln for ln in progress), progress
    assert any(re.search(r"left \d+s", ln) for ln in progress), progress
    assert any("TTFE p50 " in ln for ln in progress), progress
    assert "\r" not in r.stderr and "\x1b" not in r.stderr  # no terminal control codes in a log

    quiet = in_process(capfd, "compare", "--canonical", url, "--legacy", url, *common, "--quiet")
    assert "Traceback" not in quiet.stderr and "verdict" in quiet.stdout.lower(), quiet.stdout + quiet.stderr
    assert not PLAIN.search(quiet.stderr), quiet.stderr


def test_sessions_left_and_the_default_period_of_ten_seconds(
    url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("run", "--flow", "canonical", "--url", url, "-n", "200", "-c", "2", "--workers", "1")
    monkeypatch.setenv("SSEPROBE_PROGRESS_EVERY", "0.5")
    r = in_process(capfd, *args, "--out", str(tmp_path / "a.json"))
    assert r.returncode == 0, r.stderr
    # 100 sessions one after another per user, 20 ms TTFE each at the least: past the first 1 s tick
    assert re.search(r"^sseprobe progress: .*left \d+ sessions \(~\d+s\)", r.stderr, re.M), r.stderr
    monkeypatch.delenv("SSEPROBE_PROGRESS_EVERY")
    default = in_process(capfd, *args, "-n", "20", "--out", str(tmp_path / "b.json"))
    assert default.returncode == 0, default.stderr
    doc = json.loads((tmp_path / "b.json").read_text())
    if doc["duration_s"] < 9:  # shorter than the first 10 s line: none, rather than one a second
        assert not PLAIN.search(default.stderr), default.stderr

    monkeypatch.setenv("SSEPROBE_PROGRESS_EVERY", "soon")
    bad = in_process(capfd, *args)
    assert bad.returncode == 3 and bad.stderr.startswith("sseprobe: error: SSEPROBE_PROGRESS_EVERY")


def _read_pty(proc: subprocess.Popen[bytes], master: int) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_live_line_on_a_terminal(url: str, tmp_path: Path) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    try:
        proc = subprocess.Popen(
            [*CLI, "run", "--flow", "canonical", "--url", url, "--rate", "20", "--duration", "3", "--workers", "1"]
            + ["--out", str(tmp_path / "t.json")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        seen = _read_pty(proc, master).decode(errors="replace")
        assert proc.wait(60) == 0, seen
    finally:
        os.close(master)
    redraws = [r.rstrip("\r\n") for r in seen.split("\r\x1b[2K")[1:]]
    assert len(redraws) >= 2, seen  # one line, redrawn each second
    assert all(len(r) < 100 for r in redraws), redraws  # never wider than the terminal: it could not be redrawn
    assert any(re.search(r"left \d+s", line) for line in redraws), seen
    assert any(re.search(r"\| ok \d+", line) for line in redraws), seen
    assert "sseprobe progress:" not in seen
