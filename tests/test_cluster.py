"""Runs on Ray (--cluster): the fork runner's totals, caps and triggers on the whole cluster, SIGTERM and
SIGINT, load that never outlives its driver, losses that are never silent, no secret in Ray's records.

One Ray cluster of two nodes (conftest's ``ray_cluster``) serves the whole test session: starting one
takes 8-25 s here. In-process runs reuse it (this process is connected, so ``local:2`` does not start
another); CLI subprocesses join it with ``--cluster auto`` and RAY_ADDRESS.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from sseprobe._config import FlowOptions, Limits, Timeouts
from sseprobe._redact import redact_argv
from sseprobe.cli import main
from sseprobe.load.actor import LateStart, ShareActor
from sseprobe.load.cluster import INSTALL_HINT, best_probe, clock_offset, parse_cluster
from sseprobe.load.engine import CohortSpec, Load
from sseprobe.load.merge import share_load
from sseprobe.load.pacer import Phase, Schedule
from sseprobe.load.runner import RunOptions

from .conftest import CLI, in_process, sseprobe, target_process

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cret-t0ken-4242"


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


def test_best_probe_keeps_the_shortest_round_trip() -> None:
    slow = (0.0, 3.5, 3.5, 1.0)  # 1 s round trip: offset known only to +-0.5 s
    fast = (2.0, 5.002, 5.002, 2.004)  # 4 ms round trip
    assert best_probe([slow, fast]) == pytest.approx((3.0, 0.004))


@pytest.mark.parametrize("value", ["local:0", "local:x", "ray://", "ray://host", "kube", "ray://u:secret@h:x"])
def test_bad_cluster_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_cluster(value)
    assert "secret" not in str(exc.value)


def test_contradictory_or_bad_cluster_flags_are_one_line_exit_3(capfd: pytest.CaptureFixture[str]) -> None:
    base = ["run", "--flow", "canonical", "--url", "http://127.0.0.1:9", "-n", "1"]
    code, out, err = in_process(capfd, *base, "--cluster", "local:2", "--workers", "3")
    assert (code, out, err.count("\n")) == (3, "", 1) and "--workers-per-node" in err, err
    code, out, err = in_process(capfd, *base, "--cluster", "kube")
    assert (code, out, err.count("\n")) == (3, "", 1) and "--cluster" in err, err


def test_without_ray_cluster_says_how_to_install(tmp_path: Path) -> None:
    (tmp_path / "ray.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    r = sseprobe("run", "--flow", "canonical", "--url", "http://127.0.0.1:9", "--cluster", "local:2", env=env)
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and INSTALL_HINT in r.stderr


def test_shares_add_up_to_the_load_asked_for() -> None:
    closed = Load(sessions=41, concurrency=7)
    parts = [share_load(closed, i, 3) for i in range(3)]
    assert sum(p.sessions or 0 for p in parts) == 41 and sum(p.concurrency for p in parts) == 7
    opened = Load(duration=5, schedule=Schedule((Phase(5.0, 10.0, 10.0),)), max_in_flight=5)
    assert sum(share_load(opened, i, 2).max_in_flight for i in range(2)) == 5  # not 2 + 2


def test_command_lines_lose_their_secrets_before_anyone_records_them() -> None:
    argv = ["sseprobe", "run", "-H", f"Authorization: Bearer {SECRET}", "--url", f"http://u:{SECRET}@h:1/?token=x"]
    argv += [f"--header=X-Key: {SECRET}", f"-HCookie: {SECRET}", "--body", SECRET, "--cluster", "auto"]
    kept = redact_argv(argv)
    assert SECRET not in " ".join(kept)
    assert kept[:4] == ["sseprobe", "run", "-H", "Authorization: REDACTED"] and kept[-2:] == ["--cluster", "auto"]


def test_an_actor_that_refused_late_counts_in_the_start_spread(target: str) -> None:
    """The driver's merge (no Ray needed): one share ran (0.5 ms late), one refused 2.55 s late."""
    from sseprobe.load.cluster import ClusterOptions, _Follow, _merge, _Share
    from sseprobe.load.ray_session import Joined
    from sseprobe.load.runner import measure_share, share_payload

    cohorts = [CohortSpec("canonical", FlowOptions(flow="canonical", url=target))]
    load = Load(sessions=10, concurrency=2)
    payload = share_payload(measure_share(0, 2, cohorts, load, Timeouts(), Limits(), RunOptions(), ((), ()), None))
    ran = _Share(0, None, "a" * 16, "10.0.0.1:40001", share_load(load, 0, 2), result={**payload, "cpu_s": 0.1})
    ran.skew_ms = 0.5
    late = _Share(1, None, "b" * 16, "10.0.0.1:40002", share_load(load, 1, 2), skew_ms=2550.0)
    late.lost = "failed (LateStart: reached the common start 2.55 s late: refused, out of step with the others)"
    follow = _Follow(shares=[ran, late], losses=[late])
    m = _merge(cohorts, follow, ClusterOptions("auto", None, "continue"), Joined("auto", "10.0.0.1:6379", False))
    assert m.generator["cluster"]["start_spread_ms"] == pytest.approx(2549.5)
    assert [n["node"] for n in m.generator["nodes"]] == ["10.0.0.1:40001", "10.0.0.1:40002"]
    assert "1 of 2 actors lost" in m.generator["below_target"] and "LateStart" in m.worker_errors[0]


