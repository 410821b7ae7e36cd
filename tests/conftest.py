"""Shared fixtures: the built-in target in its own process, and the CLI as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from testsupport.adk_server import die_with_parent

CLI = [sys.executable, "-m", "sseprobe.cli"]


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


RESULTS = Path(__file__).resolve().parent.parent / "results"


def _listing(folder: Path) -> set[str]:
    try:
        return {p.name for p in folder.iterdir()}
    except OSError:
        return set()


@pytest.fixture(autouse=True)
def _writes_only_under_tmp_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests write only under their own tmp_path: a test that leaves a file in the repository's
    results/ folder (a command run without --out writes its default results/<command>-<time>.json)
    fails, by name, and the file is removed."""
    folders = {RESULTS, Path.cwd() / "results"}
    before = {f: _listing(f) for f in folders}
    yield
    left = sorted(str(f / name) for f in folders for name in _listing(f) - before[f])
    for name in left:
        Path(name).unlink(missing_ok=True)
    if left:
        pytest.fail(f"{request.node.nodeid} left files outside its tmp_path: {', '.join(left)}", pytrace=False)


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
