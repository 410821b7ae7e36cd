"""Self-ranging: compare, monitor and demo lower their own load when the generator cannot time it, and
say so; run and scenarios with phases keep the load asked for.

The decisions are tested on given generator blocks, and the loop in ``_api`` on measurements handed to it
(no clock, no machine): whether this machine is busy enough to range is not what these tests judge.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sseprobe import _api, plan_from
from sseprobe.load.engine import Load, RunInfo
from sseprobe.load.generator import (
    PROBE_PERIOD_S,
    RANGE_WINDOW_S,
    SATURATED_LAG_MS,
    RangeWatch,
    generator_block,
    load_bound,
    worth_lowering,
)
from sseprobe.load.pacer import Phase, Schedule
from sseprobe.load.ranging import MIN_RATE, RangeChange, lowered, offered
from sseprobe.load.runner import Measured
from sseprobe.verdict.stats import CohortStats, new_histogram


def _ms(p99: float) -> dict[str, float | int | None]:
    return {"count": 100, "p50": p99 / 4, "p99": p99, "max": p99}


def _cpu(busy: float) -> dict[str, int]:
    return {"run_ns": int(busy * 1e9), "wait_ns": int(0.1e9), "runs": 1000, "wall_ns": int(1e9)}


def test_halving_keeps_both_cohorts_alike_down_to_one_in_flight_each() -> None:
    load = Load(sessions=200, concurrency=20)
    steps = []
    while (load := lowered(load, 2)) is not None:  # type: ignore[assignment]
        steps.append(offered(load, 2)["concurrency"])
    assert steps == [5.0, 2.0, 1.0]  # 10 -> 5 -> 2 -> 1 per cohort, always a whole number per cohort


def test_an_open_model_halves_its_rate_and_keeps_its_sessions() -> None:
    phase = Phase(10.0, 40.0, 40.0, "constant")  # 400 sessions at 40/s
    load = Load(sessions=400, schedule=Schedule((phase,)))
    half = lowered(load, 2)
    assert half is not None and half.schedule is not None
    (p,) = half.schedule.phases
    assert (p.start_rate, p.end_rate, p.duration) == (20.0, 20.0, 20.0)  # the same 400 sessions, twice as long
    assert offered(half, 2) == {"rate": 10.0}
    assert lowered(Load(sessions=4, schedule=Schedule((Phase(4.0, MIN_RATE * 2, MIN_RATE * 2),))), 2) is None
    ramp = Load(duration=10, schedule=Schedule((Phase(10.0, 10.0, 50.0, "ramp"),)))
    assert lowered(ramp, 2) is None  # a load shape asked for is kept


def test_only_a_loop_late_by_its_own_work_is_worth_a_lower_load() -> None:
    busy = generator_block(_ms(SATURATED_LAG_MS * 3), _ms(1.0), _cpu(0.4))
    assert load_bound(busy) and worth_lowering(busy, None)
    idle = generator_block(_ms(SATURATED_LAG_MS * 3), _ms(1.0), _cpu(0.03))  # kept off the CPUs by others
    assert load_bound(idle) and not worth_lowering(idle, None)
    waiting = generator_block(_ms(SATURATED_LAG_MS / 2), _ms(1.0), {**_cpu(0.4), "wait_ns": int(0.9e9)})
    assert waiting["saturated"] and not load_bound(waiting)  # flagged for CPU wait alone: the hogs stay
    assert not worth_lowering(generator_block(_ms(1.0), _ms(1.0), _cpu(0.4)), None)  # kept up


def test_a_halving_that_did_not_help_is_the_last() -> None:
    after = generator_block(_ms(30.0), _ms(1.0), _cpu(0.4))
    assert worth_lowering(after, last_error_ms=60.0)  # 31 ms after 60: it helped, try again
    assert not worth_lowering(after, last_error_ms=35.0)  # 31 after 35: no better, stop here


def test_the_watch_judges_whole_windows() -> None:
    watch = RangeWatch(None)
    late = int(SATURATED_LAG_MS * 3 * 1000)
    for _ in range(int(RANGE_WINDOW_S / PROBE_PERIOD_S) - 1):
        watch.lag.record_value(late)
    assert watch.check() is None  # not a whole window yet
    watch.lag.record_value(late)
    block = watch.check()
    # this thread's real CPU counters decide the rest: either way the window was judged and reset
    assert block is None or block["saturated"] is True
    assert watch.lag.get_total_count() == 0


def _measured(load_bound_block: bool, sessions: int) -> Measured:
    stats = {}
    for name in ("canonical", "legacy"):
        s = CohortStats(flow=name)
        s.sessions = s.connected = sessions
        s.outcomes = Counter({"ok": sessions})
        s.http_status = Counter({"200": sessions})
        stats[name] = s
    lag = _ms(SATURATED_LAG_MS * 3) if load_bound_block else _ms(1.0)
    generator = generator_block(lag, _ms(1.0), _cpu(0.5)) | {"loop_lag_us": new_histogram().encode().decode()}
    return Measured(RunInfo("2026-12-06T00:00:00+00:00", 1.0, False, None), stats, [], generator)


def test_compare_lowers_its_load_records_it_and_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    given = {"canonical_url": "http://127.0.0.1:9", "legacy_url": "http://127.0.0.1:9", "out": str(tmp_path / "c.json")}
    plan = plan_from(None, {**given, "sessions": 50, "concurrency": 8, "workers": 1}, "compare")
    assert plan.self_ranging
    seen: list[Load] = []
    answers = [_measured(True, 30), _measured(False, 50)]

    def measure(p: Any, _progress: Any) -> Measured:
        seen.append(p.load)
        assert p.options.self_ranging is not False  # the runner may stop early for a lower load
        return answers[len(seen) - 1]

    monkeypatch.setattr(_api, "_measure", measure)
    err = io.StringIO()
    result = _api.compare(plan, progress=err)
    assert [load.concurrency for load in seen] == [16, 8]  # 8 per cohort, then 4: both alike
    (change,) = result.document["generator"]["ranges"]
    assert change["from"] == {"concurrency": 8.0} and change["to"] == {"concurrency": 4.0}
    assert change["discarded"] == 30 and change["at_session"] == 0 and "loop lag p99" in change["why"]
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and "lowering the load from 8 to 4 in flight per cohort" in lines[0]
    assert result.measured.cohorts["canonical"].sessions == 50  # the verdict is on the lower load's sessions


def test_until_decided_goes_on_at_the_lower_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    given = {"canonical_url": "http://127.0.0.1:9", "legacy_url": "http://127.0.0.1:9", "out": str(tmp_path / "c.json")}
    plan = plan_from(None, {**given, "until_decided": True, "look_every": 40, "max_sessions": 80, "workers": 1})
    seen: list[int] = []
    answers = [_measured(True, 40), _measured(False, 40), _measured(False, 40)]

    def measure(p: Any, _progress: Any) -> Measured:
        seen.append(p.load.concurrency)
        return answers[len(seen) - 1]

    monkeypatch.setattr(_api, "_measure", measure)
    result = _api.compare(plan, progress=None)
    assert seen == [20, 10, 10], result.document[
        "verdict"
    ]  # the batch at the old load is left out; two looks at the new one
    seq = result.document["verdict"]["sequential"]
    assert seq["looks"] == 2 and seq["sessions"] == {"canonical": 80, "legacy": 80}
    assert len(result.document["generator"]["ranges"]) == 1


def test_load_runs_and_phases_keep_the_load_asked_for(tmp_path: Path) -> None:
    out = str(tmp_path / "r.json")
    assert not plan_from(None, {"flow": "canonical", "url": "http://127.0.0.1:9", "out": out}, "run").self_ranging
    scenario = tmp_path / "phases.toml"
    scenario.write_text("[[load.phases]]\nduration_s = 5\nrate = 10\n")
    given = {"canonical_url": "http://127.0.0.1:9", "legacy_url": "http://127.0.0.1:9", "out": out}
    assert not plan_from(str(scenario), given, "compare").self_ranging


def test_a_range_change_reads_in_one_line() -> None:
    change = RangeChange(200, {"rate": 20.0}, {"rate": 10.0}, "generator loop lag p99 40.0 ms: late", 37, 41.0)
    assert change.to_dict() == {
        "at_session": 200,
        "from": {"rate": 20.0},
        "to": {"rate": 10.0},
        "why": "generator loop lag p99 40.0 ms: late",
        "discarded": 37,
        "error_ms": 41.0,
    }
    assert "\n" not in change.line() and "from 20 to 10 sessions/s per cohort" in change.line()
