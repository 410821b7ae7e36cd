"""Live metrics (--metrics-port): the endpoint scraped with urllib while a real run goes on against the
built-in target, its values against the results document, refusals before any load, and the bucket
arithmetic against the HDR histograms it is derived from."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sseprobe.load.metrics import Endpoint, LiveMetrics, serve
from sseprobe.ops.monitor import MonitorError, load_monitor_config
from sseprobe.plan.options import Options
from sseprobe.report.live_metrics import (
    BOUNDS_S,
    LiveSnapshot,
    bucket_width,
    cohort_snapshot,
    live_histogram,
    merge_snapshots,
)
from sseprobe.verdict.stats import CohortStats, new_histogram
from testsupport.ports import unclaimed_port

from .conftest import in_process, sseprobe, target_process


def target_stats(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/_target/stats", timeout=10) as r:
        return dict(json.loads(r.read()))


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name -> [(labels, value)] of every sample in an exposition."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


@contextmanager
def scraping(port: int, every: float = 0.2) -> Iterator[list[str]]:
    """Scrape http://127.0.0.1:port/metrics in a thread until the block ends; yields sseprobe's bodies so
    far. The port was free when chosen: until sseprobe binds it another process (a Ray node's exporter, a
    test on another xdist worker) may answer there, and what it serves is not sseprobe's, so not kept."""
    bodies: list[str] = []
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode(errors="replace")
                if "\nsseprobe_running " in body:
                    bodies.append(body)
            except OSError:
                pass
            done.wait(every)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield bodies
    finally:
        done.set()
        t.join(5)


def outcomes_of(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, dict[str, int]]:
    got: dict[str, dict[str, int]] = {}
    for labels, value in samples["sseprobe_sessions_total"]:
        if value:
            got.setdefault(labels["cohort"], {})[labels["outcome"]] = int(value)
    return got


@pytest.fixture(scope="module")
def flaky_target() -> Iterator[str]:
    """TTFE ~120 ms (inside the 5 % buckets), and a legacy cohort that fails a tenth of its starts (5xx)."""
    with target_process(
        "--canonical-ttfe-ms", "120", "--legacy-ttfe-ms", "120", "--canonical-gap-ms", "5", "--legacy-gap-ms", "5",
        "--legacy-p-5xx", "0.1",
    ) as url:  # fmt: skip
        yield url


