"""Hostile input and injected faults: one line on stderr, the documented exit code, no traceback,
nothing but the intended outputs written, measured sessions kept.

Most cases run in-process (``sseprobe.cli.main``) so the table stays fast; signals, open-file limits
and the worker processes need a real process.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

import sseprobe._api
import sseprobe.cli._compare
import sseprobe.cli._monitor
import sseprobe.cli._report
import sseprobe.cli._run
import sseprobe.report.document
from sseprobe._outcomes import ProtocolError
from sseprobe.cli import main
from sseprobe.cli._run import held_signals
from sseprobe.report.document import dumps
from sseprobe.wire.http import LeanClient

from .conftest import CLI, Ran, in_process, target_process
from .report_docs import partial_generator, results_doc
from .servers import thread_server

DEAD = "http://127.0.0.1:9"  # never contacted: every case below is refused before any load
RUN = ["run", "--flow", "canonical", "--url", DEAD, "-w", "1"]
COMPARE = ["compare", "--canonical", DEAD, "--legacy", DEAD, "-w", "1"]


def _monitor(folder: Path, line: str) -> list[str]:
    path = folder / "m.toml"
    path.write_text(f'url = "{DEAD}"\nhistory = "{folder / "h.sqlite"}"\n{line}\n')
    return ["monitor", "--config", str(path)]


def _doc_file(folder: Path, name: str, edit: Callable[[dict[str, Any]], None] | None = None) -> str:
    doc: Any = results_doc(seed=len(name))  # edited by hand
    if edit is not None:
        edit(doc)
    path = folder / name
    path.write_bytes(dumps(doc))
    return str(path)


def _not_zlib(doc: dict[str, Any]) -> None:
    doc["cohorts"]["canonical"]["histograms"]["ttfe_us"] = base64.b64encode(b"valid base64, not zlib").decode()


def _edit(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        d = doc
        for key in path[:-1]:
            d = d[key]
        if value is _DELETE:
            del d[path[-1]]
        else:
            d[path[-1]] = value

    return edit


_DELETE = object()
CANON = ("cohorts", "canonical")


def _scenario(folder: Path, text: str, bom: bool = False) -> str:
    path = folder / "sc.toml"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return str(path)


def _fifo(folder: Path) -> str:
    path = folder / "fifo"
    os.mkfifo(path)
    return str(path)


def _symlink(folder: Path) -> str:
    (folder / "real.json").write_text("{}")
    (folder / "link.json").symlink_to(folder / "real.json")
    return str(folder / "link.json")


def _under_a_file(folder: Path) -> str:
    (folder / "plain").write_text("x")
    return str(folder / "plain" / "out.json")


# (id, argv built in tmp_path, what stderr must say)
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("huge sessions", lambda t: [*RUN, "-n", "99999999999999999999999", "-d", "2"], "--sessions"),
    ("rate inf", lambda t: [*RUN, "--rate", "inf", "-d", "2"], "--rate"),
    ("rate nan", lambda t: [*RUN, "--rate", "nan", "-d", "2"], "--rate"),
    ("rate 0", lambda t: [*RUN, "--rate", "0", "-d", "2"], "--rate"),
    ("negative duration", lambda t: [*RUN, "-d", "-1"], "--duration"),
    ("concurrency 0", lambda t: [*RUN, "-c", "0"], "--concurrency"),
    ("negative think", lambda t: [*RUN, "--think", "-1"], "--think"),
    ("workers 0", lambda t: [*RUN, "-w", "0"], "--workers"),
    ("workers 100000", lambda t: [*RUN, "-w", "100000"], "--workers"),
    ("connect timeout inf", lambda t: [*RUN, "--connect-timeout", "inf"], "--connect-timeout"),
    ("max in flight 0", lambda t: [*RUN, "--rate", "5", "-d", "1", "--max-in-flight", "0"], "--max-in-flight"),
    ("grace nan", lambda t: [*RUN, "--grace", "nan"], "--grace"),
    ("max line 0", lambda t: [*RUN, "--max-line", "0"], "--max-line"),
    ("connections -1", lambda t: [*RUN, "--connections", "-1"], "--connections"),
    ("abort 0", lambda t: [*RUN, "--abort-on-trigger", "0"], "--abort-on-trigger"),
    ("concurrency with rate", lambda t: [*RUN, "--rate", "5", "-d", "2", "-c", "4"], "closed model"),
    ("think with rate", lambda t: [*RUN, "--rate", "5", "-d", "2", "--think", "1"], "closed model"),
    ("port 0", lambda t: ["run", "--flow", "canonical", "--url", "http://127.0.0.1:0"], "port 0"),
    ("port too big", lambda t: ["run", "--flow", "canonical", "--url", "http://127.0.0.1:99999"], "not an http"),
    ("ftp url", lambda t: ["run", "--flow", "canonical", "--url", "ftp://127.0.0.1/x"], "not an http"),
    ("header CR LF", lambda t: [*RUN, "-H", "X: a\r\nY: 1"], "line break"),
    ("header LF only", lambda t: [*RUN, "-H", "X: a\nY: 1"], "line break"),
    ("header name space", lambda t: [*RUN, "-H", "Bad Name: 1"], "not an HTTP token"),
    ("header no colon", lambda t: [*RUN, "-H", "novalue"], "--header"),
    ("method with space", lambda t: ["run", "--flow", "generic", "--url", DEAD, "--method", "GE T"], "--method"),
    ("method CR", lambda t: ["run", "--flow", "generic", "--url", DEAD, "--method", "GET\r\n"], "--method"),
    ("bearer env unset", lambda t: [*RUN, "--bearer-env", "SSEPROBE_SURELY_UNSET_VAR"], "SSEPROBE_SURELY_UNSET_VAR"),
    ("body file missing", lambda t: ["run", "--flow", "generic", "--url", DEAD, "--body-file", str(t / "no")], "body"),
    ("policy binary", lambda t: [*RUN, "--policy", _binary(t)], "policy"),
    ("scenario missing", lambda t: [*RUN, "--scenario", str(t / "none.toml")], "none.toml"),
    (
        "scenario negative rate",
        lambda t: [*RUN, "-s", _scenario(t, "[load]\nrate = -1\nduration_s = 2\n")],
        "load.rate",
    ),
    ("scenario sessions 1e23", lambda t: [*RUN, "-s", _scenario(t, "[load]\nsessions = 1e23\n")], "load.sessions"),
    ("scenario huge int", lambda t: [*RUN, "-s", _scenario(t, "[load]\nsessions = 99999999999\n")], "load.sessions"),
    ("scenario inf timeout", lambda t: [*RUN, "-s", _scenario(t, "[timeouts]\nconnect_s = inf\n")], "connect_s"),
    (
        "scenario inf phase rate",
        lambda t: [*RUN, "-s", _scenario(t, "[[load.phases]]\nduration_s = 2\nrate = inf\n")],
        "load.phases[0].rate",
    ),
    ("scenario BOM read", lambda t: [*RUN, "-s", _scenario(t, "[load]\nrate = -1\n", bom=True)], "load.rate"),
    ("out is /dev/null", lambda t: [*RUN, "-n", "1", "-o", "/dev/null"], "not a regular file"),
    ("out is a fifo", lambda t: [*RUN, "-n", "1", "-o", _fifo(t)], "not a regular file"),
    ("out is a symlink", lambda t: [*RUN, "-n", "1", "-o", _symlink(t)], "symbolic link"),
    ("out under a file", lambda t: [*RUN, "-n", "1", "-o", _under_a_file(t)], "not a directory"),
    ("out is a folder", lambda t: [*RUN, "-n", "1", "-o", str(t)], "directory"),
    ("html is /dev/null", lambda t: [*RUN, "-n", "1", "--html", "/dev/null"], "not a regular file"),
    ("compare same file twice", lambda t: ["compare", _doc_file(t, "a.json"), str(t / "a.json")], "same file"),
    ("compare not zlib", lambda t: ["compare", _doc_file(t, "a.json"), _doc_file(t, "b.json", _not_zlib)], "corrupt"),
    (
        "compare no histograms",
        lambda t: ["compare", _doc_file(t, "a.json"), _doc_file(t, "b.json", _edit((*CANON, "histograms"), _DELETE))],
        "histograms",
    ),
    (
        "compare sessions -5",
        lambda t: ["compare", _doc_file(t, "a.json"), _doc_file(t, "b.json", _edit((*CANON, "sessions"), -5))],
        "sessions",
    ),
    (
        "compare connected > sessions",
        lambda t: ["compare", _doc_file(t, "a.json"), _doc_file(t, "b.json", _edit((*CANON, "connected"), 10**6))],
        "more connected",
    ),
    (
        "compare outcomes do not add up",
        lambda t: ["compare", _doc_file(t, "a.json"), _doc_file(t, "b.json", _edit((*CANON, "outcomes", "ok"), 1))],
        "add up",
    ),
    (
        "compare sessions missing",
        lambda t: ["compare", _doc_file(t, "a.json"), _doc_file(t, "b.json", _edit((*CANON, "sessions"), _DELETE))],
        "sessions",
    ),
    ("compare not json", lambda t: ["compare", _binary(t), _doc_file(t, "a.json")], "not JSON"),
    ("compare three files", lambda t: ["compare", "a", "b", "c"], "at most two"),
    ("compare split 0", lambda t: ["compare", "--canonical", DEAD, "--legacy", DEAD, "--split", "0/5"], "--split"),
    (
        "report not zlib",
        lambda t: ["report", _doc_file(t, "b.json", _not_zlib), "--html", str(t / "r.html")],
        "corrupt",
    ),
    (
        "baseline from a corrupt document",
        lambda t: ["baseline", "save", _doc_file(t, "b.json", _not_zlib), "--to", str(t / "base.json")],
        "corrupt",
    ),
    ("target port -1", lambda t: ["target", "--port", "-1"], "--port"),
    # issue 24
    (
        "header without colon (#24.2)",
        lambda t: [*RUN, "-H", "Authorization Bearer S3CRET-T0KEN"],
        "header 1 has no ':'",
    ),
    ("header name with spaces (#24.2)", lambda t: [*RUN, "-H", "Authorization Bearer S3CRET: x"], "header 1"),
    ("empty bearer file (#24.4)", lambda t: [*RUN, "--bearer-file", _text(t, "tok", "\n")], "is empty"),
    ("bearer file a fifo (#24.4)", lambda t: [*RUN, "--bearer-file", _fifo(t)], "not a regular file"),
    ("header not Latin-1 (#24.8)", lambda t: [*RUN, "-H", "X-Token: caf\u20ac"], "Latin-1"),
    ("traffic rate 5e-324 (#24.5)", lambda t: [*COMPARE, "--traffic-rate", "5e-324"], "--traffic-rate"),
    ("traffic rate 1e-300 (#24.18)", lambda t: [*COMPARE, "--traffic-rate", "1e-300"], "0.001"),
    (
        "scenario traffic rate 5e-324 (#24.5)",
        lambda t: [*COMPARE, "-s", _scenario(t, "[load]\ntraffic_rate = 5e-324\n")],
        "traffic_rate",
    ),
    ("monitor traffic rate 5e-324 (#24.5)", lambda t: _monitor(t, "traffic_rate = 5e-324"), "traffic_rate"),
    ("monitor sessions 1e18 (#24.13)", lambda t: _monitor(t, "sessions = 1000000000000000000"), "sessions"),
    ("monitor max duration inf (#24.13)", lambda t: _monitor(t, "max_duration_s = inf"), "max_duration_s"),
    ("monitor look_every 1e12 (#24.13)", lambda t: _monitor(t, "look_every = 1000000000000"), "look_every"),
    ("ca-file missing (#24.18)", lambda t: [*RUN, "--ca-file", str(t / "none.pem")], "none.pem"),
    ("ca-file a fifo (#24.12)", lambda t: [*RUN, "--ca-file", _fifo(t)], "not a regular file"),
    ("key encrypted (#24.12)", lambda t: [*RUN, *_encrypted_key(t)], "encrypted"),
    ("monitor lock a folder (#24.16)", lambda t: _monitor(t, f'lock = "{t}"'), "lock"),
    ("monitor lock a fifo (#24.16)", lambda t: _monitor(t, f'lock = "{_fifo(t)}"'), "not a regular file"),
    ("scenario nested deeply (#24.16)", lambda t: [*RUN, "-s", _scenario(t, "a = " + "[" * 50_000)], "nested"),
    ("scenario a fifo (#24.16)", lambda t: [*RUN, "-s", _fifo(t)], "not a regular file"),
    ("scenario 20 MB key (#24.18)", lambda t: [*RUN, "-s", _scenario(t, "k" * 20_000_000 + " = 1\n")], "more than"),
    ("scenario 500 KB key (#24.18)", lambda t: [*RUN, "-s", _scenario(t, "k" * 500_000 + " = 1\n")], "known key"),
    ("on-node-loss without cluster (#24.17)", lambda t: [*RUN, "--on-node-loss", "continue"], "--cluster"),
    (
        "scenario on_node_loss explode (#24.17)",
        lambda t: [*RUN, "-s", _scenario(t, '[load]\non_node_loss = "explode"\n')],
        "on_node_loss",
    ),
    (
        "cluster with --workers (#24.25)",
        lambda t: ["run", "--flow", "canonical", "--url", DEAD, "--cluster", "local:2", "--workers", "3"],
        "--workers-per-node",
    ),
    ("calibrate --file empty (#24.18)", lambda t: ["calibrate", "--file", ""], "--file"),
    ("target p 5xx 7", lambda t: ["target", "--port", "0", "--canonical-p-5xx", "7"], "p_5xx"),
]


def _encrypted_key(folder: Path) -> list[str]:
    """--cert and --key, the key encrypted with a pass phrase (OpenSSL would prompt for it)."""
    from cryptography.hazmat.primitives import serialization

    from .servers import tls_ca

    leaf = tls_ca().issue_cert("127.0.0.1")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass phrase"),
        )
    )
    leaf.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    return ["--cert", str(folder / "cert.pem"), "--key", str(folder / "key.pem")]


def _text(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


SECRETS = ("S3CRET", "s3cr3t")


def _binary(folder: Path) -> str:
    path = folder / "garbage.bin"
    path.write_bytes(bytes(range(256)) * 4)
    return str(path)


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.lstat().st_mode for p in folder.rglob("*")}


@pytest.mark.parametrize(("argv", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_and_exit_3(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    argv: Callable[[Path], list[str]],
    says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    args = argv(tmp_path)
    before = _listing(tmp_path)
    dev_null = os.stat("/dev/null")
    assert main(args) == 3
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and len(err) < 1000, err[:2000]
    assert says.lower() in err.lower(), err
    assert not any(secret in err for secret in SECRETS), err  # a secret given is never echoed
    assert _listing(tmp_path) == before  # nothing created, nothing replaced
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.stat("/dev/null").st_ino == dev_null.st_ino


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40


# --- faults injected into each command ------------------------------------------------------------------


def _boom(*_a: Any, **_k: Any) -> Any:
    raise RuntimeError("injected fault")


FAULTS: list[tuple[str, Any, str, Callable[[Path], list[str]]]] = [
    ("run", sseprobe._api, "measure", lambda t: [*RUN, "-n", "1", "-o", str(t / "r.json")]),
    (
        "compare live",
        sseprobe._api,
        "measure",
        lambda t: ["compare", "--canonical", DEAD, "--legacy", DEAD, "-w", "1", "-o", str(t / "c.json")],
    ),
    (
        "compare offline",
        sseprobe.cli._compare,
        "judge",
        lambda t: ["compare", _doc_file(t, "a.json"), _doc_file(t, "b.json")],
    ),
    ("report", sseprobe.cli._report, "write_report", lambda t: ["report", _doc_file(t, "a.json"), "--html", "r.html"]),
    (
        "baseline save",
        sseprobe.cli._monitor,
        "save_baseline",
        lambda t: ["baseline", "save", _doc_file(t, "a.json"), "--to", str(t / "base.json")],
    ),
    ("monitor", sseprobe.cli._monitor, "run_pass", lambda t: ["monitor", "-C", _monitor_config(t)]),
    ("history", sseprobe.cli._monitor, "History", lambda t: ["history", "--db", _history(t)]),
]


def _history(folder: Path) -> str:
    path = folder / "h.sqlite"
    path.write_bytes(b"")
    return str(path)


def _monitor_config(folder: Path) -> str:
    path = folder / "monitor.toml"
    path.write_text(f'canonical_url = "{DEAD}"\nlegacy_url = "{DEAD}"\nhistory = "{folder / "h.sqlite"}"\n')
    return str(path)


@pytest.mark.parametrize(("module", "name", "argv"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_a_fault_of_ours_is_exit_3_never_a_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    module: Any,
    name: str,
    argv: Callable[[Path], list[str]],
) -> None:
    monkeypatch.chdir(tmp_path)
    args = argv(tmp_path)
    monkeypatch.setattr(module, name, _boom)
    assert main(args) == 3  # a failure of sseprobe: never 1 (YELLOW) nor 2 (RED)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "injected fault" in err and len(err.strip().splitlines()) == 1, err


# --- runs against the built-in target -------------------------------------------------------------------


def test_results_survive_an_output_that_fails_at_the_end(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def full_disk(*_a: Any, **_k: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sseprobe.report.document, "write_atomic", full_disk)
    out = tmp_path / "r.json"
    code = main(["run", "--flow", "legacy", "--url", target, "-n", "6", "-c", "2", "-w", "1", "-o", str(out), "--json"])
    captured = capfd.readouterr()
    assert code == 3 and "Traceback" not in captured.err
    printed = json.loads(captured.out)  # --json still printed
    assert printed["cohorts"]["legacy"]["sessions"] == 6
    line = captured.err.strip()
    assert "No space left" in line and len(line.splitlines()) == 1
    spare = Path(line.rsplit(" ", 1)[-1])
    try:
        assert json.loads(spare.read_text()) == printed  # and kept in the temporary folder, said where
    finally:
        spare.unlink()
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["run", "--flow", "legacy", "-n", "4", "-w", "1"], "judge_completion"),
        (["compare", "-n", "3", "-w", "1"], "time_to_decide"),
        (["compare", "-w", "1", "--until-decided", "--look-every", "3", "--max-sessions", "6"], "_merge"),
    ],
    ids=["run: judging fails", "compare: time to decide fails", "until-decided: merging fails"],
)
def test_a_failure_after_measuring_still_writes_the_document(
    target: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    argv: list[str],
    name: str,
) -> None:
    """#24.5: whatever fails after the sessions ran, what they measured is written (no verdict) and
    said where, in one line, exit 3."""
    monkeypatch.setattr(sseprobe._api, name, lambda *_a, **_k: 1 / 0)
    urls = ["--url", target] if argv[0] == "run" else ["--canonical", target, "--legacy", target]
    out = tmp_path / "r.json"
    code = main([*argv, *urls, "-o", str(out)])
    err = capfd.readouterr().err.strip()
    assert code == 3 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "failed after measuring: ZeroDivisionError" in err and str(out) in err, err
    doc = json.loads(out.read_text())
    assert doc["failure"].startswith("ZeroDivisionError") and "verdict" not in doc
    assert all(c["sessions"] > 0 for c in doc["cohorts"].values()), doc["cohorts"]


def test_a_monitor_probe_that_fails_after_measuring_keeps_its_results(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sseprobe._api, "time_to_decide", lambda *_a, **_k: 1 / 0)
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        f'url = "{target}"\nsessions = 4\nconcurrency = 2\nresults_dir = "out"\nhistory = "out/h.sqlite"\n'
        'ignore_checks = ["health.dependencies"]\n'
    )
    assert main(["monitor", "--config", str(cfg)]) == 3
    out, err = capfd.readouterr()
    assert "probe failed after measuring: ZeroDivisionError" in out + err and "Traceback" not in err
    (results,) = [p for p in (tmp_path / "out").glob("*.json")]
    doc = json.loads(results.read_text())
    assert "verdict" not in doc and all(c["sessions"] > 0 for c in doc["cohorts"].values())


def test_a_summary_that_fails_to_render_loses_nothing(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sseprobe._api.Result, "text", lambda *_a, **_k: 1 / 0)
    out = tmp_path / "r.json"
    assert main(["run", "--flow", "legacy", "--url", target, "-n", "2", "-w", "1", "-o", str(out)]) == 3
    assert "ZeroDivisionError" in capfd.readouterr().err
    assert json.loads(out.read_text())["cohorts"]["legacy"]["sessions"] == 2  # written before the text


def _calibration(folder: Path, machine: Any) -> str:
    path = folder / "cal.json"
    limits = {"rate_per_worker": 100.0, "in_flight_per_worker": 100.0}
    path.write_text(json.dumps({"schema": "sseprobe.calibration/1", "limits": limits, "machine": machine}))
    return str(path)


@pytest.mark.parametrize(
    "where",
    [
        lambda t: _fifo(t),
        lambda t: "/dev/zero",
        lambda t: str(t),
        lambda t: _calibration(t, ["a", "list"]),
        lambda t: _calibration(t, "a string"),
        lambda t: _calibration(t, None),
    ],
    ids=["a fifo", "/dev/zero", "a folder", "machine a list", "machine a string", "machine null"],
)
def test_an_unusable_calibration_is_a_note_and_the_run_goes_on(
    target: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    where: Callable[[Path], str],
) -> None:
    """#24.11, #24.12: never a hang, never a crash: one note naming the file, then the run."""
    path = where(tmp_path)
    monkeypatch.setenv("SSEPROBE_CALIBRATION", path)
    out = tmp_path / "r.json"
    code = main(["run", "--flow", "legacy", "--url", target, "-n", "2", "-w", "1", "-o", str(out)])
    err = capfd.readouterr().err.strip()
    assert code == 0, err
    assert (
        err == f"sseprobe: note: calibration {path} ignored: " + err.rsplit(": ", 1)[-1] and len(err.splitlines()) == 1
    )
    assert json.loads(out.read_text())["cohorts"]["legacy"]["outcomes"] == {"ok": 2}


