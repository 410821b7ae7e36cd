"""A real Prometheus server (Debian's ``prometheus``) scrapes a live ``compare --until-decided`` with two
workers, once a second; then its HTTP API answers every panel of deploy/grafana/sseprobe.json with data,
and the scraped series agree with the results document: sessions per outcome exactly, TTFE p95 from
``histogram_quantile`` within the resolution of the bucket the document's p95 falls in.

Skipped, saying why, only outside CI (CI unset) when the binary is missing; in CI it must run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sseprobe.report.live_metrics import bucket_width

from .conftest import sseprobe, target_process
from .test_live_metrics import free_port

PROMETHEUS = shutil.which("prometheus")
DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "sseprobe.json"
JOB = "sseprobe-test"

if PROMETHEUS is None and "CI" not in os.environ:
    pytest.skip(
        "the prometheus binary is not installed (apt-get install prometheus); CI installs it and runs this test",
        allow_module_level=True,
    )


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """Prometheus on 127.0.0.1 (its own port), scraping job ``sseprobe-test`` at a port chosen here, every 1 s.
    Yields (its base URL, the port the run must serve its metrics on)."""
    assert PROMETHEUS is not None, "CI must install prometheus (.ci/run)"
    metrics_port, web_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{web_port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{web_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "prometheus not ready within 60 s"
            time.sleep(0.2)
        yield base, metrics_port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def last_values(result: list[dict[str, Any]]) -> list[tuple[dict[str, str], float]]:
    """Each series' last point of a range query (the last scrape before the endpoint went away)."""
    return [(series["metric"], float(series["values"][-1][1])) for series in result if series["values"]]


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    assert {v["name"] for v in board["templating"]["list"]} >= {"datasource"}
    queries = []
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for t in panel["targets"]:
            queries.append((panel["title"], t["expr"]))
    return queries


def test_prometheus_scrapes_a_live_compare(prometheus: tuple[str, int], tmp_path: Path) -> None:
    base, port = prometheus
    doc_path = tmp_path / "doc.json"
    knobs = ("--canonical-ttfe-ms", "150", "--legacy-ttfe-ms", "150", "--legacy-p-5xx", "0.05")
    start = time.time()
    with target_process(*knobs, "--canonical-gap-ms", "5", "--legacy-gap-ms", "5") as url:
        proc = sseprobe(
            "compare", "--canonical", url, "--legacy", url, "--until-decided", "--look-every", "60",
            "--max-sessions", "180", "-c", "4", "--workers", "2", "--metrics-port", str(port),
            "--metrics-linger", "4", "-o", str(doc_path),
            timeout=180,
        )  # fmt: skip
    end = time.time()
    assert proc.returncode in (0, 1, 2, 3), proc.stderr
    assert f"metrics on http://127.0.0.1:{port}/metrics" in proc.stderr
    doc = json.loads(doc_path.read_text())
    assert doc["verdict"]["sequential"]["looks"] >= 1

    span = {"start": f"{start:.3f}", "end": f"{end + 2:.3f}", "step": "1"}
    up = last_values(api(base, "query_range", query=f'up{{job="{JOB}"}}', **span)["result"])
    assert up, "the run's endpoint was never scraped"
    running = api(base, "query_range", query=f'sseprobe_running{{job="{JOB}"}}', **span)["result"]
    assert running and {v for _, v in running[0]["values"]} == {"1", "0"}  # scraped live and while lingering

    # sessions per outcome: exactly the document's (every outcome of every cohort, zeros included)
    sessions = api(base, "query_range", query=f'sseprobe_sessions_total{{job="{JOB}"}}', **span)["result"]
    scraped: dict[str, dict[str, int]] = {}
    for labels, value in last_values(sessions):
        if value:
            scraped.setdefault(labels["cohort"], {})[labels["outcome"]] = int(value)
    assert scraped == {name: c["outcomes"] for name, c in doc["cohorts"].items()}
    assert scraped["legacy"].get("http_error", 0) > 0

    # TTFE p95 over the whole run: within the resolution of the bucket the document's p95 falls in
    q95 = f'histogram_quantile(0.95, sum by (cohort, le) (sseprobe_ttfe_seconds_bucket{{job="{JOB}"}}))'
    p95 = {labels["cohort"]: v for labels, v in last_values(api(base, "query_range", query=q95, **span)["result"])}
    for name, cohort in doc["cohorts"].items():
        want = cohort["ttfe_ms"]["p95"] / 1000.0
        lo, hi = bucket_width(want)
        assert abs(p95[name] - want) <= (hi - lo) * 1.01 + want * 0.001, (name, p95[name], want, lo, hi)

    # every dashboard panel's PromQL answers with data (Grafana's variables set as Grafana would)
    for title, expr in dashboard_queries():
        promql = expr.replace("$job", JOB).replace("$__rate_interval", "4s")
        result = api(base, "query_range", query=promql, **span)["result"]
        values = [float(v) for series in result for _, v in series["values"]]
        assert any(not math.isnan(v) for v in values), f"panel {title!r}: no data for {promql}"