def test_compare_serves_live_metrics_that_end_equal_to_the_document(
    flaky_target: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    port = unclaimed_port()
    doc_path = tmp_path / "doc.json"
    secret_url = flaky_target.replace("http://", "http://probe:s3cr3t-token@")
    with scraping(port) as bodies:
        code, out, err = in_process(
            capfd, "compare", "--canonical", flaky_target, "--legacy", secret_url, "--sessions", "80", "-c", "4",
            "--workers", "1", "--metrics-port", str(port), "--metrics-linger", "1", "-o", str(doc_path),
        )  # fmt: skip
    assert code in (0, 1, 2, 3), err
    assert f"metrics on http://127.0.0.1:{port}/metrics" in err
    doc = json.loads(doc_path.read_text())
    scrapes = [parse(b) for b in bodies]
    running = [s for s in scrapes if s["sseprobe_running"][0][1] == 1.0]
    lingering = [s for s in scrapes if s["sseprobe_running"][0][1] == 0.0]
    assert running, "no scrape while the run lasted"
    assert lingering, "no scrape while the endpoint lingered"
    # while it ran: counters only grow, and never past the end
    final = outcomes_of(lingering[-1])
    assert final["legacy"].get("http_error", 0) > 0  # the 5xx knob made failures: they are counted apart
    totals = [sum(sum(v.values()) for v in outcomes_of(s).values()) for s in scrapes]
    assert totals == sorted(totals)
    ranges = doc["generator"].get("ranges") or []
    if ranges:  # a busy machine made compare lower its load: the counters also hold the sessions it left out
        discarded = sum(r["discarded"] for r in ranges)
        for name, cohort in doc["cohorts"].items():
            extra = sum(final[name].values()) - cohort["sessions"]
            assert discarded <= extra <= discarded + len(ranges), (name, extra, ranges)
    else:  # the counters end equal to the document, outcome by outcome and histogram by histogram
        assert final == {name: c["outcomes"] for name, c in doc["cohorts"].items()}
    for name, cohort in doc["cohorts"].items():
        labels = {"cohort": name, "flow": cohort["flow"]}
        count = [v for lab, v in lingering[-1]["sseprobe_ttfe_seconds_count"] if lab == labels]
        assert ranges or count == [cohort["ttfe_ms"]["count"]]
        inf = [v for lab, v in lingering[-1]["sseprobe_ttfe_seconds_bucket"] if lab == {**labels, "le": "+Inf"}]
        assert inf == count
        in_flight = [v for lab, v in lingering[-1]["sseprobe_in_flight"] if lab == labels]
        assert in_flight == [0.0]
    verdict = {lab["metric"]: v for lab, v in lingering[-1]["sseprobe_verdict"]}
    assert verdict["overall"] == {"GREEN": 0, "YELLOW": 1, "RED": 2, "INCONCLUSIVE": 3}[doc["verdict"]["overall"]]
    assert any(s["sseprobe_offered_rate"][0][1] > 0 for s in running)
    assert not any("s3cr3t" in b or "probe:" in b or flaky_target in b for b in bodies)  # no URL, no secret


def test_a_port_in_use_is_refused_in_one_line_before_any_load(
    target: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        doc_path = tmp_path / "doc.json"
        before = target_stats(target)
        code, out, err = in_process(
            capfd, "run", "--flow", "canonical", "--url", target, "--sessions", "5", "--workers", "1",
            "--metrics-port", str(port), "-o", str(doc_path),
        )  # fmt: skip
        assert target_stats(target) == before  # not one session reached the target
    assert code == 3
    assert err.strip().count("\n") == 0 and f"cannot listen on 127.0.0.1:{port}" in err, err
    assert "Traceback" not in err and out == ""
    assert not doc_path.exists()  # nothing ran: no results document


def test_offline_compare_refuses_metrics(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text("{}")
    code, _, err = in_process(capfd, "compare", str(doc), "--metrics-port", "0")
    assert code == 3 and "--metrics-port serves a live run" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--metrics-linger", "3"), "--metrics-host and --metrics-linger need --metrics-port"),
        (("--metrics-port", "70000"), "70000"),
        (("--metrics-port", "0", "--metrics-linger", "-1"), "-1"),
    ],
)
def test_bad_metrics_options_are_one_line(
    args: tuple[str, ...], expected: str, capfd: pytest.CaptureFixture[str]
) -> None:
    code, out, err = in_process(capfd, "run", "--flow", "canonical", "--url", "http://127.0.0.1:9", *args)
    assert code == 3
    assert expected in err and "Traceback" not in err


def test_workers_serve_one_merged_endpoint(flaky_target: str, tmp_path: Path) -> None:
    """Two forked workers, one endpoint in the parent: its final counts are the merged document's."""
    port = unclaimed_port()
    doc_path = tmp_path / "doc.json"
    with scraping(port) as bodies:
        proc = sseprobe(
            "run", "--flow", "canonical", "--url", flaky_target, "--sessions", "120", "-c", "6", "--workers", "2",
            "--metrics-port", str(port), "--metrics-linger", "1", "-o", str(doc_path), "-q",
        )  # fmt: skip
    assert proc.returncode in (0, 2, 3), proc.stderr
    doc = json.loads(doc_path.read_text())
    scrapes = [parse(b) for b in bodies]
    lingering = [s for s in scrapes if s["sseprobe_running"][0][1] == 0.0]
    assert lingering, proc.stderr
    assert outcomes_of(lingering[-1]) == {"canonical": doc["cohorts"]["canonical"]["outcomes"]}
    assert sum(doc["cohorts"]["canonical"]["outcomes"].values()) == 120


def test_buckets_are_the_hdr_histograms_counts() -> None:
    """Every recorded value lands in the bucket its HDR value falls in; the 5 % buckets cover 0.1-10 s."""
    h = new_histogram()
    values_ms = [0.5, 3.0, 99.0, 100.0, 101.0, 250.0, 1_000.0, 9_999.0, 20_000.0, 4_000_000.0]
    for v in values_ms:
        h.record_value(int(v * 1000))
    live = live_histogram(h)
    assert sum(live.counts) == len(values_ms)
    assert live.counts[-1] == 1  # above the last bound: 4,000 s
    for v in values_ms[:-1]:
        lo, hi = bucket_width(v / 1000)
        assert lo < v / 1000 * 1.001 and v / 1000 <= hi * 1.001
    assert live.sum_s == pytest.approx(sum(values_ms) / 1000, rel=1e-3)
    fine = [b for b in BOUNDS_S if 0.1 <= b <= 10.0]
    assert max(b / a for a, b in zip(fine, fine[1:], strict=False)) < 1.051


def test_snapshots_add_across_parts_and_batches() -> None:
    s = CohortStats(flow="canonical")
    s.outcomes.update({"ok": 3, "timeout": 1})
    for ms in (120.0, 130.0, 150.0):
        s.histograms["ttfe_us"].record_value(int(ms * 1000))
    one = LiveSnapshot({"canonical": cohort_snapshot(s, 2)}, 10.0, 0.004, False)
    two = LiveSnapshot({"canonical": cohort_snapshot(s, 1)}, 5.0, 0.020, True)
    merged = merge_snapshots([one, two])
    c = merged.cohorts["canonical"]
    assert dict(c.outcomes) == {"ok": 6, "timeout": 2} and c.in_flight == 3 and sum(c.ttfe.counts) == 6
    assert (merged.offered_rate, merged.generator_lag_s, merged.saturated) == (15.0, 0.020, True)
    live = LiveMetrics()
    live.publish(0, one)
    live.batch_done({"canonical": s})  # the batch's exact final stats replace its live snapshots
    live.publish(0, two)
    view = live.view()
    assert dict(view.snapshot.cohorts["canonical"].outcomes) == {"ok": 6, "timeout": 2}
    assert view.snapshot.cohorts["canonical"].in_flight == 1


def test_serve_stops_after_the_linger() -> None:
    with serve(Endpoint(0, linger=0.0)) as (live, url):
        with urllib.request.urlopen(url, timeout=5) as r:
            assert b"sseprobe_running 1.0" in r.read()
    t = time.monotonic()
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)
    assert time.monotonic() - t < 2.5


