"""A real Prometheus server (Debian's ``prometheus``) for the tests that check what it scrapes.

It runs in its own process on 127.0.0.1 (a port of its own), scrapes one job every second at a port
chosen here, keeps its data and log under the test's folder, and stops when the ``with`` block ends
(or when the test process dies: ``die_with_parent``). Outside CI a test skips when the binary is
missing (``skip_reason``); in CI it must run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .adk_server import die_with_parent, stop
from .ports import unclaimed_port

__all__ = ["PROMETHEUS", "prometheus_server", "skip_reason"]

PROMETHEUS = shutil.which("prometheus")


def skip_reason() -> str | None:
    """Why a test of a real Prometheus skips here (no binary, outside CI), or None: it runs."""
    if PROMETHEUS is None and "CI" not in os.environ:
        return "the prometheus binary is not installed (apt-get install prometheus); CI installs it and runs this"
    return None


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextmanager
def prometheus_server(folder: Path, job: str) -> Iterator[tuple[str, int]]:
    """Prometheus scraping ``job`` every second; yields (its base URL, the port the run under test must
    serve its metrics on). Ready (``/-/ready``) within 60 s, or an assertion shows the end of its log."""
    assert PROMETHEUS is not None, "CI must install prometheus (.ci/run)"
    metrics_port, web_port = unclaimed_port(), unclaimed_port()
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    log_path = folder / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{web_port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # no server outlives a killed test run
        )
        base = f"http://127.0.0.1:{web_port}"
        try:
            deadline = time.monotonic() + 60
            while not _ready(base):
                assert proc.poll() is None, log_path.read_text()[-2000:]
                assert time.monotonic() < deadline, "prometheus not ready within 60 s"
                time.sleep(0.2)
            yield base, metrics_port
        finally:
            stop(proc, grace_s=15)