def test_a_calibration_path_of_no_users_home_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SSEPROBE_CALIBRATION", "~sseprobe-no-such-user/cal.json")
    assert main([*RUN, "-n", "1", "-o", str(tmp_path / "r.json")]) == 3
    err = capfd.readouterr().err.strip()
    assert "no such user" in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "r.json").exists()


def test_json_still_prints_when_nothing_can_be_written(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def read_only(*_a: Any, **_k: Any) -> Any:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(sseprobe.report.document, "write_atomic", read_only)
    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # the module report.document writes through
    code = main(
        ["run", "--flow", "legacy", "--url", target, "-n", "3", "-w", "1", "-o", str(tmp_path / "r.json"), "--json"]
    )
    captured = capfd.readouterr()
    assert code == 3 and json.loads(captured.out)["cohorts"]["legacy"]["sessions"] == 3
    assert captured.err.strip() == "sseprobe: error: cannot write the results anywhere: Read-only file system"


def test_fewer_sessions_than_workers_is_a_normal_run(
    target: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    for sessions, workers in (("1", None), ("3", "4"), ("3", "1000")):
        out = tmp_path / f"w{sessions}-{workers}.json"
        args = ["run", "--flow", "legacy", "--url", target, "-n", sessions, "-o", str(out)]
        r = in_process(capfd, *args, *(["-w", workers] if workers else []))
        doc = json.loads(out.read_text())
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert doc["interrupted"] is False and doc["stop_reason"] is None and doc["worker_errors"] == []
        assert doc["config"]["load"]["workers"] <= int(sessions)
        assert doc["cohorts"]["legacy"]["sessions"] == int(sessions)


def test_url_credentials_become_a_redacted_basic_header(
    target: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "r.json"
    url = target.replace("http://", "http://someone:s3cr3t-pw@")
    monkeypatch.chdir(tmp_path)  # --html r.html: relative to the working folder
    r = in_process(
        capfd, "run", "--flow", "legacy", "--url", url, "-n", "2", "-w", "1", "-o", str(out), "--html", "r.html"
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["cohorts"]["legacy"]["outcomes"] == {"ok": 2}
    assert doc["config"]["cohorts"]["legacy"]["headers"]["Authorization"] == "REDACTED"
    for text in (out.read_text(), (tmp_path / "r.html").read_text(), r.stdout, r.stderr):
        assert "s3cr3t" not in text and "someone" not in text


def test_open_file_limit_is_checked_before_the_run(tmp_path: Path) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    out = tmp_path / "r.json"
    r = subprocess.run(
        [*CLI, "run", "--flow", "canonical", "--url", DEAD, "-n", "5000", "-c", "2000", "-w", "1", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=low_limit,
    )
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert "open-file limit" in r.stderr and "can hold 192" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not out.exists()


def test_open_model_in_flight_cap_is_fitted_and_said(target: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = subprocess.run(
        [*CLI, "run", "--flow", "legacy", "--url", target, "--rate", "10", "-d", "1", "-w", "1", "-o", str(out)]
        + ["--max-in-flight", "5000"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)),
    )
    assert r.returncode == 0, r.stderr
    note = "sseprobe: note: max in flight lowered from 5000 to 192: the open-file limit holds no more"
    assert r.stderr.strip() == note
    assert json.loads(out.read_text())["cohorts"]["legacy"]["outcomes"] == {"ok": 10}


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = subprocess.run(
        [*CLI, "run", "--flow", "canonical", "--url", DEAD, "-n", "5000", "-c", "2000", "-w", "1", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024)),
    )
    assert r.returncode == 3 and "can hold 960 sessions" in r.stderr, r.stderr  # 1024, not 256, less the spare


# --- signals at any moment --------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_at_any_moment_keeps_what_was_measured(
    target: str, tmp_path: Path, workers: str, signum: signal.Signals
) -> None:
    for delay in (0.0, 0.05, 0.2, 0.5, 1.0, 1.6):
        out = tmp_path / f"r{delay}.json"
        proc = subprocess.Popen(
            [*CLI, "run", "--flow", "legacy", "--url", target, "-d", "30", "-c", "4", "-w", workers, "-o", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for_our_code(proc.pid)
        time.sleep(delay)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
        assert "Traceback" not in stderr, (delay, stderr)
        if proc.returncode == 3 and not out.exists():  # before the command parsed its options: nothing to keep
            assert stderr.strip() == "sseprobe: interrupted", (delay, stderr)
            continue
        assert proc.returncode == 3, (delay, proc.returncode, stderr)
        doc = json.loads(out.read_text())
        assert doc["interrupted"] is True
        assert signum.name in doc["stop_reason"] or doc["stop_reason"] == "interrupted while starting", doc
        assert len(doc["stop_reason"]) < 200
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert not list(tmp_path.glob(".*.tmp"))


def _wait_for_our_code(pid: int) -> None:
    """Until sseprobe's first line runs (it catches SIGTERM from then on). Before it, a signal meets the
    interpreter's own start-up, which no program can answer in its own words."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.002)
    raise AssertionError("sseprobe never started")


def test_signals_wait_while_the_results_are_written() -> None:
    reached = False
    with pytest.raises(KeyboardInterrupt):
        with held_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # delivered now it would raise here, and the document would be half written
            reached = True
    assert reached


# --- the protocol boundary ----------------------------------------------------------------------------


def raw_server(answer: bytes, chunks: int = 1) -> AbstractContextManager[str]:
    """Answers every request head with ``answer`` (sent in ``chunks`` pieces), then closes; yields the URL's
    base, to which the test adds /stream."""

    def send(sock: socket.socket, _head: bytes) -> None:
        step = max(1, len(answer) // chunks)
        for i in range(0, len(answer), step):
            sock.sendall(answer[i : i + step])

    return thread_server(send)


SSE_BODY = b'data: {"text": "hi"}\n\ndata: {"text": "bye"}\n\n'


def _sse(body: bytes, encoding: str) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
        + f"Content-Encoding: {encoding}\r\n\r\n".encode()
        + body
    )


ANSWERS: list[tuple[str, bytes, str, str]] = [
    ("malformed status line", b"HTP/1.1 200 OK\r\n\r\n", "protocol_error", "malformed HTTP response"),
    ("status not a number", b"HTTP/1.1 2x0 OK\r\n\r\n", "protocol_error", "status line"),
    ("101 upgrade", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "protocol_error", "101"),
    ("HTTP/2 preface", b"\x00\x00\x12\x04\x00\x00\x00\x00\x00" + b"\x00" * 18, "protocol_error", "HTTP/2"),
    ("endless header line", b"HTTP/1.1 200 OK\r\nX: " + b"a" * 300_000, "protocol_error", "longer than"),
    ("20,000 headers", b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 20_000 + b"\r\n", "protocol_error", "longer than"),
    ("head cut off", b"HTTP/1.1 200 OK\r\nContent-Type: text/ev", "protocol_error", "middle of the response head"),
    ("gzip body", _sse(gzip.compress(SSE_BODY), "gzip"), "ok", ""),
    ("deflate body", _sse(zlib.compress(SSE_BODY), "deflate"), "ok", ""),
    ("brotli body", _sse(b"\x1b\x03\x00", "br"), "protocol_error", "br"),
    ("corrupt gzip body", _sse(b"\x1f\x8b\x08\x00garbage-garbage", "gzip"), "protocol_error", "does not inflate"),
]


@pytest.mark.parametrize(("answer", "outcome", "says"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
def test_a_reachable_server_answering_badly_is_a_protocol_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], answer: bytes, outcome: str, says: str
) -> None:
    out = tmp_path / "r.json"
    with raw_server(answer, chunks=3) as base:
        url = f"{base}/stream"
        code = main(["run", "--flow", "generic", "--url", url, "-n", "2", "-c", "1", "-w", "1", "-o", str(out)])
        message = _first_error(url)
    assert "Traceback" not in capfd.readouterr().err
    cohort = json.loads(out.read_text())["cohorts"]["generic"]
    assert cohort["outcomes"] == {outcome: 2}, cohort["outcomes"]
    # the service's fault is judged (every session failed: completion is a rollback trigger), never
    # "could not run" (3)
    assert code == (0 if outcome == "ok" else 2)
    assert says in message if says else message == ""


def _first_error(url: str) -> str:
    """What the transport says about the answer: the reason a protocol_error carries."""

    async def go() -> str:
        async with LeanClient(5, 5) as http:
            try:
                async with await http.request("GET", url, headers={"Accept": "text/event-stream"}) as resp:
                    await resp.read()
            except ProtocolError as exc:
                return str(exc)
        return ""

    return asyncio.run(go())


def test_only_an_unreachable_server_is_a_connect_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "r.json"
    code = main(
        ["run", "--flow", "generic", "--url", f"http://127.0.0.1:{port}/", "-n", "2", "-w", "1", "-o", str(out)]
    )
    assert code == 3 and "cannot reach" in capfd.readouterr().err
    assert json.loads(out.read_text())["cohorts"]["generic"]["outcomes"] == {"connect_error": 2}


def test_check_and_monitor_never_show_url_passwords(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """#24.1: ``check`` and ``monitor`` (its output, its history, ``history``) say the URL without
    its credentials; ``check`` sends them as the Basic header they stand for, as ``run`` does."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://someone:s3cr3t-pw@127.0.0.1:{port}"
    assert main(["check", url]) == 3
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(f'url = "{url}"\nhistory = "{tmp_path / "h.sqlite"}"\n')
    assert main(["monitor", "--config", str(cfg)]) == 3
    assert main(["history", "--config", str(cfg)]) == 0
    out, err = capfd.readouterr()
    assert "cannot reach" in out + err
    for text in (out, err, (tmp_path / "h.sqlite").read_bytes().decode("latin-1")):
        assert "s3cr3t" not in text and "someone" not in text, text


def _cookie_server(set_cookie: str, seen: list[bytes]) -> AbstractContextManager[str]:
    """Creates sessions with ``set_cookie``; keeps every request head it is sent."""

    def answer(sock: socket.socket, head: bytes) -> None:
        seen.append(head)
        if b"/run_sse" in head.split(b"\r\n", 1)[0]:
            sock.sendall(_sse(b'data: {"content": {"parts": [{"text": "hi"}]}}\n\n', "identity"))
            return
        body = b'{"success": true, "session_id": "session_0123456789abcdef"}'
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Set-Cookie: {set_cookie}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    return thread_server(answer)


def _header_lines(head: bytes, name: bytes) -> list[bytes]:
    return [line for line in head.split(b"\r\n")[1:] if line.lower().startswith(name.lower() + b":")]


@pytest.mark.parametrize("given", ["Cookie: auth=user-1", "cookie: auth=user-1"])
def test_the_csrf_echo_keeps_the_users_cookie(tmp_path: Path, given: str) -> None:
    """#24.3: the server's CSRF cookie is added to the user's own Cookie, never replaces it; whatever
    the case the user wrote it in, one Cookie and one X-CSRF-Token go out."""
    seen: list[bytes] = []
    out = tmp_path / "r.json"
    with _cookie_server("csrf_token=abc123; Path=/", seen) as url:
        code = main(["run", "--flow", "canonical", "--url", url, "-n", "1", "-w", "1", "-H", given, "-o", str(out)])
    assert code == 0, json.loads(out.read_text())["cohorts"]
    stream = next(h for h in seen if b"/run_sse" in h.split(b"\r\n", 1)[0])
    assert _header_lines(stream, b"x-csrf-token") == [b"X-CSRF-Token: abc123"]
    (cookie,) = _header_lines(stream, b"cookie")
    assert cookie.split(b":", 1)[1].strip() == b"auth=user-1; csrf_token=abc123"


def test_a_csrf_cookie_with_a_line_break_is_a_protocol_error(tmp_path: Path) -> None:
    """#24.14: a quoted cookie can carry CR LF (octal escapes); echoing it would split the request."""
    seen: list[bytes] = []
    out = tmp_path / "r.json"
    with _cookie_server('csrf_token="a\\015\\012X-Evil: 1"', seen) as url:
        main(["run", "--flow", "canonical", "--url", url, "-n", "2", "-w", "1", "-o", str(out)])
    cohort = json.loads(out.read_text())["cohorts"]["canonical"]
    assert cohort["outcomes"] == {"protocol_error": 2}, cohort
    assert not any(b"X-Evil" in h for h in seen)


def _refused_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_nothing_reachable_is_one_answer_unknown_never_red(
    target: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """#24.10, #24.19: canonical unreachable: stdout, stderr, the document and the exit code all say
    UNKNOWN (could not tell), with why it could not connect; no "roll back", no saturated generator."""
    out = tmp_path / "c.json"
    refused = _refused_url()
    code = main(["compare", "--canonical", refused, "--legacy", target, "-n", "4", "-w", "1", "-o", str(out)])
    captured = capfd.readouterr()
    assert code == 3
    doc = json.loads(out.read_text())
    assert doc["verdict"]["overall"] == "UNKNOWN" and doc["unreachable"].startswith(f"cannot reach {refused}")
    assert "ConnectionRefused" in doc["unreachable"] or "refused" in doc["unreachable"].lower(), doc["unreachable"]
    (reason,) = doc["cohorts"]["canonical"]["failure_reasons"]
    assert reason.startswith("connect_error: ")
    assert "why failed" in captured.out and "UNKNOWN: cannot reach" in captured.out
    assert "roll back" not in captured.out.lower()
    assert "cannot reach" in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err


def test_no_generator_saturated_when_nothing_connected() -> None:
    """#24.19: a generator's lag while every session waits on a connect is no verdict to doubt."""
    from sseprobe.report.summary import render_run
    from sseprobe.verdict.stats import CohortStats

    generator = partial_generator(saturated=True, note="generator loop lag p99 900 ms")
    nothing = CohortStats(flow="canonical", sessions=5, outcomes=Counter({"connect_error": 5}))
    none_shown = render_run({"canonical": nothing}, [], 1.0, False, generator)
    assert "GENERATOR SATURATED" not in none_shown and "900 ms" not in none_shown
    some = CohortStats(flow="canonical", sessions=5, connected=1, outcomes=Counter({"connect_error": 4, "ok": 1}))
    shown = render_run({"canonical": some}, [], 1.0, False, generator)
    # said in proportion (#23.4): noted, shouted only when a verdict or trigger depends on it (none here)
    assert "generator loop lag p99 900 ms" in shown and "GENERATOR SATURATED" not in shown


def test_a_run_where_nothing_connects_stops_early(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """#24.19: after NOTHING_CONNECTS_AFTER attempts that all failed to connect the run stops, exit 3."""
    from sseprobe.load.runner import NOTHING_CONNECTS_AFTER

    out = tmp_path / "r.json"
    code = main(
        ["run", "--flow", "generic", "--url", _refused_url(), "--rate", "100", "-d", "60", "-w", "1"]
        + [
            "-o",
            str(out),
        ]
    )
    doc = json.loads(out.read_text())
    assert code == 3 and "cannot reach" in capfd.readouterr().err
    assert doc["stop_reason"].startswith("stopped early: none of the first"), doc["stop_reason"]
    assert NOTHING_CONNECTS_AFTER <= doc["cohorts"]["generic"]["sessions"] < 6000
    assert doc["duration_s"] < 60


def test_requests_ask_for_the_stream_uncompressed(tmp_path: Path) -> None:
    seen: list[bytes] = []

    def answer(sock: socket.socket, head: bytes) -> None:
        seen.append(head)
        sock.sendall(_sse(SSE_BODY, "identity"))

    with thread_server(answer) as base:
        main(["run", "--flow", "generic", "--url", f"{base}/s", "-n", "1", "-w", "1", "-o", str(tmp_path / "r.json")])
    assert b"\r\naccept-encoding: identity" in seen[0].lower() + b"\r\n", seen


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))


# --- the monitor: a baseline only from a decided pass, and a pass that cannot judge is UNKNOWN ------------


def _monitor_pass(capfd: pytest.CaptureFixture[str], cfg: Path, *args: str) -> Ran:
    return in_process(capfd, "monitor", "--config", str(cfg), *args)


def _prom(path: Path) -> dict[str, float]:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith(("sseprobe_up ", 'sseprobe_monitor_verdict{part="overall"}')):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def _history_rows(capfd: pytest.CaptureFixture[str], cfg: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(in_process(capfd, "history", "--config", str(cfg), "--json").stdout)
    return rows


def test_monitor_keeps_the_baseline_unless_the_pass_decided(
    target: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "scenario.toml").write_text("[load]\nsessions = 12\nconcurrency = 4\n")
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        f'url = "{target}"\nscenario = "scenario.toml"\nbaseline = "out/baseline.json"\n'
        'history = "out/history.sqlite"\nprometheus = "out/sseprobe.prom"\nresults_dir = "out"\n'
        'ignore_checks = ["health.dependencies"]\n'
    )
    baseline = tmp_path / "out" / "baseline.json"

    undecided = _monitor_pass(capfd, cfg, "--update-baseline")  # 12 sessions: too few to tell anything
    assert undecided.returncode == 3, undecided.stdout + undecided.stderr
    assert "Traceback" not in undecided.stderr and "not updated" in undecided.stdout
    assert not baseline.exists()
    assert _prom(tmp_path / "out" / "sseprobe.prom") == {
        "sseprobe_up": 1.0,
        'sseprobe_monitor_verdict{part="overall"}': 3.0,
    }

    forced = _monitor_pass(capfd, cfg, "--update-baseline", "--force")
    assert forced.returncode == 3 and baseline.exists(), forced.stdout

    doc = json.loads(baseline.read_text())
    doc["cohorts"]["canonical"]["histograms"]["ttfe_us"] = base64.b64encode(b"not zlib").decode()
    baseline.write_text(json.dumps(doc))
    corrupt = _monitor_pass(capfd, cfg)
    assert corrupt.returncode == 3 and "Traceback" not in corrupt.stderr, corrupt.stdout + corrupt.stderr
    assert "corrupt" in corrupt.stdout
    assert [row["verdict"] for row in _history_rows(capfd, cfg)] == ["UNKNOWN", "UNKNOWN", "UNKNOWN"]
    assert _prom(tmp_path / "out" / "sseprobe.prom")['sseprobe_monitor_verdict{part="overall"}'] == 3.0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_rollback_trigger_aborts_with_any_number_of_workers(
    tmp_path: Path, workers: str, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    with target_process("--canonical-p-5xx", "0.5", "--canonical-ttfe-ms", "5") as url:
        # 12/s over a 3 s window (2 to 3 whole seconds): 24 to 36 sessions together, at most 18 in each of
        # two workers' windows, fewer than the 20 a trigger needs: only the merged windows show it
        r = in_process(
            capfd, "run", "--flow", "canonical", "--url", url, "--rate", "12", "-d", "60", "-w", workers,
            "--abort-on-trigger", "3", "-o", str(out),
        )  # fmt: skip
    doc = json.loads(out.read_text())
    assert r.returncode == 2, r.stderr
    assert doc["stop_reason"].startswith("rollback trigger held 3s: canonical: "), doc["stop_reason"]
    assert doc["duration_s"] < 60  # stopped by the trigger, long before its end
    # why it stopped, and the run's RED verdict: each one line of ours, no traceback
    lines = r.stderr.splitlines()
    assert any("rollback trigger held" in line for line in lines), r.stderr
    assert len(lines) <= 2 and all(line.startswith("sseprobe: ") for line in lines), r.stderr
