"""compare --until-decided: batches judged by judge_sequential until decided or a cap, end to end
against the built-in target, plus its input checks and its bookkeeping.

The statistics themselves (error rates over the looks, sessions a decision takes) are simulated
in tests/test_compare.py through the same ``Looks`` the command uses (bench/contract.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sseprobe import UsageProblem, plan_from
from sseprobe.report.verdict_text import render_sequential
from sseprobe.verdict.compare import SequentialPlan, decided, judge_sequential
from sseprobe.verdict.policy import DEFAULT_POLICY
from sseprobe.verdict.sequential import Looks, UntilDecided, time_to_decide
from sseprobe.verdict.stats import CohortStats
from sseprobe.verdict.verdict import Level
from testsupport.power import DISTRIBUTIONS, grow

from .conftest import AB_KNOBS as KNOBS
from .conftest import BASE_MS, CLI, in_process, sseprobe, target_process


def _until_decided(tmp_path: Path, url: str, *flags: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "seq.json"
    r = sseprobe(
        "compare",
        "--canonical",
        url,
        "--legacy",
        url,
        "--until-decided",
        "-c",
        "48",
        "--workers",
        "1",
        "--max-duration",
        "3m",
        "--out",
        str(out),
        *flags,
        timeout=300,
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r, json.loads(out.read_text())


def _sequential(doc: Mapping[str, Any]) -> dict[str, Any]:
    seq: dict[str, Any] = doc["verdict"]["sequential"]
    assert seq["sessions"] == {name: c["sessions"] for name, c in doc["cohorts"].items()}
    stops = ("decided", "generator_bound", "max_sessions", "max_duration", "interrupted")
    assert seq["looks"] >= 1 and seq["stopped"] in stops
    return seq


def _saturated_inconclusive(doc: dict[str, Any]) -> bool:
    """The one excuse: a generator this machine starved may leave the verdict undecided (never wrong)."""
    return bool(doc["generator"]["saturated"]) and doc["verdict"]["overall"] == "INCONCLUSIVE"


def test_a_a_is_decided_green_with_the_sessions_used_printed(tmp_path: Path) -> None:
    with target_process(*KNOBS, "--canonical-ttfe-ms", str(BASE_MS)) as url:
        r, doc = _until_decided(tmp_path, url, "--look-every", "100", "--max-sessions", "3000")
    seq = _sequential(doc)
    if _saturated_inconclusive(doc):
        pytest.skip(f"the generator was saturated and the verdict stayed undecided: {doc['generator']['note']}")
    assert r.returncode == 0 and doc["verdict"]["overall"] == "GREEN", (doc["verdict"], seq)
    assert seq["stopped"] == "decided" and seq["decided"] is True
    n = seq["sessions"]["canonical"]
    assert n == UntilDecided(100, 3000).plan.sizes[seq["looks"] - 1] and n < 3000  # stopped before the cap
    assert f"sessions used: canonical {n:,}, legacy {n:,}" in r.stdout
    p95 = next(m for m in seq["metrics"] if m["name"] == "ttfe_p95_ms")
    assert p95["decided_at_sessions"] is not None and p95["decided_at_sessions"] <= n
    ttd = doc["verdict"]["time_to_decide"]
    assert ttd["basis"] == "decided" and ttd["sessions_per_cohort"] == n and ttd["traffic_source"] == "this run"
    assert "5 % canary:" in r.stdout


def test_20_percent_regression_is_decided_red(tmp_path: Path) -> None:
    with target_process(*KNOBS, "--canonical-ttfe-ms", str(BASE_MS * 1.2)) as url:
        r, doc = _until_decided(tmp_path, url, "--look-every", "50", "--max-sessions", "3000")
    seq = _sequential(doc)
    if _saturated_inconclusive(doc):
        pytest.skip(f"the generator was saturated and the verdict stayed undecided: {doc['generator']['note']}")
    p95 = next(m for m in doc["verdict"]["metrics"] if m["name"] == "ttfe_p95_ms")
    assert doc["verdict"]["overall"] in ("RED", "YELLOW") and p95["change"] > 0, doc["verdict"]
    assert r.returncode == {"RED": 2, "YELLOW": 1}[doc["verdict"]["overall"]]
    assert seq["stopped"] == "decided" and seq["sessions"]["canonical"] < 3000
    assert "sessions used: canonical" in r.stdout
    if not doc["generator"]["saturated"]:
        assert doc["verdict"]["overall"] == "RED", doc["verdict"]


def test_open_model_batches_and_the_max_sessions_cap(tmp_path: Path) -> None:
    """--rate: each batch is an open-model measurement; at the cap it stops, undecided if need be."""
    with target_process("--canonical-ttfe-ms", "40", "--legacy-ttfe-ms", "40") as url:
        out = tmp_path / "open.json"
        r = sseprobe(
            "compare",
            "--canonical",
            url,
            "--legacy",
            url,
            "--until-decided",
            "--rate",
            "100",
            "--look-every",
            "40",
            "--max-sessions",
            "100",
            "--traffic-rate",
            "20",
            "--workers",
            "1",
            "--out",
            str(out),
        )
    doc = json.loads(out.read_text())
    seq = _sequential(doc)
    assert doc["config"]["load"]["model"] == "open"
    assert seq["looks"] == 3 and seq["sessions"] == {"canonical": 100, "legacy": 100}  # 40 + 40 + 20
    assert seq["stopped"] == "max_sessions" and doc["verdict"]["overall"] == "INCONCLUSIVE"  # 100: too few for +5 %
    assert r.returncode == 3 and "stopped undecided at --max-sessions" in r.stdout
    ttd = doc["verdict"]["time_to_decide"]
    assert ttd["basis"] == "sessions_needed" and ttd["traffic_source"] == "--traffic-rate"
    five = ttd["steps"][0]
    assert five["canary_share"] == 0.05 and five["seconds"] == pytest.approx(ttd["sessions_per_cohort"] / 1.0, rel=1e-3)


def test_max_duration_ends_it_and_the_cut_batch_counts(tmp_path: Path) -> None:
    with target_process("--canonical-ttfe-ms", "40", "--legacy-ttfe-ms", "40") as url:
        r, doc = _until_decided(tmp_path, url, "-c", "2", "--look-every", "20000", "--max-duration", "1.5")
    seq = _sequential(doc)
    assert seq["stopped"] == "max_duration" and seq["looks"] == 1 and seq["max_duration_s"] == 1.5
    assert 0 < seq["sessions"]["canonical"] < 20000 and not doc["interrupted"]
    assert r.returncode == 3 and doc["verdict"]["overall"] == "INCONCLUSIVE"


def test_sigint_keeps_what_was_measured(tmp_path: Path) -> None:
    """Ctrl-C mid-way: the document holds every batch so far, says interrupted, exit 3, no traceback."""
    out = tmp_path / "int.json"
    with target_process("--canonical-ttfe-ms", "40", "--legacy-ttfe-ms", "40") as url:
        proc = subprocess.Popen(
            [*CLI, "compare", "--canonical", url, "--legacy", url, "--until-decided", "--look-every", "20"]
            + ["-c", "4", "--workers", "1", "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        for line in proc.stderr:  # the first look is in: a merged document exists to keep
            if "look 1:" in line:
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3 and "Traceback" not in stderr, stderr
    doc = json.loads(out.read_text())
    seq = _sequential(doc)
    assert seq["stopped"] == "interrupted" and doc["interrupted"] is True
    assert seq["sessions"]["canonical"] >= 20 and "interrupted after" in stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--until-decided", "-n", "100"], "not --sessions"),
        (["--until-decided", "-d", "10"], "not --duration"),
        (["--max-sessions", "500"], "--max-sessions needs --until-decided"),
        (["--until-decided", "--look-every", "500", "--max-sessions", "100"], "look_every"),
        (["--until-decided", "--max-duration", "soon"], "--max-duration"),
        (["--until-decided", "--max-duration", "0"], "--max-duration"),
    ],
)
def test_bad_sequential_input_is_one_line_exit_3(capfd: pytest.CaptureFixture[str], args: list[str], says: str) -> None:
    url = "http://127.0.0.1:9"  # never contacted: refused before any load
    code, _out, err = in_process(capfd, "compare", "--canonical", url, "--legacy", url, *args)
    assert code == 3 and err.count("\n") == 1 and says in err, err


def test_scenario_keys_and_an_explicit_flag_over_a_scenarios_end(tmp_path: Path) -> None:
    sc = tmp_path / "s.toml"
    sc.write_text("[load]\nuntil_decided = true\nlook_every = 50\nmax_sessions = 400\nmax_duration_s = 60\n")
    urls = {"canonical_url": "http://127.0.0.1:9", "legacy_url": "http://127.0.0.1:9"}
    plan = plan_from(sc, urls)
    assert plan.until_decided == UntilDecided(50, 400, 60.0) and plan.load.sessions == 100  # one batch, both cohorts
    ends = tmp_path / "ends.toml"
    ends.write_text("[load]\nsessions = 2000\n")
    plan = plan_from(ends, {**urls, "until_decided": True})  # the flag given: the scenario's end set aside
    assert plan.until_decided is not None and any("set aside" in n for n in plan.notes)
    with pytest.raises(UsageProblem, match="stops by itself"):
        plan_from(None, {**urls, "until_decided": True, "sessions": 10})
    with pytest.raises(UsageProblem, match="for compare"):
        plan_from(None, {"flow": "canonical", "url": urls["legacy_url"], "until_decided": True}, "run")


def _raw_sequential(seed: int, dist: str, scale: float, plan: SequentialPlan) -> tuple[int, Level, list[Level]]:
    """judge_sequential looked at directly, batch after batch: (sessions, level, levels per look)."""
    rng = np.random.default_rng(seed)
    b, c = CohortStats(flow="sim"), CohortStats(flow="sim")
    seen = []
    for look, size in enumerate(plan.sizes, 1):
        grow(b, rng, dist, size - b.sessions)
        grow(c, rng, dist, size - c.sessions, scale)
        v = judge_sequential(b, c, DEFAULT_POLICY, plan, look=look)
        seen.append(v.overall)
        if decided(v):
            break
    return b.sessions, v.overall, seen


def test_looks_judge_as_judge_sequential_does() -> None:
    """The command's bookkeeping (UntilDecided batches, Looks) stops where judge_sequential, looked
    at directly, stops: the same sessions and level (A/A and a 15 % regression); every critical
    metric's first decision at or before the stop."""
    dist = list(DISTRIBUTIONS)[1]
    plan = SequentialPlan(100, 20_000)
    for seed, scale in ((3, 1.0), (4, 1.15)):
        n, level, seen = _raw_sequential(seed, dist, scale, plan)
        rng = np.random.default_rng(seed)
        settings = UntilDecided(100, 20_000)
        looks = Looks(settings, DEFAULT_POLICY)
        b, c = CohortStats(flow="sim"), CohortStats(flow="sim")
        for look in range(1, settings.plan.looks + 1):
            grow(b, rng, dist, settings.batch(look))
            grow(c, rng, dist, settings.batch(look), scale)
            verdict = looks.look(b, c, 0.0)
            if decided(verdict):
                break
        assert (b.sessions, verdict.overall, looks.taken) == (n, level, len(seen)), seen
        section = looks.section(verdict, "decided", {"legacy": b.sessions, "canonical": c.sessions})
        at = [m["decided_at_sessions"] for m in section["metrics"] if m["critical"]]
        assert all(a is not None and a <= b.sessions for a in at), section
    assert level == "RED" and n <= 12_800  # the regression, as the simulation in tests/test_compare.py finds


