"""Shared fixtures: the built-in target in its own process, and the CLI as a user runs it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from testsupport.adk_server import die_with_parent

CLI = [sys.executable, "-m", "sseprobe.cli"]

# A suite started in the background by a non-interactive shell (`python -m pytest &`, nohup) inherits SIGINT
# ignored, and so would every process a test starts here: the tests that interrupt a child with SIGINT need
# it heard, as from a terminal. Seen: a run sent SIGINT 0.5 s after start ran its 30 s and exited 0.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def target_process(*knobs: str) -> Iterator[str]:
    """``sseprobe target`` on 127.0.0.1, port 0; yields its URL; stopped on exit."""
    proc = subprocess.Popen(
        [*CLI, "target", "--port", "0", *knobs],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        preexec_fn=die_with_parent if sys.platform == "linux" else None,  # a killed test run leaves no target
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening on" in line, line
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        proc.terminate()
        proc.wait(10)


def sseprobe(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent if sys.platform == "linux" else None,  # no load outlives a killed test run
    )


class Ran(NamedTuple):
    """What a command run in this process did: named as a subprocess's, unpacked as (code, out, err)."""

    returncode: int
    stdout: str
    stderr: str


def in_process(capfd: pytest.CaptureFixture[str], *args: str) -> Ran:
    """The CLI's ``main(argv)`` in this process, with what it printed: (exit code, stdout, stderr). For
    every test that needs no process of its own (signals, start-up): no second of imports per call."""
    from sseprobe.cli import main

    capfd.readouterr()  # drop what came before
    code = main(list(args))
    out, err = capfd.readouterr()
    return Ran(code, out, err)


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis keeps its example database and constants cache (written while collecting) in
    ``.hypothesis/`` under the working directory, the repository, unless told otherwise: here, a
    temporary folder of this test process's own (each xdist worker has one), removed at the end."""
    from hypothesis.configuration import set_hypothesis_home_dir

    folder = tempfile.mkdtemp(prefix="sseprobe-tests-hypothesis-")
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    set_hypothesis_home_dir(folder)