def test_monitor_config_reads_the_metrics_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.toml"
    cfg.write_text('url = "http://127.0.0.1:9"\nmetrics_port = 0\nmetrics_host = "127.0.0.1"\nmetrics_linger_s = 2\n')
    c = load_monitor_config(cfg)
    assert (c.metrics_port, c.metrics_host, c.metrics_linger_s) == (0, "127.0.0.1", 2)
    cfg.write_text('url = "http://127.0.0.1:9"\nmetrics_port = 99999\n')
    with pytest.raises(MonitorError, match="metrics_port"):
        load_monitor_config(cfg)


def test_cluster_driver_serves_one_merged_endpoint(
    ray_address: str, flaky_target: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Two Ray actors, one endpoint on the driver: the actors' snapshots travel in the progress it polls."""
    port = unclaimed_port()
    doc_path = tmp_path / "doc.json"
    with scraping(port) as bodies:
        code, _, err = in_process(
            capfd, "run", "--flow", "canonical", "--url", flaky_target, "--sessions", "200", "-c", "4",
            "--cluster", "local:2", "--metrics-port", str(port), "--metrics-linger", "1", "-o", str(doc_path), "-q",
        )  # fmt: skip
    assert code in (0, 2, 3), err
    doc = json.loads(doc_path.read_text())
    assert doc["generator"]["cluster"]["actors"] == 2
    scrapes = [parse(b) for b in bodies]
    lingering = [s for s in scrapes if s["sseprobe_running"][0][1] == 0.0]
    assert lingering, err
    assert outcomes_of(lingering[-1]) == {"canonical": doc["cohorts"]["canonical"]["outcomes"]}
    live = [outcomes_of(s) for s in scrapes if s["sseprobe_running"][0][1] == 1.0]
    assert any(0 < sum(o.get("canonical", {}).values()) < 200 for o in live), "no merged snapshot while it ran"


def test_scenario_keys_set_the_endpoint(tmp_path: Path) -> None:
    from sseprobe import _api

    scenario = tmp_path / "s.toml"
    scenario.write_text('[load]\nsessions = 10\nmetrics_port = 9464\nmetrics_host = "0.0.0.0"\nmetrics_linger_s = 3\n')
    target = Options(flow="canonical", url="http://127.0.0.1:9")  # under the scenario: not given
    plan = _api.make_plan(scenario, target, (), "run")
    assert plan.metrics == Endpoint(9464, "0.0.0.0", 3.0)
    flag = _api.make_plan(scenario, replace(target, metrics_port=0), {"metrics_port"}, "run")
    assert flag.metrics == Endpoint(0, "0.0.0.0", 3.0)  # the flag over the scenario, the rest from it


def _monitor_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        f'url = "{url}"\nsessions = 30\nconcurrency = 3\nhistory = "h.sqlite"\nresults_dir = "res"\n'
        f'lock = "m.lock"\n{extra}'
    )
    return cfg


