"""Runs on Ray (--cluster): the same merged totals as the fork runner, honest failure, synchronized start.

One Ray instance serves the whole test session (it takes seconds to start): the in-process runs reuse
it as ``local:2`` does when Ray is already up here, and CLI subprocesses join it with ``--cluster auto``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sseprobe._config import FlowOptions, Limits, Timeouts
from sseprobe.cli import main
from sseprobe.load.cluster import INSTALL_HINT, LateStart, ShareActor, best_probe, clock_offset, parse_cluster
from sseprobe.load.engine import CohortSpec, Load
from sseprobe.load.runner import RunOptions

from .conftest import CLI, sseprobe, target_process


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """Ray with 2 CPUs on loopback, no dashboard, started once for the session."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[test]')")
    ray.init(
        address="local",  # a new one, whatever cluster this machine may know of
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        _node_ip_address="127.0.0.1",
        object_store_memory=100 * 1024 * 1024,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


# --- without Ray ---------------------------------------------------------------------------------


def test_clock_offset_is_exact_with_symmetric_legs() -> None:
    # the actor's clock is 5 s ahead; each leg takes 40 ms; the actor holds the probe 10 ms
    t0 = 1000.0
    t1 = t0 + 0.040 + 5.0
    t2 = t1 + 0.010
    t3 = t0 + 0.040 + 0.010 + 0.040
    offset, rtt = clock_offset(t0, t1, t2, t3)
    assert offset == pytest.approx(5.0)
    assert rtt == pytest.approx(0.080)


def test_clock_offset_error_is_half_the_leg_asymmetry() -> None:
    t0 = 50.0
    t1 = t0 + 0.010 - 2.0  # actor 2 s behind; out 10 ms, back 30 ms
    t2 = t1
    t3 = t0 + 0.040
    offset, rtt = clock_offset(t0, t1, t2, t3)
    assert offset == pytest.approx(-2.0 + (0.010 - 0.030) / 2)
    assert rtt == pytest.approx(0.040)


def test_best_probe_keeps_the_shortest_round_trip() -> None:
    slow = (0.0, 3.5, 3.5, 1.0)  # 1 s round trip: offset known only to +-0.5 s
    fast = (2.0, 5.002, 5.002, 2.004)  # 4 ms round trip
    assert best_probe([slow, fast]) == pytest.approx((3.0, 0.004))


@pytest.mark.parametrize("value", ["local:0", "local:x", "ray://", "ray://host", "kube", "ray://u:secret@h:x"])
def test_bad_cluster_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_cluster(value)
    assert "secret" not in str(exc.value)


def test_bad_cluster_flag_is_one_line_exit_3() -> None:
    r = sseprobe("run", "--flow", "canonical", "--url", "http://127.0.0.1:9", "--cluster", "kube")
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "--cluster" in r.stderr


def test_without_ray_cluster_says_how_to_install(tmp_path: Path) -> None:
    (tmp_path / "ray.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = {"PYTHONPATH": str(tmp_path)}
    r = sseprobe("run", "--flow", "canonical", "--url", "http://127.0.0.1:9", "--cluster", "local:2", env=env)
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and INSTALL_HINT in r.stderr
    plain = sseprobe("run", "--flow", "canonical", "--url", "http://127.0.0.1:9", "-n", "1", "--workers", "1", env=env)
    assert "ray" not in plain.stderr.lower()  # the fork runner never needs it


# --- on Ray --------------------------------------------------------------------------------------


def _doc(path: Path) -> dict:
    return json.loads(path.read_text())


def test_local_2_gives_the_totals_and_percentiles_of_workers_2(
    ray_address: str, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fork_out, ray_out = tmp_path / "fork.json", tmp_path / "ray.json"
    common = ["run", "--flow", "canonical", "--url", target, "-n", "600", "-c", "8"]
    r = sseprobe(*common, "--workers", "2", "--out", str(fork_out))
    assert r.returncode == 0, r.stderr
    assert main([*common, "--cluster", "local:2", "--out", str(ray_out)]) == 0, capsys.readouterr().err
    fork, on_ray = _doc(fork_out), _doc(ray_out)
    f, c = fork["cohorts"]["canonical"], on_ray["cohorts"]["canonical"]
    assert c["outcomes"] == f["outcomes"] == {"ok": 600}
    assert c["events"] == f["events"] and c["attempts"] == f["attempts"] == 600
    assert c["ttfe_ms"]["count"] == c["completion_ms"]["count"] == 600  # both shares' histograms, all of them
    for metric in ("ttfe_ms", "completion_ms"):  # target: 40 ms TTFE; the same service, the same medians
        assert c[metric]["p50"] == pytest.approx(f[metric]["p50"], rel=0.25)
    assert sum(i["started"] for i in on_ray["intervals"]) == 600
    gen = on_ray["generator"]
    assert gen["cluster"]["actors"] == 2 and on_ray["worker_errors"] == [] and not on_ray["interrupted"]
    (node,) = gen["nodes"]
    assert node["actors"] == [0, 1] and node["lost"] == []
    assert node["round_trip_ms"] > 0 and node["start_skew_ms"] is not None
    assert abs(node["start_skew_ms"]) < 1000  # a share more than a second late would have refused


def test_a_late_actor_refuses_to_run(ray_address: str, target: str) -> None:
    import ray

    actor = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0, max_concurrency=4)(ShareActor).remote()
    try:
        cohorts = [CohortSpec("canonical", FlowOptions(flow="canonical", url=target))]
        late_start = time.time() - 2.0
        ref = actor.run.remote(late_start, 0, 1, cohorts, Load(sessions=50), Timeouts(), Limits(), RunOptions(), True)
        with pytest.raises(ray.exceptions.RayTaskError) as exc:
            ray.get(ref, timeout=60)
        assert isinstance(exc.value.cause, LateStart) and "late" in str(exc.value.cause), exc.value
        assert ray.get(actor.poll.remote(0), timeout=60) == {"progress": None, "checkpoint_seq": 0, "checkpoint": None}
        on_time = actor.run.remote(
            time.time(), 0, 1, cohorts, Load(sessions=5), Timeouts(), Limits(), RunOptions(), True
        )
        with pytest.raises(ray.exceptions.RayTaskError) as again:  # an actor is asked once: never a share twice
            ray.get(on_time, timeout=60)
        assert isinstance(again.value.cause, LateStart) and "already ran" in str(again.value.cause)
    finally:
        ray.kill(actor)


def _actor_pids() -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::ShareActor"):
                pids.add(int(entry))
    return pids


def _run_and_kill_one(
    ray_address: str, out: Path, duration: str, kill_after: float, *extra: str, driver: bool = False
) -> tuple[int, str]:
    """A CLI run joining the session's Ray (two actors); ``kill_after`` s after both exist, one actor is
    SIGKILLed (or, with ``driver``, the command itself gets a SIGINT)."""
    before = _actor_pids()
    with target_process("--canonical-ttfe-ms", "50", "--canonical-gap-ms", "20", "--canonical-events", "5") as url:
        proc = subprocess.Popen(
            [*CLI, "run", "--flow", "canonical", "--url", url, "--duration", duration, "-c", "4"]
            + ["--cluster", "auto", "--out", str(out), *extra],
            env={**os.environ, "RAY_ADDRESS": ray_address},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            for _ in range(600):
                mine = _actor_pids() - before
                if len(mine) == 2:
                    break
                time.sleep(0.1)
            assert len(mine) == 2, "the run's two actors never appeared"
            time.sleep(kill_after)
            if driver:
                proc.send_signal(signal.SIGINT)
            else:
                os.kill(min(mine), signal.SIGKILL)
            _, stderr = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert "Traceback" not in stderr
    return proc.returncode, stderr


def test_killed_actor_is_recorded_survivor_kept_exit_3(ray_address: str, tmp_path: Path) -> None:
    out = tmp_path / "killed.json"
    code, stderr = _run_and_kill_one(ray_address, out, "60", 16)  # the first checkpoint: 10 s into the run
    assert code == 3, stderr
    assert "lost (ActorDiedError" in stderr and "stopping the rest" in stderr
    doc = _doc(out)
    assert doc["interrupted"] is True and "lost" in doc["stop_reason"]
    (error,) = doc["worker_errors"]
    (node,) = doc["generator"]["nodes"]
    (lost,) = node["lost"]
    assert f"actor {lost} lost (ActorDiedError" in error and "last checkpoint kept: 1" in error, error
    c = doc["cohorts"]["canonical"]
    assert c["outcomes"].get("ok", 0) > 0
    # intervals come from the survivor alone; the sessions also hold the lost actor's checkpoint
    survivor_started = sum(i["started"] for i in doc["intervals"])
    assert c["sessions"] > survivor_started > 0, (c["sessions"], survivor_started)


def test_on_node_loss_continue_flags_the_load_below_target(ray_address: str, tmp_path: Path) -> None:
    out = tmp_path / "continued.json"
    code, stderr = _run_and_kill_one(ray_address, out, "6", 2, "--on-node-loss", "continue")
    assert code == 0, stderr
    doc = _doc(out)
    assert doc["interrupted"] is False and "1 of 2 actors lost" in doc["generator"]["below_target"]
    (error,) = doc["worker_errors"]
    assert "lost (ActorDiedError" in error and "no checkpoint to keep" in error, error
    assert doc["cohorts"]["canonical"]["outcomes"].get("ok", 0) > 0


def test_sigint_on_the_driver_stops_every_actor_and_keeps_their_data(ray_address: str, tmp_path: Path) -> None:
    out = tmp_path / "interrupted.json"
    code, stderr = _run_and_kill_one(ray_address, out, "60", 3, "--grace", "2", driver=True)
    assert code == 3, stderr
    doc = _doc(out)
    assert doc["interrupted"] is True and doc["stop_reason"] == "interrupted by SIGINT"
    assert doc["worker_errors"] == [] and doc["generator"]["nodes"][0]["lost"] == []
    c = doc["cohorts"]["canonical"]
    assert c["outcomes"].get("ok", 0) > 0 and sum(i["started"] for i in doc["intervals"]) == c["sessions"]


@pytest.mark.parametrize(("slower", "verdict", "code"), [(0.0, "GREEN", 0), (20.0, "RED", 2)])
def test_compare_on_local_2_gives_the_fork_runners_verdicts(
    ray_address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], slower: float, verdict: str, code: int
) -> None:
    """The injected-regression cases of test_compare_cli, on actors instead of forked workers."""
    base = 100.0
    knobs = ["--legacy-ttfe-ms", str(base), "--canonical-ttfe-ms", str(base * (1 + slower / 100))]
    for side in ("legacy", "canonical"):
        knobs += [f"--{side}-ttfe-spread", "0.1", f"--{side}-gap-ms", "1", f"--{side}-events", "2"]
    out = tmp_path / "cmp.json"
    with target_process(*knobs) as url:
        args = ["compare", "--canonical", url, "--legacy", url, "-n", "1500", "-c", "16", "--cluster", "local:2"]
        rc = main([*args, "--out", str(out)])
    doc = _doc(out)
    if rc != code and doc["generator"]["saturated"]:  # as in test_compare_cli: the generator's lag could explain it
        bound = {m["name"] for m in doc["verdict"]["metrics"] if m.get("generator_bound")}
        assert "ttfe_p95_ms" in bound and rc in ({3} if slower == 0 else {1, 3}), doc["verdict"]
    else:
        assert (rc, doc["verdict"]["overall"]) == (code, verdict), (doc["generator"], doc["verdict"])
    assert doc["cohorts"]["canonical"]["sessions"] == doc["cohorts"]["legacy"]["sessions"] == 1500
    assert doc["generator"]["cluster"]["actors"] == 2
    capsys.readouterr()
