"""A real Prometheus server (Debian's ``prometheus``) scrapes a live ``compare --until-decided`` with two
workers, once a second; then its HTTP API answers every panel of deploy/grafana/sseprobe.json with data,
and the scraped series agree with the results document: sessions per outcome exactly, TTFE p95 from
``histogram_quantile`` within the resolution of the bucket the document's p95 falls in.

Skipped, saying why, only outside CI (CI unset) when the binary is missing; in CI it must run.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sseprobe.report.live_metrics import bucket_width
from testsupport.prometheus import prometheus_server, skip_reason

from .conftest import in_process, target_process

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "sseprobe.json"
JOB = "sseprobe-test"

if reason := skip_reason():
    pytest.skip(reason, allow_module_level=True)


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(Prometheus's base URL, the port the run must serve its metrics on), scraping JOB every second."""
    with prometheus_server(tmp_path, JOB) as found:
        yield found


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


def test_prometheus_scrapes_a_live_compare(
    prometheus: tuple[str, int], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    base, port = prometheus
    doc_path = tmp_path / "doc.json"
    knobs = ("--canonical-ttfe-ms", "150", "--legacy-ttfe-ms", "150", "--legacy-p-5xx", "0.05")
    start = time.time()
    with target_process(*knobs, "--canonical-gap-ms", "5", "--legacy-gap-ms", "5") as url:
        proc = in_process(
            capfd, "compare", "--canonical", url, "--legacy", url, "--until-decided", "--look-every", "60",
            "--max-sessions", "180", "-c", "4", "--workers", "2", "--metrics-port", str(port),
            "--metrics-linger", "4", "-o", str(doc_path),
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
