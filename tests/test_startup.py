"""Start-up: each subcommand imports what it uses. ``--version`` and ``--help`` load no command module
(no numpy, no aiohttp); ``run`` never loads aiohttp or the built-in target. Asserted on the set of
modules imported in a fresh interpreter, never on a time (a busy machine must pass)."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from sseprobe.cli import COMMANDS, cli

_PROBE = """
import json, sys
from sseprobe.cli import main
code = main(sys.argv[1:])
print(json.dumps([code, sorted(sys.modules)]))
"""


def _imported(*argv: str) -> tuple[int, set[str]]:
    """Run ``main(argv)`` in a fresh interpreter; its exit code and every module it imported."""
    r = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=120)
    code, modules = json.loads(r.stdout.strip().splitlines()[-1])
    return code, set(modules)


def _loaded(modules: set[str], *prefixes: str) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_load_no_command(argv: list[str]) -> None:
    code, modules = _imported(*argv)
    assert code == 0
    heavy = ("numpy", "aiohttp", "prometheus_client", "hdrh", "sseprobe.target", "sseprobe._api")
    assert _loaded(modules, *heavy) == []
    assert [m for m in modules if m.startswith("sseprobe.cli._")] == []


def test_run_loads_neither_aiohttp_nor_the_target() -> None:
    code, modules = _imported("run", "--help")
    assert code == 0 and "sseprobe.cli._run" in modules  # the command itself did load
    assert _loaded(modules, "aiohttp", "sseprobe.target") == []


def test_the_listed_summaries_are_the_commands_own() -> None:
    ctx = click.Context(cli)
    for name, (_module, _attr, summary) in COMMANDS.items():
        cmd = cli.get_command(ctx, name)
        assert cmd is not None and cmd.name == name
        assert summary == cmd.get_short_help_str(limit=1000), name
