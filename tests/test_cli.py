"""The CLI contract: bad input is one line and exit 3; help explains every option; check works."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from sseprobe.cli import cli

from .conftest import in_process, sseprobe, target_process
from .servers import refused_url


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--flow", "canonical", "--url", "not a url"],
        ["run", "--flow", "canonical", "--url", "ftp://host/x"],
        ["run", "--flow", "canonical", "--url", "http://127.0.0.1:99999"],
        ["run", "--flow", "sideways", "--url", "http://127.0.0.1:8000"],
        ["run", "--flow", "canonical", "--url", "http://127.0.0.1:8000", "-n", "-5"],
        ["run", "--flow", "canonical", "--url", "http://127.0.0.1:8000", "-c", "0"],
        ["run", "--flow", "canonical", "--url", "http://127.0.0.1:8000", "--timeout", "-1"],
        ["run", "--flow", "canonical", "--url", "http://127.0.0.1:8000", "--rate", "5"],
        ["run", "--flow", "generic", "--url", "http://127.0.0.1:8000", "--body-file", "/nonexistent/body"],
        ["run", "--flow", "canonical", "--url", "http://127.0.0.1:8000", "--scenario", "/nonexistent.toml"],
        ["run", "--flow", "canonical", "--url", "http://127.0.0.1:8000", "--policy", "/nonexistent.toml"],
        ["run", "--flow", "canonical", "--url", "http://127.0.0.1:8000", "--bearer-env", "SSEPROBE_NO_SUCH_VAR"],
        ["run", "--flow", "canonical", "--url", "http://127.0.0.1:8000", "-H", "no colon here"],
        ["run", "--url", "http://127.0.0.1:8000"],
        ["compare", "--canonical", "http://127.0.0.1:8000"],
        ["compare", "a.json", "b.json", "c.json"],
        ["compare", "--split", "five/95", "--canonical", "http://h", "--legacy", "http://h"],
        ["frobnicate"],
        ["run", "--no-such-option"],
    ],
)
def test_bad_input_is_one_line_and_exit_3(args: list[str], capfd: pytest.CaptureFixture[str]) -> None:
    code, out, err = in_process(capfd, *args)
    assert code == 3, (args, out, err)
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert err.startswith("sseprobe: error:"), err


@pytest.mark.parametrize("args", [["frobnicate"], ["run", "--url", "http://127.0.0.1:8000"]])
def test_bad_input_in_a_process_of_its_own(args: list[str]) -> None:
    """The same contract through the installed entry point (a click error and one of the plan's)."""
    r = sseprobe(*args, timeout=30)
    assert r.returncode == 3 and "Traceback" not in r.stderr, (args, r.stdout, r.stderr)
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("sseprobe: error:"), r.stderr


def test_unreachable_host_is_exit_3_with_reason(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    url = refused_url().rsplit("/", 1)[0]
    out = str(tmp_path / "x.json")
    code, _, err = in_process(capfd, "run", "--flow", "canonical", "--url", url, "-n", "3", "-w", "1", "--out", out)
    assert code == 3 and "cannot reach" in err and "Traceback" not in err
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["cohorts"]["canonical"]["outcomes"] == {"connect_error": 3}


def _commands() -> list[tuple[str, click.Command]]:
    out = []
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        assert cmd is not None, name
        out.append((name, cmd))
        if isinstance(cmd, click.Group):
            out += [(f"{name} {sub}", c) for sub, c in cmd.commands.items()]
    return out


def test_help_explains_every_option(capfd: pytest.CaptureFixture[str]) -> None:
    for name, cmd in _commands():
        assert cmd.help, f"{name} has no help text"
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.help and len(param.help) > 8, f"{name} {param.opts}: no help"
        code, out, err = in_process(capfd, *name.split(), "--help")
        assert code == 0 and "Usage:" in out, err


def test_json_prints_only_the_document(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with target_process() as url:
        code, out, err = in_process(
            capfd,
            "run",
            "--flow",
            "legacy",
            "--url",
            url,
            "-n",
            "5",
            "--workers",
            "1",
            "--json",
            "--out",
            str(tmp_path / "j.json"),
            "-H",
            "Authorization: Bearer s3cr3t-token",
            "-H",
            "X-Trace: visible",
        )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "sseprobe.result/1" and doc["cohorts"]["legacy"]["sessions"] == 5
    assert "s3cr3t-token" not in out and "s3cr3t-token" not in err
    assert "s3cr3t-token" not in (tmp_path / "j.json").read_text()
    assert doc["config"]["cohorts"]["legacy"]["headers"] == {"Authorization": "REDACTED", "X-Trace": "visible"}


def test_run_fires_rollback_trigger_exit_2(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with target_process("--canonical-p-5xx", "0.5") as url:
        code, out, err = in_process(
            capfd,
            "run", "--flow", "canonical", "--url", url, "-n", "60", "--workers", "1", "--out", str(tmp_path / "t.json"),
        )  # fmt: skip
    assert code == 2, out + err
    assert "ROLLBACK TRIGGERS FIRED" in out
    doc = json.loads((tmp_path / "t.json").read_text())
    c = doc["cohorts"]["canonical"]
    assert c["http_status"].get("500", 0) > 10 and c["error_rate_5xx"] > 0.05
    assert any(t["name"] == "error_rate_5xx" for t in doc["triggers"])


def test_check_reports_health_flag_and_sessions(capfd: pytest.CaptureFixture[str]) -> None:
    with target_process("--no-cloud-logging") as url:
        warn = in_process(capfd, "check", url)  # the development shape: cloud_logging off
        ok = in_process(capfd, "check", url, "--optional-dependency", "cloud_logging")
    assert warn[0] == 1 and "not true: cloud_logging" in warn[1], warn
    assert ok[0] == 0, ok
    for name in ("health.status", "health.dependencies", "canonical.flag", "canonical.session", "legacy.session"):
        assert name in ok[1]
    assert "ON (" in ok[1]

    with target_process("--no-canonical-enabled", "--unhealthy", "--health-ci-shape") as url:
        bad = in_process(capfd, "check", url)
    assert bad[0] == 2, bad
    assert "OFF (POST /run_sse answers 501)" in bad[1]
    assert "FAIL" in bad[1] and "plain-string shape" in bad[1]

    unreachable = in_process(capfd, "check", refused_url().rsplit("/", 1)[0], "--timeout", "2")
    assert unreachable[0] == 3 and "cannot reach" in unreachable[1]