def test_batches_stop_at_the_cap() -> None:
    s = UntilDecided(look_every=300, max_sessions=1000)
    assert s.plan.sizes == (300, 600, 1000) and [s.batch(k) for k in range(1, 4)] == [300, 300, 400]
    with pytest.raises(ValueError):
        UntilDecided(look_every=0)


def test_each_poisson_batch_draws_its_own_arrivals() -> None:
    """Batches are separate measurements: with Poisson arrivals each must get its own stream, or
    every batch would repeat the first one's gaps."""
    from sseprobe._api import _batch_load

    plan = plan_from(
        None,
        {
            "canonical_url": "http://127.0.0.1:9",
            "legacy_url": "http://127.0.0.1:9",
            "until_decided": True,
            "rate": 50.0,
            "poisson": True,
            "look_every": 100,
        },
        "compare",
    )
    assert plan.until_decided is not None and plan.load.schedule is not None
    firsts = []
    for look in (1, 2, 3):
        schedule = _batch_load(plan, plan.until_decided, look, None).schedule
        assert schedule is not None and schedule.poisson
        arrivals = schedule.arrivals()
        firsts.append(tuple(next(arrivals) for _ in range(5)))
    assert len(set(firsts)) == 3, firsts


def test_time_to_decide_at_each_rollout_step() -> None:
    rng = np.random.default_rng(5)
    dist = list(DISTRIBUTIONS)[0]
    b, c = grow(CohortStats(flow="sim"), rng, dist, 800), grow(CohortStats(flow="sim"), rng, dist, 800)
    looks = Looks(UntilDecided(100, 2000), DEFAULT_POLICY)
    verdict = looks.look(b, c, 0.0)  # look 1: never GREEN, so undecided with sessions_needed
    assert not decided(verdict)
    ttd = time_to_decide(verdict, False, traffic_rate=50.0, own_rate=400.0)
    assert ttd is not None and ttd["traffic_source"] == "--traffic-rate" and ttd["basis"] == "sessions_needed"
    need = ttd["sessions_per_cohort"]
    seconds = {s["canary_share"]: s["seconds"] for s in ttd["steps"]}
    assert seconds[0.05] == pytest.approx(need / 2.5, abs=0.1) and seconds[0.5] == pytest.approx(need / 25, abs=0.1)
    own = time_to_decide(verdict, True, None, 400.0)
    assert own is not None and own["sessions_per_cohort"] == 800 and own["traffic_source"] == "this run"
    text = render_sequential({"sequential": looks.section(verdict, "max_sessions", {"c": 800}), "time_to_decide": own})
    assert "stopped undecided at --max-sessions after 1 look(s)" in text and "this run's own rate" in text
    assert Counter(line.strip().split(":")[0] for line in text.splitlines() if "canary" in line) == Counter(
        {"5 % canary": 1, "25 % canary": 1, "50 % canary": 1}
    )
    assert time_to_decide(verdict, False, None, None) is None  # no rate: nothing to project


