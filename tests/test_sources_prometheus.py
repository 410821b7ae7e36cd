"""compare --from-prometheus: histogram buckets from Prometheus' HTTP API, judged on the buckets' edges.

A small server on 127.0.0.1 answers the real query API's shape with fixed buckets; and the Debian
``prometheus`` binary (in CI; skipped elsewhere when missing) scrapes a live compare's own metrics.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from testsupport.prometheus import prometheus_server, skip_reason

from .conftest import in_process, target_process

FAST_KNOBS = ("--canonical-gap-ms", "5", "--legacy-gap-ms", "5", "--canonical-events", "3", "--legacy-events", "3")
FINE = tuple(0.05 * 1.02**i for i in range(120)) + (math.inf,)  # 2 % wide buckets from 50 ms to ~530 ms
COARSE = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)  # the client libraries' default


def _cumulative(edges: tuple[float, ...], n: int, median_s: float, sigma: float = 0.25) -> list[tuple[float, float]]:
    """n requests of a lognormal latency, as a histogram's cumulative bucket counts."""
    out: list[tuple[float, float]] = []
    for e in edges:
        cdf = 1.0 if math.isinf(e) else 0.5 * (1 + math.erf(math.log(e / median_s) / (sigma * math.sqrt(2))))
        out.append((e, round(n * cdf)))
    return out