# --- the RayJob manifest, as KubeRay runs it -------------------------------------------------------


def _kuberay(entrypoint: str, submitter_env: dict[str, str], head_env: dict[str, str]) -> subprocess.Popen[str]:
    """What KubeRay and Ray do with the manifest's entrypoint: the submitter pod runs ``ray job submit
    -- <entrypoint>`` through ``bash -ce`` (its own environment), Ray's CLI joins the words it got with
    shlex.join, and the job supervisor on the head runs that string with ``shell=True`` (the head's
    environment), logs and exit code its own. ``ray job submit`` itself needs the dashboard: here the
    same shlex.join prints the string it would submit."""
    join = f"{shlex.quote(sys.executable)} -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))'"
    submitted = subprocess.run(
        ["bash", "-ce", f"{join} {entrypoint}"], env=submitter_env, capture_output=True, text=True, check=True
    ).stdout.strip()
    return subprocess.Popen(
        submitted.replace("/home/ray/sseprobe", str(REPO)),  # the image's copy of the repo is this one
        shell=True,
        env=head_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _manifest() -> dict[str, Any]:
    return yaml.safe_load((REPO / "deploy" / "rayjob.yaml").read_text())


def test_rayjob_entrypoint_without_its_target_fails_the_job_in_one_line(tmp_path: Path) -> None:
    spec = _manifest()["spec"]
    base = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    proc = _kuberay(spec["entrypoint"], base, base)  # no TARGET_URL on the head: said, and a failed job
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and out == "" and "TARGET_URL" in err and err.count("\n") == 1, err


def test_rayjob_entrypoint_runs_on_the_head_with_its_env(ray_address: str, tmp_path: Path) -> None:
    """The manifest's entrypoint through the submitter's ``bash -ce`` (no TARGET_URL there), then on the
    head with the head's env: the document in the job's logs and at SSEPROBE_OUT, the exit code sseprobe's."""
    spec = _manifest()["spec"]
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {e["name"] for e in head["env"]} >= {"TARGET_URL"}
    short = tmp_path / "short.toml"  # the shipped scenario runs 6.5 min: the same cohorts, 3 s at 10/s each
    text = (REPO / "scenarios" / "staging-load.toml").read_text()
    cohorts = text[text.index("[cohorts.canonical]") :]
    short.write_text(f"[load]\nrate = 10\nduration_s = 3\ngrace_s = 5\n\n{cohorts}")
    submitter = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    with target_process("--canonical-ttfe-ms", "20", "--legacy-ttfe-ms", "20") as url:
        head_env = {
            **submitter,
            "PYTHONPATH": str(REPO),
            "TARGET_URL": url,
            "RAY_ADDRESS": ray_address,
            "SSEPROBE_SCENARIO": str(short),
            "SSEPROBE_OUT": str(tmp_path / "out.json"),
        }
        proc = _kuberay(spec["entrypoint"], submitter, head_env)
        out, err = proc.communicate(timeout=120)
    doc = json.loads(out)  # the job's logs: the document, whole
    assert doc == json.loads((tmp_path / "out.json").read_text())
    assert doc["config"]["cohorts"]["canonical"]["url"] == url  # expanded on the head, not in the submitter
    assert doc["generator"]["cluster"]["joined"] == ray_address and doc["generator"]["cluster"]["actors"] == 2
    codes = {"GREEN": 0, "YELLOW": 1, "RED": 2, "INCONCLUSIVE": 3}
    assert proc.returncode == (3 if doc["interrupted"] else codes[doc["verdict"]["overall"]]), err
    assert "Traceback" not in err


# --- on Ray: in this process ----------------------------------------------------------------------


def _doc(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_two_nodes_give_the_totals_and_percentiles_of_workers_2(
    ray_address: str, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fork_out, ray_out = tmp_path / "fork.json", tmp_path / "ray.json"
    common = ["run", "--flow", "canonical", "--url", target, "-n", "400", "-c", "8", "-q"]
    r = sseprobe(*common, "--workers", "2", "--out", str(fork_out))
    assert r.returncode == 0, r.stderr
    assert main([*common, "--cluster", "local:2", "--out", str(ray_out)]) == 0, capsys.readouterr().err
    fork, on_ray = _doc(fork_out), _doc(ray_out)
    f, c = fork["cohorts"]["canonical"], on_ray["cohorts"]["canonical"]
    assert c["outcomes"] == f["outcomes"] == {"ok": 400}
    assert c["events"] == f["events"] and c["ttfe_ms"]["count"] == c["completion_ms"]["count"] == 400
    for metric in ("ttfe_ms", "completion_ms"):  # the target's 40 ms TTFE is a floor for both runs; how far
        # above it each run reads is this machine's load at the time (54 vs 42 ms seen beside other tests)
        assert c[metric]["p50"] >= 40 and f[metric]["p50"] >= 40, (c[metric], f[metric])
    assert sum(i["started"] for i in on_ray["intervals"]) == 400
    gen = on_ray["generator"]
    assert gen["cluster"]["actors"] == 2 and on_ray["worker_errors"] == [] and not on_ray["interrupted"]
    a, b = gen["nodes"]  # one actor on each node, each node labelled by its own address and id
    assert a["node"] != b["node"] and a["node_id"] != b["node_id"] and a["actors"] + b["actors"] == [0, 1]
    assert [s["concurrency"] for s in gen["cluster"]["shares"]] == [4, 4]
    assert gen["cluster"]["start_spread_ms"] is not None and abs(gen["cluster"]["start_spread_ms"]) < 1000


def test_caps_and_triggers_hold_on_the_whole_cluster(
    ray_address: str, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = tmp_path / "one.json"  # -c 1: one stream at a time on the whole cluster, so one actor
    assert (
        main(
            ["run", "--flow", "canonical", "--url", target, "-n", "30", "-c", "1", "--cluster", "local:2"]
            + ["-q", "--out", str(one)]
        )
        == 0
    ), capsys.readouterr().err
    shares = _doc(one)["generator"]["cluster"]["shares"]
    assert [(s["sessions"], s["concurrency"]) for s in shares] == [(30, 1)]
    # more than half the sessions 5xx: the merged window holds the trigger, the driver stops every actor
    out = tmp_path / "trig.json"
    with target_process("--canonical-ttfe-ms", "20", "--canonical-p-5xx", "0.6") as url:
        args = ["run", "--flow", "canonical", "--url", url, "--duration", "60", "-c", "4", "--cluster", "local:2"]
        code = main([*args, "--abort-on-trigger", "2", "-q", "--out", str(out)])
    doc = _doc(out)
    assert code == 2, capsys.readouterr().err
    assert doc["interrupted"] and doc["stop_reason"].startswith("rollback trigger held 2s"), doc["stop_reason"]
    assert doc["duration_s"] < 40 and doc["generator"]["cluster"]["actors"] == 2
    capsys.readouterr()


def test_a_late_actor_refuses_to_run_and_says_how_late(ray_address: str, target: str) -> None:
    import ray

    options = {"num_cpus": 1, "max_restarts": 0, "max_task_retries": 0, "max_concurrency": 8}
    actor = ray.remote(**options)(ShareActor).remote()  # type: ignore[call-overload]
    try:
        cohorts = [CohortSpec("canonical", FlowOptions(flow="canonical", url=target))]
        ref = actor.run.remote(
            time.time() - 2.0, 0, 1, cohorts, Load(sessions=5), Timeouts(), Limits(), RunOptions(), True
        )
        with pytest.raises(ray.exceptions.RayTaskError) as exc:
            ray.get(ref, timeout=60)
        assert isinstance(exc.value.cause, LateStart) and (exc.value.cause.late_s or 0.0) > 1.0, exc.value
        again = actor.run.remote(time.time(), 0, 1, cohorts, Load(sessions=5), Timeouts(), Limits(), RunOptions(), True)
        with pytest.raises(ray.exceptions.RayTaskError) as twice:  # an actor is asked once: never a share twice
            ray.get(again, timeout=60)
        assert "already ran" in str(twice.value.cause)
    finally:
        ray.kill(actor)


def test_an_actor_whose_lease_lapses_aborts_its_load(ray_address: str) -> None:
    """The lease alone (Ray may or may not reap an orphaned actor: here it is this test's, alive): renewed
    for 3 s the load runs; unrenewed, it stops within LEASE_S (3 s) plus the abort, and says why."""
    import ray

    options = {"num_cpus": 1, "max_restarts": 0, "max_task_retries": 0, "max_concurrency": 8}
    actor = ray.remote(**options)(ShareActor).remote()  # type: ignore[call-overload]
    try:
        with target_process("--canonical-ttfe-ms", "50", "--canonical-gap-ms", "20") as url:
            cohorts = [CohortSpec("canonical", FlowOptions(flow="canonical", url=url))]
            load = Load(duration=60, concurrency=2)
            ray.get(actor.renew.remote(), timeout=60)  # the actor is up (its process may take seconds to
            # start on a busy machine): a common start 0.5 s from now is not missed by more than 1 s
            ref = actor.run.remote(time.time() + 0.5, 0, 1, cohorts, load, Timeouts(), Limits(), RunOptions(), False)
            renewals = 0  # renewed each second for 4 s at least, and until the load has begun
            while renewals < 4 or _started(url) == 0:
                if ray.wait([ref], timeout=0)[0]:
                    raise AssertionError(f"the share ended before its load began: {ray.get(ref)}")
                time.sleep(1)
                ray.get(actor.renew.remote(), timeout=30)
                renewals += 1
            renewed = time.monotonic()
            last, last_change = _started(url), renewed
            while time.monotonic() - last_change < 3 and time.monotonic() - renewed < 30:
                time.sleep(0.25)
                if (now := _started(url)) != last:
                    last, last_change = now, time.monotonic()
            payload = ray.get(ref, timeout=60)
    finally:
        ray.kill(actor)
    stopped_after = last_change - renewed
    print(f"an unrenewed lease stopped the load {stopped_after:.1f} s after the last renewal")
    assert stopped_after < 8, stopped_after  # LEASE_S 3 s, then the abort; slack for a busy machine
    assert payload["info"].stop_reason.startswith("driver lost: its lease lapsed"), payload["info"]


# --- on Ray: the command line as a process (signals, kills) ---------------------------------------


def _actor_pids() -> set[int]:
    """This session's ShareActor processes: the test's own cluster spawned them (others' never count)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    mine, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, ppid in parent.items() if ppid in mine} - mine
        mine |= more
        grew = bool(more)
    pids = set()
    for pid in mine:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ShareActor"):
                pids.add(pid)
        except OSError:
            continue
    return pids


def _driver(
    ray_address: str, url: str, out: Path, *args: str, as_json: bool = True, cluster: str = "auto"
) -> subprocess.Popen[str]:
    json_flag = ["--json"] if as_json else []
    return subprocess.Popen(
        [*CLI, "run", "--flow", "canonical", "--url", url, "--cluster", cluster, "--out", str(out), *json_flag, *args],
        env={**os.environ, "RAY_ADDRESS": ray_address, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _wait_for_actors(n: int, before: set[int], proc: subprocess.Popen[str]) -> set[int]:
    for _ in range(600):
        mine = _actor_pids() - before
        if len(mine) >= n or proc.poll() is not None:
            break
        time.sleep(0.1)
    if len(mine) < n:
        proc.kill()
        raise AssertionError(f"the run's actors never appeared: {proc.communicate(timeout=30)[1]}")
    return mine


def _started(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_target/stats", timeout=10) as r:
        return int(json.load(r)["canonical"]["started"])


def _wait_started(url: str, n: int, proc: subprocess.Popen[str]) -> None:
    """Until the target has seen ``n`` sessions start: the run's load is under way, however late the
    common start came. A driver that ended first fails the test with what it said."""
    while _started(url) < n:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before its load began: {proc.communicate(timeout=30)[1]}")
        time.sleep(0.1)


def test_sigterm_stops_the_run_keeps_the_document_and_no_secret_reaches_ray(ray_address: str, tmp_path: Path) -> None:
    """SIGINT or SIGTERM while Ray connects, SIGTERM mid-run: exit 3, the document on stdout (and
    nothing else), interrupted; the job table holds the drivers' command lines without the token."""
    import ray

    header = ["-H", f"Authorization: Bearer {SECRET}"]
    with target_process("--canonical-ttfe-ms", "50", "--canonical-gap-ms", "20") as url:
        secret_url = url.replace("http://", f"http://probe:{SECRET}@")
        for sig in (signal.SIGINT, signal.SIGTERM):
            early = _driver(ray_address, secret_url, tmp_path / "early.json", "--duration", "60", "-c", "2")
            assert early.stderr is not None
            assert "joining Ray" in early.stderr.readline()  # said before the 1-20 s it takes
            early.send_signal(sig)
            out, err = early.communicate(timeout=120)
            assert early.returncode == 3 and "Traceback" not in err, err
            assert json.loads(out)["interrupted"] is True, out

        before = _actor_pids()
        late = _driver(ray_address, url, tmp_path / "late.json", "--duration", "60", "-c", "4", *header)
        _wait_for_actors(2, before, late)
        _wait_started(url, 5, late)  # -c 4: a fifth session starts once one has ended, so one is measured
        late.send_signal(signal.SIGTERM)
        out, err = late.communicate(timeout=120)
    assert late.returncode == 3 and "Traceback" not in err, err
    doc = json.loads(out)  # stdout is exactly the document
    assert doc == _doc(tmp_path / "late.json")
    assert doc["interrupted"] is True and doc["stop_reason"] == "interrupted by SIGTERM"
    assert doc["cohorts"]["canonical"]["outcomes"].get("ok", 0) > 0 and doc["worker_errors"] == []
    assert [line for line in err.splitlines() if "stopped early" in line] == [
        "sseprobe: run stopped early: interrupted by SIGTERM"
    ]
    jobs = ray._private.state.jobs()  # type: ignore[no-untyped-call] # the GCS job table: what `ray list jobs` and the dashboard show
    (entry,) = [j["Entrypoint"] for j in jobs if j.get("DriverPid") == late.pid]
    assert "Authorization: REDACTED" in entry and "--cluster auto" in entry, entry
    assert SECRET not in json.dumps(jobs, default=str)  # nor the early one's URL password, if it got that far


def test_load_stops_within_seconds_of_a_killed_driver(ray_cluster: tuple[str, str], tmp_path: Path) -> None:
    """SIGKILL of a Ray Client driver (nothing of it runs again): Ray keeps an orphaned client's actors
    for its reconnect grace (30 s and more; 84 s seen in the field), so only the lease stops them."""
    ray_address, client = ray_cluster
    before = _actor_pids()
    with target_process("--canonical-ttfe-ms", "50", "--canonical-gap-ms", "20") as url:
        for attempt in (1, 2, 3):  # the client server's first connection starts a server process of its own:
            # on a loaded machine that outlasted Ray Client's connect timeout (exit 3, "cannot connect"), twice
            proc = _driver(ray_address, url, tmp_path / "never.json", "--duration", "90", "-c", "4", cluster=client)
            since = time.monotonic()
            while not (_actor_pids() - before) and proc.poll() is None and time.monotonic() - since < 60:
                time.sleep(0.1)
            if proc.poll() is None or attempt == 3 or "cannot connect" not in proc.communicate()[1]:
                break
        try:
            _wait_for_actors(2, before, proc)
            _wait_started(url, 5, proc)  # the load runs (seconds after the actors appear on a busy machine)
            proc.kill()
            killed = time.monotonic()
            last, last_change = _started(url), killed
            while time.monotonic() - last_change < 4 and time.monotonic() - killed < 30:
                time.sleep(0.25)
                if (now := _started(url)) != last:
                    last, last_change = now, time.monotonic()
        finally:
            proc.kill()
            proc.communicate(timeout=30)
            for pid in _actor_pids() - before:  # idle now, but Ray keeps them (and their CPUs) for the grace
                os.kill(pid, signal.SIGKILL)
    stopped_after = last_change - killed
    print(f"load stopped {stopped_after:.1f} s after the driver's SIGKILL")
    assert stopped_after < 8, stopped_after  # the lease: 3 s, then an abort; 3 s of slack for a busy machine


def test_a_lost_actor_is_said_everywhere_and_its_checkpoint_kept(ray_address: str, tmp_path: Path) -> None:
    """--on-node-loss continue: the survivor goes on; the loss is in the summary, on stderr, in the
    document (with the lost actor's sessions and intervals up to its 10 s checkpoint), and exit 3."""
    out = tmp_path / "lost.json"
    before = _actor_pids()
    with target_process("--canonical-ttfe-ms", "50", "--canonical-gap-ms", "20") as url:
        continued = ("--duration", "26", "-c", "4", "--on-node-loss", "continue")
        proc = _driver(ray_address, url, out, *continued, as_json=False)
        try:
            mine = _wait_for_actors(2, before, proc)
            # the first checkpoint is taken 10 s after the common start, which comes seconds after the
            # actors appear on a busy machine: counted from the first session the target saw instead, then
            # 8 s for it to reach the driver (beside CPU hogs 4 s were not always enough) and 8 s before
            # the run ends
            _wait_started(url, 1, proc)
            time.sleep(18)
            os.kill(min(mine), signal.SIGKILL)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 3 and "Traceback" not in stderr, stderr
    assert "lost (ActorDiedError" in stderr and "actors lost: the load ran below its target" in stderr
    assert "LOAD BELOW TARGET: 1 of 2 actors lost" in stdout  # the summary
    assert "(raylet)" not in stdout and "ActorDiedError" not in stdout  # Ray's lines (and ours) went to stderr
    doc = _doc(out)
    assert doc["interrupted"] is False and "1 of 2 actors lost" in doc["generator"]["below_target"]
    (error,) = doc["worker_errors"]
    assert "last checkpoint kept: 1" in error, error
    lost = [n for n in doc["generator"]["nodes"] if n["lost"]]
    assert len(lost) == 1 and lost[0]["node"] in error
    c = doc["cohorts"]["canonical"]
    # the lost actor's intervals up to its checkpoint are kept: they count every session it started by then
    assert sum(i["started"] for i in doc["intervals"]) >= c["sessions"] - 8, (doc["intervals"], c["sessions"])


def test_until_decided_starts_one_ray_for_every_look(ray_address: str, tmp_path: Path) -> None:
    out = tmp_path / "seq.json"
    with target_process("--canonical-ttfe-ms", "20", "--legacy-ttfe-ms", "20") as url:
        args = ["compare", "--canonical", url, "--legacy", url, "--until-decided", "--look-every", "40"]
        r = sseprobe(
            *args,
            "--max-sessions",
            "80",
            "-c",
            "4",
            "--cluster",
            "auto",
            "--out",
            str(out),
            env={"RAY_ADDRESS": ray_address, "PYTHONPATH": str(REPO)},
        )
    assert "Traceback" not in r.stderr and r.returncode in (0, 1, 2, 3), r.stderr
    looks = [line for line in r.stderr.splitlines() if line.startswith("sseprobe: look ")]
    assert len(looks) >= 2, r.stderr
    assert r.stderr.count("joining Ray") == 1, r.stderr
    assert _doc(out)["generator"]["cluster"]["joined"] == ray_address