def test_monitor_serves_its_probe(target: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    port = unclaimed_port()
    cfg = _monitor_config(tmp_path, target, "metrics_linger_s = 1\n")
    with scraping(port) as bodies:
        code, _, err = in_process(capfd, "monitor", "--config", str(cfg), "--metrics-port", str(port))
    assert code in (0, 1, 2, 3) and "Traceback" not in err, err  # 3: 30 sessions may not decide
    (doc_path,) = (tmp_path / "res").glob("monitor-*.json")
    doc = json.loads(doc_path.read_text())
    lingering = [parse(b) for b in bodies if "sseprobe_running 0.0" in b]
    assert lingering, err
    assert outcomes_of(lingering[-1]) == {name: c["outcomes"] for name, c in doc["cohorts"].items()}
    verdict = {lab["metric"]: v for lab, v in lingering[-1]["sseprobe_verdict"]}
    assert "overall" in verdict


def test_monitor_refuses_a_busy_port_before_the_pass(
    target: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = _monitor_config(tmp_path, target, f"metrics_port = {port}\n")
        code, out, err = in_process(capfd, "monitor", "--config", str(cfg))
    assert code == 3 and f"cannot listen on 127.0.0.1:{port}" in err, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert not (tmp_path / "h.sqlite").exists() and not (tmp_path / "res").exists()  # nothing recorded


def test_dashboard_reads_only_exported_series_through_its_datasource_variable() -> None:
    """deploy/grafana/sseprobe.json: a datasource variable every panel uses, and only series the endpoint
    serves (a renamed metric would leave a panel empty; tests/test_prometheus.py runs the queries)."""
    import re

    board = json.loads((Path(__file__).resolve().parent.parent / "deploy/grafana/sseprobe.json").read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    s = CohortStats(flow="canonical")
    s.outcomes["ok"] += 1
    live = LiveMetrics({"canonical": "canonical"})
    live.publish(0, LiveSnapshot({"canonical": cohort_snapshot(s, 1)}, 1.0, 0.001, False))
    live.set_verdict({"overall": "GREEN"})
    exported = set(parse(_render(live)))
    used: set[str] = set()
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            used |= set(re.findall(r"\bsseprobe_[a-z_]+", target["expr"]))
    assert used and used <= exported, used - exported
    for name in ("sseprobe_ttfe_seconds_bucket", "sseprobe_completion_seconds_bucket", "sseprobe_verdict"):
        assert name in used  # the panels the issue asks for


def _render(live: LiveMetrics) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    from sseprobe.report.live_metrics import SnapshotCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(live.view))
    return generate_latest(registry).decode()