@contextmanager
def prometheus_api(answers: dict[str, object]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A server speaking /api/v1/query: the answer whose key the query contains (a list of buckets, or a
    (status, body) pair to answer as it is). Yields its URL and the queries it received."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urllib.parse.urlsplit(self.path)
            params = dict(urllib.parse.parse_qsl(url.query))
            seen.append({"path": url.path, **params, "auth": self.headers.get("Authorization", "")})
            key = next((k for k in answers if k in params.get("query", "")), None)
            answer = answers.get(key) if key else None
            if isinstance(answer, tuple):
                status, body = answer
            elif answer is None:
                status, body = 200, {"status": "success", "data": {"resultType": "vector", "result": []}}
            else:
                result = [
                    {"metric": {"le": "+Inf" if math.isinf(e) else repr(e)}, "value": [time.time(), str(c)]}
                    for e, c in answer  # type: ignore[attr-defined]
                ]
                status, body = 200, {"status": "success", "data": {"resultType": "vector", "result": result}}
            data = orjson.dumps(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _compare(capfd: pytest.CaptureFixture[str], tmp_path: Path, url: str, *extra: str) -> tuple[int, dict, str]:
    out = tmp_path / "prom.json"
    code, stdout, stderr = in_process(
        capfd, "compare", "--from-prometheus", url, "--query-canonical", 'ttfe_seconds_bucket{mode="canonical"}',
        "--query-legacy", 'ttfe_seconds_bucket{mode="legacy"}', "--window", "24h", *extra, "--out", str(out),
    )  # fmt: skip
    return code, (json.loads(out.read_text()) if out.exists() else {}), stdout + stderr


def _levels(doc: dict) -> dict[str, str]:
    return {m["name"]: m["level"] for m in doc["verdict"]["metrics"]}


def test_fine_buckets_unchanged_is_green(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    same = _cumulative(FINE, 20_000, 0.2)
    with prometheus_api({'mode="canonical"': same, 'mode="legacy"': same}) as (url, seen):
        code, doc, text = _compare(capfd, tmp_path, url, "--until", "1800000000")
    assert code == 0, text
    assert {q["query"] for q in seen} == {
        'sum by (le) (increase(ttfe_seconds_bucket{mode="canonical"}[24h]))',
        'sum by (le) (increase(ttfe_seconds_bucket{mode="legacy"}[24h]))',
    }
    assert {q["time"] for q in seen} == {"1800000000.000"} and {q["path"] for q in seen} == {"/api/v1/query"}
    assert set(_levels(doc)) == {"ttfe_p50_ms", "ttfe_p95_ms", "ttfe_p99_ms"}  # latency only: rates unmeasured
    assert doc["source"]["kind"] == "prometheus" and doc["source"]["window"]["until"] == "2027-01-15T08:00:00Z"
    assert doc["cohorts"]["canonical"]["completion_rate"] is None and doc["cohorts"]["canonical"]["sessions"] == 20_000
    assert any("both edges of their buckets" in r for r in doc["verdict"]["reasons"])
    assert all(m["method"].startswith("bucket-edges") for m in doc["verdict"]["metrics"])
    # offline, its upper edges would pass for exact values: refused
    code, _out, err = in_process(capfd, "compare", str(tmp_path / "prom.json"))
    assert code == 3 and "holds Prometheus buckets" in err, err


def test_fine_buckets_slower_canary_is_red(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    base, slow = _cumulative(FINE, 20_000, 0.2), _cumulative(FINE, 1_000, 0.28)  # +40 %, a 5 % canary
    with prometheus_api({'mode="canonical"': slow, 'mode="legacy"': base}) as (url, _seen):
        code, doc, text = _compare(capfd, tmp_path, url)
    assert code == 2 and _levels(doc)["ttfe_p95_ms"] == "RED", text


def test_coarse_buckets_are_never_green(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Default buckets: the p95 of both lies in (0.25, 0.5] s, a factor 2 wide: no GREEN, however many requests."""
    same = _cumulative(COARSE, 1_000_000, 0.2)
    with prometheus_api({'mode="canonical"': same, 'mode="legacy"': same}) as (url, _seen):
        code, doc, text = _compare(capfd, tmp_path, url)
    assert code == 3, text
    assert "bucket resolution" in next(m for m in doc["verdict"]["metrics"] if m["name"] == "ttfe_p95_ms")["reason"]


def test_credentials_are_sent_never_shown(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    same = _cumulative(FINE, 5_000, 0.2)
    with prometheus_api({'mode="canonical"': same, 'mode="legacy"': same}) as (url, seen):
        code, doc, text = _compare(capfd, tmp_path, url.replace("http://", "http://ops:hunter2@"))
    assert code in (0, 3) and seen[0]["auth"].startswith("Basic ")
    assert "hunter2" not in json.dumps(doc) and "hunter2" not in text


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ((400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}), "parse error"),
        ((200, {"status": "success", "data": {"resultType": "matrix", "result": []}}), "not an instant vector"),
        ((200, {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "3"]}]}}),
         "without an 'le' label"),
        ((200, {"status": "success", "data": {"resultType": "vector", "result": []}}), "answers no buckets"),
        ((200, ["not", "an", "answer"]), "not a Prometheus query answer"),
    ],
)  # fmt: skip
def test_wrong_answers_are_one_line_exit_3(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], answer: tuple[int, object], said: str
) -> None:
    with prometheus_api({'mode="canonical"': answer, 'mode="legacy"': _cumulative(FINE, 100, 0.2)}) as (url, _seen):
        code, doc, text = _compare(capfd, tmp_path, url)
    assert code == 3 and said in text and "Traceback" not in text and not doc, text
    assert len([line for line in text.splitlines() if line.startswith("sseprobe: error")]) == 1


def test_no_server_is_exit_3(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _doc, text = _compare(capfd, tmp_path, f"http://127.0.0.1:{port}")
    assert code == 3 and "cannot query" in text, text


# --- a real Prometheus scraping sseprobe's own live metrics --------------------------------------------


JOB = "sseprobe-live"


@pytest.fixture
def real_prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real Prometheus scraping job JOB every second: (its URL, the port the run serves its metrics on)."""
    if reason := skip_reason():
        pytest.skip(reason)
    with prometheus_server(tmp_path, JOB) as found:
        yield found


def test_real_prometheus_scraping_a_live_compare(
    real_prometheus: tuple[str, int], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A live compare with an injected regression (canonical +40 %) serves its metrics; a real Prometheus
    scrapes them every second; then compare --from-prometheus judges the scraped buckets: RED, with as
    many requests as the live document counted."""
    base, port = real_prometheus
    live = tmp_path / "live.json"
    with target_process("--canonical-ttfe-ms", "210", "--legacy-ttfe-ms", "150", *FAST_KNOBS) as url:
        proc = in_process(
            capfd, "compare", "--canonical", url, "--legacy", url, "-n", "300", "-c", "8", "--workers", "1",
            "--metrics-port", str(port), "--metrics-linger", "4", "-o", str(live),
        )  # fmt: skip
    assert proc.returncode in (0, 1, 2, 3) and "Traceback" not in proc.stderr, proc.stderr
    time.sleep(1.5)  # the last scrape lands
    # max_over_time of the cumulative buckets: the run's final counts (a Q with a parenthesis is sent as written)
    select = 'sseprobe_ttfe_seconds_bucket{{job="{job}",cohort="{cohort}"}}'
    q = {c: f"sum by (le) (max_over_time({select.format(job=JOB, cohort=c)}[10m]))" for c in ("canonical", "legacy")}
    out = tmp_path / "prom.json"
    code, stdout, stderr = in_process(
        capfd, "compare", "--from-prometheus", base, "--query-canonical", q["canonical"],
        "--query-legacy", q["legacy"], "--window", "10m", "--out", str(out),
    )  # fmt: skip
    assert code == 2, stdout + stderr
    doc, live_doc = json.loads(out.read_text()), json.loads(live.read_text())
    assert _levels(doc)["ttfe_p95_ms"] == "RED", doc["verdict"]
    # the live counters hold every session sent: on a busy machine compare may have lowered its load and
    # left the sessions measured before out of its document (generator.ranges), not out of the metrics
    ranges = live_doc["generator"].get("ranges") or []
    left_out = sum(r["discarded"] for r in ranges)
    for cohort in ("canonical", "legacy"):
        scraped, kept = doc["cohorts"][cohort]["sessions"], live_doc["cohorts"][cohort]["ttfe_ms"]["count"]
        assert kept > 250 and kept <= scraped <= kept + left_out + len(ranges), (cohort, scraped, kept, ranges)
        assert ranges or scraped == kept, cohort