def test_monitor_config_reaches_the_sequential_mode(tmp_path: Path) -> None:
    """The monitor's keys go through plan_from like the flags: one probe, batches of 20 up to 40."""
    from sseprobe.ops.monitor import load_monitor_config, measure, monitor_plan

    with target_process("--canonical-ttfe-ms", "40", "--legacy-ttfe-ms", "40") as url:
        cfg_path = tmp_path / "monitor.toml"
        cfg_path.write_text(
            f'url = "{url}"\nconcurrency = 4\nuntil_decided = true\nlook_every = 20\nmax_sessions = 40\n'
            "max_duration_s = 120\ntraffic_rate = 10\n"
        )
        cfg = load_monitor_config(cfg_path)
        assert (cfg.until_decided, cfg.look_every, cfg.max_sessions, cfg.max_duration_s) == (True, 20, 40, 120.0)
        result = measure(monitor_plan(cfg, tmp_path / "pass.json"))
    assert result.doc is not None, result.error
    seq = _sequential(result.doc)
    assert seq["looks"] == 2 and seq["sessions"] == {"canonical": 40, "legacy": 40} and seq["stopped"] == "max_sessions"
    ttd = result.doc["verdict"]["time_to_decide"]
    assert ttd is not None and ttd["traffic_source"] == "--traffic-rate"
    bad = tmp_path / "bad.toml"
    bad.write_text(f'url = "{url}"\nuntil_decided = "yes"\n')
    with pytest.raises(ValueError, match="until_decided"):
        load_monitor_config(bad)


def test_a_look_stopped_by_the_generator_does_not_say_decided() -> None:
    """#24.20: INCONCLUSIVE left so by a saturated generator is no "(decided)"."""
    import io
    from types import SimpleNamespace

    from sseprobe._api import _say_look

    out = io.StringIO()
    metric = SimpleNamespace(name="ttfe_p50", critical=True, level="INCONCLUSIVE", generator_bound=True)
    verdict = SimpleNamespace(overall="INCONCLUSIVE", metrics=[metric])
    merged = SimpleNamespace(
        cohorts={"legacy": SimpleNamespace(attempts=500), "canonical": SimpleNamespace(attempts=500)}
    )
    _say_look(SimpleNamespace(options=SimpleNamespace(progress=out)), "plan", 5, merged, verdict)  # type: ignore[arg-type]
    line = out.getvalue().strip()
    assert line.startswith("sseprobe: look 5: 500 sessions per cohort, INCONCLUSIVE") and "(decided)" not in line
    assert "generator is saturated" in line
