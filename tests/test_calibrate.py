"""``sseprobe calibrate``: the search's decisions (pure, no clock), the stored calibration and the warning
``run`` and ``compare`` give before starting, and the command end to end against the built-in target."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sseprobe.load.calibrate import (
    CALIBRATION_ENV,
    SCHEMA,
    Calibration,
    Search,
    StepFigures,
    _document,
    calibration_path,
    judge_step,
    load_calibration,
    machine_identity,
    next_value,
    over_calibration,
    recommend_workers,
    store_calibration,
)
from sseprobe.load.calibration import FloorsDoc, StoredCalibration
from sseprobe.load.engine import Load
from sseprobe.load.pacer import Phase, Schedule
from sseprobe.load.search import RESOLUTION, highest_pass

from .conftest import CLI, in_process, sseprobe

# --- the search's decisions --------------------------------------------------------------------------


def _search(threshold: float, start: float = 200, floor: float = 10, cap: float = 20_000) -> list[tuple[float, bool]]:
    tried: list[tuple[float, bool]] = []
    while (value := next_value(tried, start, floor, cap)) is not None:
        tried.append((value, value <= threshold))
        assert len(tried) < 30, tried  # a search that never ends is a defect
    return tried


@pytest.mark.parametrize("threshold", [13, 99, 200, 333, 1_000, 1_500, 7_777])
def test_ramp_then_bisection_brackets_the_threshold(threshold: float) -> None:
    tried = _search(threshold)
    found = highest_pass(tried)
    assert threshold / RESOLUTION**2 <= found <= threshold, tried
    assert len(tried) <= 12, tried  # geometric: a handful of steps, not a sweep


def test_the_ramp_doubles_and_the_bisection_takes_the_geometric_middle() -> None:
    assert next_value([], 200, 10, 20_000) == 200
    assert next_value([(200, True)], 200, 10, 20_000) == 400
    assert next_value([(200, True), (400, True), (800, False)], 200, 10, 20_000) == round(math.sqrt(400 * 800))
    assert next_value([(200, False)], 200, 10, 20_000) == 100  # even the start failed: down


def test_the_search_stops_at_the_cap_and_at_the_floor() -> None:
    assert next_value([(20_000, True)], 200, 10, 20_000) is None
    assert highest_pass(_search(1e9)) == 20_000
    nothing = _search(0)
    assert highest_pass(nothing) == 0 and min(v for v, _ in nothing) >= 10


def test_a_noisy_pass_above_a_failure_does_not_count() -> None:
    assert highest_pass([(200, True), (400, False), (800, True)]) == 200


def _figures(**kw: object) -> StepFigures:
    base: dict[str, object] = {
        "value": 100.0,
        "sessions": 200,
        "failed": 0,
        "judged": 200,
        "ttfe_error_p99_ms": 0.8,
        "generator_error_ms": 1.0,
        "saturated": False,
    }
    return StepFigures(**{**base, **kw})  # type: ignore[arg-type]


def test_a_step_passes_only_unsaturated_true_and_whole() -> None:
    assert judge_step(_figures()) is None
    assert "saturated" in (judge_step(_figures(saturated=True, generator_error_ms=9.0)) or "")
    assert "TTFE error p99 2.50 ms" in (judge_step(_figures(ttfe_error_p99_ms=2.5)) or "")
    assert "failed" in (judge_step(_figures(failed=5)) or "")
    assert "truth stamp" in (judge_step(_figures(judged=3)) or "")


def test_workers_fit_the_cores_with_the_target_beside() -> None:
    assert recommend_workers(2, 0.3, 0.3) == 2  # 0.8 x 0.6 of a core each: two fit in 70 % of 2 cores
    assert recommend_workers(2, 0.5, 0.4) == 1  # 0.8 x 0.9 each: 1.44 cores is more than 70 % of 2
    assert recommend_workers(8, 0.01, 0.01) == 8  # never more than the cores
    assert recommend_workers(2, 3.0, None) == 1  # never fewer than one
    assert recommend_workers(4, 0.5, 0.0) == 4  # 0.4 each in 2.8 cores: 7 fit, at most the 4 cores
    assert recommend_workers(4, 0.5, None) == 3  # the target's cost unknown: taken as the generator's


def test_the_document_and_its_text_say_every_figure() -> None:
    rate, in_flight = Search("rate"), Search("in flight")
    for value, error in ((200, 0.8), (400, 2.8), (283, 1.1)):
        rate.measured(_figures(value=value, ttfe_error_p99_ms=error, cpu_share=0.7, target_cpu_share=0.6))
        rate.tried.append((value, error < 2))
    in_flight.measured(_figures(value=500))
    in_flight.tried.append((500, True))
    in_flight.stopped_by = "time"
    floors: FloorsDoc = {"timer_ms": {"p50": 0.1, "p99": 0.4}, "loop_lag_ms": {"p50": 0.5, "p99": 1.2}}
    doc = _document(rate, in_flight, floors, datetime.now(UTC), 41.0, [0.5, 0.4, 0.3], 50)
    assert doc["limits"] == {"rate_per_worker": 283, "in_flight_per_worker": 500}
    assert doc["recommended"]["rate_per_worker"] == 226 and doc["recommended"]["in_flight_per_worker"] == 400
    assert doc["recommended"]["workers"] == 1  # 0.8 x (0.7 + 0.6) of a core each: one fits in 2
    text = Calibration(doc).text()
    assert "283 sessions/s" in text and "400 failed: TTFE error p99 2.80 ms" in text
    assert "cut short by the time budget, 1 step" in text and "--workers 1, up to 226 sessions/s" in text
    assert "WARNING" not in text  # an idle floor of 1.2 ms: a quiet machine
    busy: FloorsDoc = {**floors, "loop_lag_ms": {"p50": 3.0, "p99": 14.0}}
    text = Calibration(_document(rate, in_flight, busy, datetime.now(UTC), 41.0, [6.5, 5.0, 4.0], 50)).text()
    assert "WARNING: the idle loop-lag floor (p99 14.0 ms) is already above the 12 ms" in text
    assert "busy (load average 6.50)" in text and "Every run here will be flagged" in text


# --- the stored calibration and the warning -----------------------------------------------------------


def _calibration(
    rate: float = 50, in_flight: float = 40, hostname: str | None = None, cores: int | None = None
) -> StoredCalibration:
    here = machine_identity()
    return {
        "schema": SCHEMA,
        "date": "2026-11-30T12:00:00+00:00",
        "machine": {**here, "hostname": hostname or here["hostname"], "cores": cores or here["cores"]},
        "limits": {"rate_per_worker": rate, "in_flight_per_worker": in_flight},
    }


def _open(rate: float) -> Load:
    return Load(schedule=Schedule((Phase(10, rate, rate),)), duration=10)


def test_over_calibration_is_per_worker() -> None:
    doc = _calibration(rate=400, in_flight=100)
    warning = over_calibration(doc, _open(1_000), workers=2) or ""
    assert "500 sessions/s per worker" in warning and "400" in warning
    assert over_calibration(doc, _open(600), workers=2) is None
    assert "150 sessions in flight per worker" in (over_calibration(doc, Load(concurrency=300, sessions=10), 2) or "")
    assert over_calibration(doc, Load(concurrency=200, sessions=10), 2) is None


def test_stored_calibration_round_trips_and_stale_or_corrupt_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "c" / "calibration.json"
    assert load_calibration(path) == (None, None)  # none yet
    store_calibration(_calibration(), path)
    doc, why = load_calibration(path)
    assert doc is not None and why is None and doc["limits"]["rate_per_worker"] == 50
    store_calibration(_calibration(hostname="another-machine"), path)
    assert load_calibration(path) == (None, None)  # stale: silently ignored
    store_calibration(_calibration(cores=machine_identity()["cores"] + 1), path)
    assert load_calibration(path) == (None, None)
    path.write_bytes(b'{"schema": "sseprobe.calibration/1", "limits": ')
    doc, why = load_calibration(path)
    assert doc is None and why is not None and "ignored" in why


def test_storing_never_replaces_anything_but_a_regular_file(tmp_path: Path) -> None:
    folder = tmp_path / "calibration.json"
    folder.mkdir()
    with pytest.raises(OSError):
        store_calibration(_calibration(), folder)
    assert folder.is_dir()


def test_where_the_calibration_lives() -> None:
    assert calibration_path({"XDG_CACHE_HOME": "/x"}) == Path("/x/sseprobe/calibration.json")
    assert calibration_path({CALIBRATION_ENV: "/y/c.json", "XDG_CACHE_HOME": "/x"}) == Path("/y/c.json")
    assert calibration_path({CALIBRATION_ENV: "off"}) is None
    assert calibration_path({CALIBRATION_ENV: ""}) is None
    assert calibration_path({}) == Path("~/.cache/sseprobe/calibration.json").expanduser()


def _run(url: str, tmp_path: Path, env: dict[str, str], *load: str) -> subprocess.CompletedProcess[str]:
    return sseprobe(
        "run", "--flow", "canonical", "--url", url, "--workers", "1", *load, "--out", str(tmp_path / "r.json"), env=env
    )


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "calibrat" in line]


def test_run_and_compare_warn_before_starting_only_above_the_calibration(target: str, tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    store_calibration(_calibration(rate=50, in_flight=40), path)
    env = {CALIBRATION_ENV: str(path)}
    above = _run(target, tmp_path, env, "--rate", "400", "--sessions", "40")
    assert above.returncode == 0, above.stderr
    (line,) = _warnings(above.stderr)
    assert "400 sessions/s per worker" in line and "50" in line
    assert line.startswith("sseprobe: WARNING")
    within = _run(target, tmp_path, env, "--rate", "20", "--sessions", "20")
    assert within.returncode == 0 and _warnings(within.stderr) == [], within.stderr
    closed = _run(target, tmp_path, env, "--concurrency", "60", "--sessions", "60")
    assert "60 sessions in flight per worker" in "".join(_warnings(closed.stderr))
    # compare: the rate is per cohort, so two cohorts at 30/s ask 60/s of one worker
    compare = sseprobe(
        "compare", "--canonical", target, "--legacy", target, "--rate", "30", "--sessions", "30", "--workers", "1",
        "--out", str(tmp_path / "c.json"), env=env,
    )  # fmt: skip
    assert "60 sessions/s per worker" in "".join(_warnings(compare.stderr)), compare.stderr
    off = _run(target, tmp_path, {CALIBRATION_ENV: "off"}, "--rate", "400", "--sessions", "40")
    assert _warnings(off.stderr) == [], off.stderr


def test_the_demo_warns_above_the_calibration_too(tmp_path: Path) -> None:
    """The README's main job says so as run and compare do: 10 in flight per cohort of 2 s sessions arrive
    at about 10 sessions/s in all, on one worker, over a calibration that found 5."""
    path = tmp_path / "calibration.json"
    store_calibration(_calibration(rate=5, in_flight=5), path)
    r = sseprobe("demo", "-n", "20", "-c", "10", "--out", str(tmp_path / "d.json"), env={CALIBRATION_ENV: str(path)})
    assert r.returncode in (0, 1, 2, 3) and "Traceback" not in r.stderr, r.stderr
    assert "10 sessions/s per worker is above the 5" in "".join(_warnings(r.stderr)), r.stderr


def test_a_stale_or_corrupt_calibration_never_stops_a_run(target: str, tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    store_calibration(_calibration(rate=1, in_flight=1, hostname="another-machine"), path)
    stale = _run(target, tmp_path, {CALIBRATION_ENV: str(path)}, "--rate", "400", "--sessions", "40")
    assert stale.returncode == 0 and _warnings(stale.stderr) == [], stale.stderr
    path.write_text("not json at all")
    corrupt = _run(target, tmp_path, {CALIBRATION_ENV: str(path)}, "--rate", "400", "--sessions", "40")
    assert corrupt.returncode == 0, corrupt.stderr
    (note,) = _warnings(corrupt.stderr)  # one note at most, and no traceback
    assert "ignored" in note and "Traceback" not in corrupt.stderr


# --- the command ---------------------------------------------------------------------------------------


def test_bad_budget_and_unwritable_file_are_refused_before_measuring(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = in_process(capfd, "calibrate", "--budget", "1")
    assert code == 3 and out == "" and err.startswith("sseprobe: error: --budget") and err.count("\n") == 1
    code, out, err = in_process(capfd, "calibrate", "--file", str(tmp_path))
    assert code == 3 and err.startswith("sseprobe: error: ") and "--file" in err and err.count("\n") == 1


def test_calibrate_end_to_end_stores_what_it_prints_and_run_warns_above_it(target: str, tmp_path: Path) -> None:
    """On a machine too busy for any unsaturated step the command says so (exit 3, nothing stored): that
    is its contract too. Otherwise every figure is there, sane, stored, and used by the next run."""
    path = tmp_path / "cal" / "calibration.json"
    done = sseprobe("calibrate", "--budget", "20", "--json", "--file", str(path), timeout=180)
    if done.returncode == 3:
        assert "too busy to calibrate" in done.stderr and done.stdout == "" and not path.exists(), done.stderr
        pytest.skip(f"the machine was too busy to calibrate: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert json.loads(path.read_text()) == doc  # stored what it printed
    limits, rec, machine = doc["limits"], doc["recommended"], doc["machine"]
    assert limits["rate_per_worker"] > 0 and limits["in_flight_per_worker"] >= 1
    assert 1 <= rec["workers"] <= machine["cores"]
    assert 0 < rec["rate_per_worker"] <= limits["rate_per_worker"]
    assert 0 < rec["in_flight_per_worker"] <= limits["in_flight_per_worker"]
    for floor in (doc["floors"]["timer_ms"], doc["floors"]["loop_lag_ms"]):
        assert 0 <= floor["p50"] <= floor["p99"]
    assert {"hostname", "cores", "python", "sseprobe"} <= machine.keys() and doc["date"]
    for search in ("rate", "in_flight"):
        steps = doc[search]["steps"]
        passed = [s["value"] for s in steps if s["passed"]]
        assert max(passed) == doc["limits"]["rate_per_worker" if search == "rate" else "in_flight_per_worker"]
        assert all(s["reason"] for s in steps if not s["passed"])
    assert doc["elapsed_s"] < 20 + 15  # the budget bounds the search (start and stop of the target on top)
    env = {CALIBRATION_ENV: str(path)}
    far = math.ceil(limits["rate_per_worker"] * 10)
    above = _run(target, tmp_path, env, "--rate", str(far), "--sessions", "30")
    assert f"{far:,} sessions/s per worker" in "".join(_warnings(above.stderr)), above.stderr
    within = _run(target, tmp_path, env, "--rate", "5", "--sessions", "3")
    assert _warnings(within.stderr) == [], within.stderr


def test_ctrl_c_stops_calibration_in_one_line_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    proc = subprocess.Popen(
        [*CLI, "calibrate", "--budget", "60", "--file", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the first step is done: the search is under way
        assert first.startswith("sseprobe calibrate: rate"), first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3
    assert err.strip().splitlines()[-1] == "sseprobe: interrupted" and "Traceback" not in err
    assert out == "" and not path.exists()


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="Linux /proc")
def test_sigkill_of_calibrate_takes_its_target_with_it(tmp_path: Path) -> None:
    """#24.15: SIGKILL runs no cleanup; the forked target dies with its parent all the same."""
    import time

    proc = subprocess.Popen(
        [*CLI, "calibrate", "--budget", "60", "--no-store"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("sseprobe calibrate: rate")  # the target is up and serving
        targets = _children(proc.pid)
        assert targets
        proc.kill()
        proc.wait(30)
        deadline = time.monotonic() + 30  # the kernel's signal, not a timing: it comes at once or never
        while any(Path(f"/proc/{t}").exists() and "Z" not in _state(t) for t in targets):
            assert time.monotonic() < deadline, f"the target {targets} outlived calibrate"
            time.sleep(0.05)
    finally:
        proc.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"