# Tests that one xdist worker runs one after another (node id prefixes): "ray" shares one Ray cluster
# (``ray_cluster`` below: 8-25 s and two CPUs' worth of processes to start); "cpu" are the tests that
# start CPU hogs or measure what this machine's CPU allows (calibrate, verdicts that need an unsaturated
# generator to decide): run beside each other, each would starve the others. A test renamed out of its
# prefix still runs and passes, beside the others.
SERIAL_GROUPS = {
    "ray": ("tests/test_cluster.py::", "tests/test_live_metrics.py::test_cluster_driver_serves_one_merged_endpoint"),
    "cpu": (
        "tests/test_generator_bound.py::test_a_a_beside_three_cpu_hogs",
        "tests/test_generator_bound.py::test_20_percent_beside_three_cpu_hogs",
        "tests/test_generator.py::test_cpu_hogs_beside_a_run",
        "tests/test_calibrate.py::test_calibrate_end_to_end",
        "tests/test_until_decided.py::test_a_a_is_decided_green",
        "tests/test_until_decided.py::test_20_percent_regression_is_decided_red",
        "tests/test_compare_cli.py::test_injected_ttfe_regression",
    ),
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (pyproject's addopts) with SERIAL_GROUPS. xdist's own way, the ``xdist_group``
    mark, renames node ids, which pytest 9.2 no longer lets it do (xdist 3.8): the groups are named here,
    where xdist's controller decides, from node ids alone. Every other test is a unit of its own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]

    class SerialGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            group = next((name for name, tests in SERIAL_GROUPS.items() if nodeid.startswith(tests)), None)
            return group or super()._split_scope(nodeid)

    return SerialGroups(config, log)


@pytest.fixture(autouse=True, scope="session")
def _no_real_calibration(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Runs look for a stored calibration before starting: never the real home's, in any test."""
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "SSEPROBE_CALIBRATION")}
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    os.environ.pop("SSEPROBE_CALIBRATION", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"


def _listing(folder: Path) -> set[str]:
    try:
        return {p.name for p in folder.iterdir()}
    except OSError:
        return set()


@pytest.fixture(autouse=True)
def _writes_only_under_tmp_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests write only under their own tmp_path: a test that leaves a file in the repository (its top
    folder or results/, where a command run without --out writes its default results/<command>-<time>.json)
    or in the working directory fails, by name, and the file is removed (a folder is named only). Under
    xdist the other workers' tests run meanwhile: one of them may be the writer (``-n 0`` names it alone)."""
    folders = {REPO, RESULTS, Path.cwd(), Path.cwd() / "results"}
    before = {f: _listing(f) for f in folders}
    yield
    # the repository's top folder: not its hidden entries, the caches of tools run beside the suite
    left = sorted(str(f / n) for f in folders for n in _listing(f) - before[f] if f != REPO or not n.startswith("."))
    for name in left:
        if not Path(name).is_dir():
            Path(name).unlink(missing_ok=True)
    if left:
        also = (
            " (or a test of another xdist worker, running meanwhile)" if os.environ.get("PYTEST_XDIST_WORKER") else ""
        )
        pytest.fail(f"{request.node.nodeid}{also} left files outside its tmp_path: {', '.join(left)}", pytrace=False)


def _signal_state() -> tuple[object, ...]:
    """What a process started now inherits of this one's signals: the dispositions of the stop signals
    (an ignored SIGINT stays ignored in a child) and the main thread's blocked set."""
    return (
        *(signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)),
        signal.pthread_sigmask(signal.SIG_BLOCK, []),
    )


@pytest.fixture(autouse=True)
def _leaves_signals_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test (and the library calls it makes in this process) leaves the signal handlers and the blocked
    set as it found them: a library call never changes the whole process, and a later test's child would
    inherit the change (a SIGINT it could not hear). Only the main thread's view is checked."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = _signal_state()
    yield
    after = _signal_state()
    if after != before:
        signal.pthread_sigmask(signal.SIG_SETMASK, before[2])  # type: ignore[arg-type]
        for sig, handler in zip((signal.SIGINT, signal.SIGTERM), before[:2], strict=True):
            signal.signal(sig, handler)  # type: ignore[arg-type]
        pytest.fail(f"{request.node.nodeid} changed this process's signals: {before} -> {after}", pytrace=False)


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with target_process(
        "--canonical-ttfe-ms", "40", "--legacy-ttfe-ms", "40", "--canonical-gap-ms", "5", "--legacy-gap-ms", "5"
    ) as url:
        yield url


@pytest.fixture(scope="session")
def adk_server() -> Iterator[str]:
    """A real ``adk api_server`` serving the scripted agent (testsupport/adk_agents), one for the whole
    test session (it takes seconds to start); stopped when the session ends."""
    from testsupport.adk_server import adk_api_server  # late: only the tests that use it pay for it

    with adk_api_server() as url:
        yield url


# Both cohorts at BASE_MS with a narrow spread and short streams: large enough that what a busy machine
# adds to both cohorts alike (tens of ms of late wake-ups) does not dilute an injected relative change
# below the YELLOW threshold (the tests of compare).
BASE_MS = 300.0
AB_KNOBS = (
    "--legacy-ttfe-ms",
    str(BASE_MS),
    "--legacy-ttfe-spread",
    "0.1",
    "--canonical-ttfe-spread",
    "0.1",
    "--legacy-gap-ms",
    "1",
    "--canonical-gap-ms",
    "1",
    "--legacy-events",
    "2",
    "--canonical-events",
    "2",
)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[tuple[str, str]]:
    """Two Ray nodes (one CPU each) on this machine, no dashboard, a Ray Client server on the head, for
    the whole session (of this xdist worker: the tests that use it are in xdist_group "ray", so one
    worker starts it): (GCS address, ray:// address)."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[test]')")
    from ray.cluster_utils import Cluster

    with socket.socket() as s:  # a free port for the client server (Ray takes no port 0 for it)
        s.bind(("127.0.0.1", 0))
        client_port = s.getsockname()[1]
    small = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}
    head = {**small, "include_dashboard": False, "ray_client_server_port": client_port}
    # starting Ray leaves SIGINT ignored and its own SIGTERM handler in this process, and every process a
    # later test starts here would inherit the ignored SIGINT (a Ctrl-C it could not hear): put back
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        cluster.add_node(**small)  # type: ignore[arg-type]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        _put_back(handlers)
        yield cluster.address, f"ray://127.0.0.1:{client_port}"
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]
        _put_back(handlers)


def _put_back(handlers: dict[signal.Signals, Any]) -> None:
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


@pytest.fixture(scope="session")
def ray_address(ray_cluster: tuple[str, str]) -> str:
    return ray_cluster[0]
