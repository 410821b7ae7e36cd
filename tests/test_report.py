"""HTML report (string level), .hgrm export, the report command, compare --html, Prometheus rendering."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from prometheus_client.parser import text_string_to_metric_families

from sseprobe.cli import main
from sseprobe.report.document import dumps
from sseprobe.report.hgrm import percentile_distribution
from sseprobe.report.html import render_report, scrub
from sseprobe.report.prom import PassMetrics, write_textfile
from sseprobe.verdict.compare import judge
from sseprobe.verdict.policy import DEFAULT_POLICY
from sseprobe.verdict.stats import CohortStats

from .report_docs import results_doc

_HGRM_LINE = re.compile(r"^ {0,11}\d+\.\d{3} [01]\.\d{12} +\d+( +\d+\.\d{2})?$")


def test_report_has_both_cohorts_distributions_over_time_and_no_network() -> None:
    html = render_report([("results/compare-x.json", results_doc())])
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # self-contained: nothing to fetch, and a policy that forbids fetching anyway
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html and "@import" not in html
    assert "default-src 'none'" in html
    ttfe = html.split('id="ttfe"')[1].split('id="completion"')[0]
    completion = html.split('id="completion"')[1].split('id="over-time"')[0]
    for chart in (ttfe, completion):
        paths = re.findall(r'<path d="([^"]+)" fill="none" stroke="(#[0-9A-Fa-f]{6})"', chart)
        assert len(paths) == 2 and len({c for _, c in paths}) == 2  # one line per cohort, told apart
        assert all(d.startswith("M") and d.count("L") > 10 for d, _ in paths)
        assert "99.9%" in chart and "percentile (log scale" in chart
        assert "canonical" in chart and "legacy" in chart
    over = html.split('id="over-time"')[1].split('id="outcomes"')[0]
    assert "TTFE per interval" in over and "Outcomes per interval" in over
    assert over.count('<path d="M') >= 8
    outcomes = html.split('id="outcomes"')[1]
    assert "stream_error" in outcomes and "ok" in outcomes
    assert "GREEN" in html and "ttfe_p95_ms" in html


def test_report_config_section_has_no_secrets() -> None:
    doc = results_doc()
    doc["config"]["cohorts"]["canonical"]["headers"] = {"Authorization": "Bearer s3cr3t-token", "X-Api-Key": "k3y"}
    doc["config"]["webhook_url"] = "https://hooks.example/T000/s3cr3t"
    doc["config"]["bearer_env"] = "SSEPROBE_TOKEN"
    html = render_report([("a.json", doc)])
    assert "s3cr3t" not in html and "k3y" not in html
    assert "SSEPROBE_TOKEN" in html  # the *name* of the variable is no secret
    assert scrub({"token": "x", "headers": {"A": "b"}}) == {"token": "REDACTED", "headers": {"A": "REDACTED"}}


def test_report_of_several_documents_labels_each_series() -> None:
    html = render_report([("base.json", results_doc(seed=1)), ("cand.json", results_doc(ttfe_ms=80, seed=2))])
    ttfe = html.split('id="ttfe"')[1].split('id="completion"')[0]
    assert len(re.findall(r'<path d="M[^"]+" fill="none" stroke="#', ttfe)) == 4
    assert "base: canonical" in ttfe and "cand: legacy" in ttfe


def test_hgrm_matches_the_hdrhistogram_format() -> None:
    h = HdrHistogram(1, 3_600_000_000, 3)
    for v in range(1000, 101_000, 100):  # 1 ms .. 101 ms in µs
        h.record_value(v)
    text = percentile_distribution(h)
    lines = text.splitlines()
    assert lines[0] == "       Value     Percentile TotalCount 1/(1-Percentile)"
    assert lines[1] == ""
    body = [ln for ln in lines[2:] if not ln.startswith("#")]
    assert body and all(_HGRM_LINE.match(ln) for ln in body), body[:3]
    first, last = body[0].split(), body[-1].split()
    assert float(first[1]) == 0.0 and float(last[1]) == 1.0 and len(last) == 3  # 100 % line has no last column
    assert int(last[2]) == h.get_total_count()
    assert float(last[0]) == pytest.approx(h.get_max_value() / 1000, rel=1e-3)  # values in ms
    pcts = [float(ln.split()[1]) for ln in body]
    assert pcts == sorted(pcts)
    footer = [ln for ln in lines if ln.startswith("#")]
    assert footer[0].startswith("#[Mean    = ") and "StdDeviation   = " in footer[0]
    std = float(footer[0].split("StdDeviation   =")[1].strip(" ]"))
    assert std == pytest.approx(h.get_stddev() / 1000, rel=1e-3)  # scaled like the values (hdrh forgets to)
    assert footer[1].startswith("#[Max     = ") and footer[1].endswith(f"Total count    = {h.get_total_count():12d}]")
    assert footer[2].startswith("#[Buckets = ")


def test_report_command_writes_html_and_hgrm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "compare-1.json"
    src.write_bytes(dumps(results_doc()))
    out = tmp_path / "r.html"
    assert main(["report", str(src), "--html", str(out), "--hgrm", str(tmp_path / "h")]) == 0
    assert "<svg" in out.read_text()
    names = sorted(p.name for p in (tmp_path / "h").iterdir())
    assert "compare-1.canonical.ttfe_ms.hgrm" in names and "compare-1.legacy.completion_ms.hgrm" in names
    assert main(["report", str(src)]) == 3
    assert "nothing to write" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert main(["report", str(tmp_path / "bad.json"), "--html", str(out)]) == 3


def test_offline_compare_writes_html(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_bytes(dumps(results_doc(seed=1)))
    b.write_bytes(dumps(results_doc(seed=2)))
    out = tmp_path / "cmp.html"
    code = main(["compare", str(a), str(b), "--html", str(out)])
    first = CohortStats.from_dict(results_doc(seed=1)["cohorts"]["canonical"])
    second = CohortStats.from_dict(results_doc(seed=2)["cohorts"]["canonical"])
    assert code == judge(first, second, DEFAULT_POLICY).exit_code  # the verdict's own code
    html = out.read_text()
    assert "baseline:canonical" in html and "candidate:canonical" in html
    assert html.count('<span class="badge"') >= 2  # the verdict and its metric rows


def test_prometheus_text_parses_back(tmp_path: Path) -> None:
    doc = results_doc()
    pm = PassMetrics(
        parts={"overall": "RED", "check": "GREEN", "canonical vs legacy": "RED"},
        started_ts=1_767_236_400.0,
        duration_s=12.0,
        up=True,
        last_success_ts=1_767_150_000.0,
        cohorts=doc["cohorts"],
    )
    path = write_textfile(pm, tmp_path / "sseprobe.prom")
    fams = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    verdict = {s.labels["part"]: s.value for s in fams["sseprobe_monitor_verdict"].samples}
    assert verdict == {"overall": 2.0, "check": 0.0, "canonical vs legacy": 2.0}
    assert fams["sseprobe_monitor_last_success_timestamp_seconds"].samples[0].value == 1_767_150_000.0
    ratio = {s.labels["cohort"]: s.value for s in fams["sseprobe_completion_ratio"].samples}
    assert ratio["canonical"] == pytest.approx(doc["cohorts"]["canonical"]["completion_rate"])
    ttfe = fams["sseprobe_ttfe_seconds"]
    assert ttfe.type == "summary"
    q95 = [s for s in ttfe.samples if s.labels.get("quantile") == "0.95" and s.labels["cohort"] == "legacy"]
    p95 = doc["cohorts"]["legacy"]["ttfe_ms"]["p95"]
    assert p95 is not None and q95[0].value == pytest.approx(p95 / 1000)
    outcomes = {(s.labels["cohort"], s.labels["outcome"]): s.value for s in fams["sseprobe_sessions"].samples}
    assert outcomes[("canonical", "ok")] == doc["cohorts"]["canonical"]["outcomes"]["ok"]
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file


def test_textfile_is_readable_by_the_collector_user(tmp_path: Path) -> None:
    pm = PassMetrics(parts={"overall": "GREEN"}, started_ts=1.0, duration_s=1.0, up=True)
    old = os.umask(0o022)
    try:
        path = write_textfile(pm, tmp_path / "x.prom")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
