"""Where a baseline is stored, for ``baseline save`` and ``baseline collect``: ``--config`` (the monitor
config's baseline path) or ``--to`` (a path), exactly one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..ops.monitor_config import MonitorConfig, load_monitor_config
from ._common import UsageProblem

__all__ = ["baseline_destination", "baseline_path", "config_option"]


def config_option(what: str, required: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--config`` / ``-C``: a monitor config file (``monitor``, ``history``, ``baseline``); ``what``: its use."""
    return click.option(
        "--config", "-C", "config_path", required=required, type=click.Path(dir_okay=False), default=None, help=what
    )


def baseline_destination(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` / ``--to``: where a baseline is stored (``baseline save``, ``baseline collect``)."""
    to = click.option("--to", "dest", type=click.Path(dir_okay=False), default=None, help="Save to this path instead.")
    return config_option("Save to this monitor config's baseline path.")(to(f))


def baseline_path(config_path: str | None, dest: str | None) -> tuple[MonitorConfig | None, Path]:
    """The monitor config named (None with --to) and the baseline's path: exactly one of the two flags."""
    if config_path is not None and dest is None:
        cfg = load_monitor_config(config_path)
        if cfg.baseline is None:
            raise UsageProblem(f"{config_path}: no 'baseline' path in the config")
        return cfg, cfg.baseline
    if dest is not None and config_path is None:
        return None, Path(dest)
    raise UsageProblem("give exactly one of --config FILE (its baseline path) or --to PATH")
