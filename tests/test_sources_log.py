"""compare --from-log: real traffic from request logs, judged by the same verdict as a live comparison.

End to end: the built-in target writes its access log (Cloud Logging shape) under load with injected
regressions, then the log is compared. Then bad input, one kind per line: nothing is lost, exit codes hold.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import orjson
import pytest

from sseprobe.sources import SourceError, Window, read_log_map, read_logs
from sseprobe.sources import logs as logs_module

from .conftest import in_process, target_process

FAST = ("--canonical-gap-ms", "5", "--legacy-gap-ms", "5", "--canonical-events", "3", "--legacy-events", "3")


# 100 sessions/s per cohort for 6 s, in two phases: a load shape asked for, which compare does not lower
# on a busy machine (self-ranging would discard a measurement the target's log still holds)
PHASES = "[[load.phases]]\nduration_s = 3\nrate = 100\n[[load.phases]]\nduration_s = 3\nrate = 100\n"


def _traffic(capfd: pytest.CaptureFixture[str], tmp_path: Path, *knobs: str) -> Path:
    """Live traffic at the target, both flows, with its access log on: the log's path."""
    log = tmp_path / "access.jsonl"
    scenario = tmp_path / "phases.toml"
    scenario.write_text(PHASES)
    with target_process("--access-log", str(log), *FAST, *knobs) as url:
        r = in_process(
            capfd, "compare", "--scenario", str(scenario), "--canonical", url, "--legacy", url, "--workers", "1",
            "--out", str(tmp_path / "live.json"),
        )  # fmt: skip
        assert r.returncode in (0, 1, 2, 3) and "Traceback" not in r.stderr, r.stderr
    return log


def _from_log(capfd: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    out = tmp_path / "fromlog.json"
    code, stdout, stderr = in_process(capfd, "compare", *args, "--out", str(out))
    doc = json.loads(out.read_text()) if out.exists() else {}
    return code, doc, stdout + stderr


def _levels(doc: dict) -> dict[str, str]:
    return {m["name"]: m["level"] for m in doc["verdict"]["metrics"]}


def test_target_log_with_injected_regression_is_red(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # completion 10 pp worse: RED needs it shown past +1 pp, which +6 pp at 600 sessions was not always
    log = _traffic(
        capfd, tmp_path, "--legacy-ttfe-ms", "100", "--canonical-ttfe-ms", "150", "--canonical-p-stream-error", "0.10",
        "--canonical-p-5xx", "0.03", "--legacy-p-premature-close", "0.03",
    )  # fmt: skip
    code, doc, text = _from_log(capfd, tmp_path, "--from-log", str(log), "--log-map", "cloud-logging")
    assert code == 2, text
    levels = _levels(doc)
    assert levels["ttfe_p95_ms"] == "RED" and levels["completion_rate"] == "RED", doc["verdict"]
    src = doc["source"]
    # the server's log and the prober's own account agree: every session, every failure injected
    live = json.loads((tmp_path / "live.json").read_text())["cohorts"]
    sessions = {name: c["sessions"] for name, c in live.items()}
    assert min(sessions.values()) >= 500, sessions  # about 600 a cohort
    assert src["kind"] == "log" and src["lines"] == sum(sessions.values()) and src["unparseable"] == 0
    assert src["records"] == sessions
    assert any("not interleaved by sseprobe" in r for r in doc["verdict"]["reasons"])
    for cohort, outcome in (("canonical", "stream_error"), ("canonical", "http_error"), ("legacy", "premature_close")):
        assert doc["cohorts"][cohort]["outcomes"][outcome] == live[cohort]["outcomes"][outcome] > 0, (cohort, outcome)
    assert doc["cohorts"]["canonical"]["http_status"]["500"] == live["canonical"]["http_status"]["500"]
    # the document is an ordinary results document: offline compare reads it back to the same verdict
    again = in_process(capfd, "compare", str(tmp_path / "fromlog.json"))
    assert again[0] == 2


def test_target_log_without_regression_is_not_an_alarm(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = _traffic(capfd, tmp_path, "--legacy-ttfe-ms", "100", "--canonical-ttfe-ms", "100")
    code, doc, text = _from_log(capfd, tmp_path, "--from-log", str(log), "--log-map", "cloud-logging")
    assert code in (0, 3), text  # GREEN, or too few sessions to tell: never YELLOW/RED (false alarm <= 1 %)
    assert doc["verdict"]["overall"] in ("GREEN", "INCONCLUSIVE")


# --- a hand-written Cloud Logging export ---------------------------------------------------------------

HAND = """\
{"timestamp": "2026-12-06T10:00:00.123456789Z", "httpRequest": {"status": 200, "latency": "1.250s"}, "jsonPayload": {"stream_mode": "canonical", "first_answer_ms": 210.5, "completed": true, "error": null}}
{"timestamp": "2026-12-06T10:00:01Z", "httpRequest": {"status": 200, "latency": "0.9s"}, "jsonPayload": {"stream_mode": "legacy", "first_answer_ms": 190, "completed": "research_complete"}}
{"timestamp": "2026-12-06T10:00:02Z", "httpRequest": {"status": 503, "latency": "0.010s"}, "jsonPayload": {"stream_mode": "canonical"}}
{"timestamp": "2026-12-06T10:00:03Z", "httpRequest": {"status": 200, "latency": "300.001s"}, "jsonPayload": {"stream_mode": "canonical", "first_answer_ms": 250, "completed": false, "error": "TIMEOUT"}}
{"timestamp": "2026-12-06T10:00:04Z", "httpRequest": {"status": 200, "latency": "2.5s"}, "jsonPayload": {"stream_mode": "legacy", "first_answer_ms": 180, "completed": false, "error": "ADK upstream error: 500"}}
{"timestamp": "2026-12-06T10:00:05Z", "httpRequest": {"status": 200, "latency": "0.4s"}, "jsonPayload": {"stream_mode": "legacy", "completed": false}}
{"timestamp": "2026-12-06T10:00:06Z", "httpRequest": {"status": 200}, "jsonPayload": {"stream_mode": "batch-export"}}
{"timestamp": "2026-12-06T10:00:07Z", "textPayload": "Started server process [1]"}
"""  # noqa: E501 - one LogEntry a line, as exported


def test_hand_written_cloud_logging_log(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text(HAND)
    read = read_logs([str(path)], read_log_map("cloud-logging"))
    can, leg = read.cohorts["canonical"], read.cohorts["legacy"]
    assert dict(can.outcomes) == {"ok": 1, "http_error": 1, "timeout": 1}
    assert dict(leg.outcomes) == {"ok": 1, "stream_error": 1, "premature_close": 1}
    assert dict(can.http_status) == {"200": 2, "503": 1} and can.connected == 2
    assert read.lines == 8 and read.other == 2 and read.unparseable == 0
    assert can.histograms["completion_us"].get_total_count() == 1  # only a success's duration is a completion
    assert can.histograms["completion_us"].get_max_value() == pytest.approx(1_250_000, rel=1e-3)
    assert can.histograms["ttfe_us"].get_total_count() == 2
    assert read.spans["canonical"].to_dict()["first"] == "2026-12-06T10:00:00.123456Z"


# --- bad input: one kind per line, nothing lost ----------------------------------------------------------

GOOD = b'{"cohort": "%s", "outcome": "ok", "status": 200, "connected": true, "ttfe_ms": 100.5}\n'
BAD = {
    "not JSON": b"{oops\n",
    "not a JSON object": b"[1, 2]\n",
    "latency": b'{"cohort": "canonical", "outcome": "ok", "ttfe_ms": "fast"}\n',
    "negative": b'{"cohort": "canonical", "outcome": "ok", "ttfe_ms": -1}\n',
    "status": b'{"cohort": "canonical", "outcome": "ok", "status": "200"}\n',
    "outcome": b'{"cohort": "legacy", "outcome": "splendid"}\n',
    "connected": b'{"cohort": "legacy", "outcome": "ok", "connected": "yes"}\n',
    "timestamp": b'{"cohort": "legacy", "outcome": "ok", "timestamp": "yesterday"}\n',
    "huge": b'{"cohort": "legacy", "pad": "' + b"x" * (2 << 20) + b'"}\n',
}


def _log(tmp_path: Path, good: int, bad: list[bytes], name: str = "log.jsonl") -> Path:
    path = tmp_path / name
    with path.open("wb") as f:
        for i in range(good):
            f.write(GOOD % (b"canonical" if i % 2 else b"legacy"))
            if i == good // 2:
                f.writelines(bad)
    return path


@pytest.mark.parametrize("kind", list(BAD))
def test_each_bad_line_is_counted_with_its_line_number(tmp_path: Path, kind: str) -> None:
    path = _log(tmp_path, 400, [BAD[kind]])
    read = read_logs([str(path)], read_log_map(None))
    assert read.lines == 401 and read.unparseable == 1, read.examples
    assert sum(s.sessions for s in read.cohorts.values()) + read.unparseable + read.other == read.lines
    assert read.examples[0].startswith(f"{path}:202: ")


def test_a_few_bad_lines_are_reported_and_the_rest_judged(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = _log(tmp_path, 1000, list(BAD.values()))  # 9 of 1,009: under 1 %
    code, doc, text = _from_log(capfd, tmp_path, "--from-log", str(path))
    assert code in (0, 3), text
    assert doc["source"]["unparseable"] == 9 and len(doc["source"]["unparseable_examples"]) == 5
    assert "unreadable log line" in text and ":502: not JSON" in text
    assert any("9 of 1,009 log lines could not be read" in r for r in doc["verdict"]["reasons"])


def test_more_than_one_percent_bad_is_exit_3_in_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = _log(tmp_path, 300, list(BAD.values()))  # 9 of 309
    code, out, err = in_process(capfd, "compare", "--from-log", str(path))
    assert code == 3 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("sseprobe: error")]
    assert len(lines) == 1 and "9 of 309 lines (2.9 %)" in lines[0], err


def test_gzip_reads_the_same(tmp_path: Path) -> None:
    plain = _log(tmp_path, 500, [BAD["not JSON"]])
    packed = tmp_path / "log.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = (read_logs([str(p)], read_log_map(None)) for p in (plain, packed))
    assert (a.lines, a.unparseable, a.examples[0].split(":", 1)[1]) == (
        b.lines,
        b.unparseable,
        b.examples[0].split(":", 1)[1],
    )
    assert {k: s.to_dict()["ttfe_ms"] for k, s in a.cohorts.items()} == {
        k: s.to_dict()["ttfe_ms"] for k, s in b.cohorts.items()
    }


@pytest.mark.parametrize("shape", [b"\0" * (1 << 20), b"{}\n" * (1 << 18)])
def test_gzip_bomb_is_refused(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, shape: bytes
) -> None:
    """One endless line, or endless small lines: stopped at the inflation cap (lowered here to 4 MiB)."""
    monkeypatch.setattr(logs_module, "INFLATE_FLOOR", 4 << 20)
    bomb = tmp_path / "bomb.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as f:
        for _ in range(16):  # 16 MiB inflated from a few KiB
            f.write(shape)
    assert bomb.stat().st_size < 64 << 10
    code, _out, err = in_process(capfd, "compare", "--from-log", str(bomb))
    assert code == 3 and "gzip bomb" in err and err.count("\n") == 1, err


def test_truncated_gzip_is_exit_3(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data = gzip.compress(_log(tmp_path, 2000, []).read_bytes())
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    code, _out, err = in_process(capfd, "compare", "--from-log", str(cut))
    assert code == 3 and "not a readable gzip file" in err and "Traceback" not in err, err


# --- the time window ------------------------------------------------------------------------------------


def _stamped(tmp_path: Path, spans: dict[str, tuple[int, int]], n: int = 200) -> Path:
    path = tmp_path / "stamped.jsonl"
    with path.open("wb") as f:
        for cohort, (start, end) in spans.items():
            for i in range(n):
                t = start + (end - start) * i / (n - 1)
                f.write(
                    orjson.dumps({"cohort": cohort, "outcome": "ok", "ttfe_ms": 100 + i % 7, "timestamp": t}) + b"\n"
                )
    return path


def test_cohorts_from_different_times_are_refused(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = _stamped(tmp_path, {"canonical": (1_800_000_000, 1_800_003_600), "legacy": (1_800_007_200, 1_800_010_800)})
    code, _out, err = in_process(capfd, "compare", "--from-log", str(path))
    assert code == 3 and "cover different times" in err, err


def test_partial_overlap_is_noted_and_the_window_filters(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = _stamped(tmp_path, {"canonical": (1_800_000_000, 1_800_003_600), "legacy": (1_800_002_700, 1_800_010_800)})
    code, doc, text = _from_log(capfd, tmp_path, "--from-log", str(path))
    assert code != 2 and any("overlap for only" in r for r in doc["verdict"]["reasons"]), text
    read = read_logs([str(path)], read_log_map(None), Window(1_800_002_700, 1_800_003_600))
    assert read.outside + sum(s.sessions for s in read.cohorts.values()) == read.lines == 400
    assert 0 < read.cohorts["legacy"].sessions < 200 and 0 < read.cohorts["canonical"].sessions < 200


def test_window_needs_timestamps(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = _log(tmp_path, 300, [])
    code, _out, err = in_process(capfd, "compare", "--from-log", str(path), "--window", "24h")
    assert code == 3 and "no timestamp to place it in the window" in err, err


# --- the mapping ----------------------------------------------------------------------------------------


def test_mapping_typos_are_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "map.toml"
    bad.write_text('[fields]\ncohort = "mode"\nttfe = "x"\n[cohorts]\ncanonical = "c"\n')
    code, _out, err = in_process(capfd, "compare", "--from-log", str(_log(tmp_path, 10, [])), "--log-map", str(bad))
    assert code == 3 and "fields.ttfe: expected a known key" in err, err
    with pytest.raises(SourceError, match="no line names a cohort"):
        other = tmp_path / "other.toml"
        other.write_text('[fields]\ncohort = "cohort"\n[cohorts]\ncanonical = "blue"\nlegacy = "green"\n')
        read_logs([str(_log(tmp_path, 10, [], "x.jsonl"))], read_log_map(str(other)))


# --- baseline collect -----------------------------------------------------------------------------------


def test_baseline_collect_over_a_window_feeds_offline_compare(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Yesterday's log as the baseline (only the last 24 h of it), today's canary log judged against it."""
    day = 86_400
    path = tmp_path / "yesterday.jsonl"
    with path.open("wb") as f:
        for i in range(3000):  # two days of traffic; the first day is slower and must not count
            t = 1_800_000_000 + i * (2 * day / 3000)
            ms = (200.0 if t < 1_800_000_000 + day else 100.0) + i % 17
            cohort = "legacy" if i % 3 else "canonical"
            f.write(orjson.dumps({"cohort": cohort, "outcome": "ok", "ttfe_ms": ms, "timestamp": t}) + b"\n")
    base = tmp_path / "baseline.json"
    until = str(1_800_000_000 + 2 * day)
    code, out, err = in_process(
        capfd, "baseline", "collect", "--from-log", str(path), "--window", "24h", "--until", until, "--to", str(base)
    )
    assert code == 0 and "baseline collected" in out, err
    doc = json.loads(base.read_text())
    assert doc["schema"] == "sseprobe.result/1" and doc["source"]["outside_window"] == 1500
    assert sum(c["sessions"] for c in doc["cohorts"].values()) == 1500 and "verdict" not in doc
    assert doc["cohorts"]["legacy"]["ttfe_ms"]["p50"] < 130  # only the fast day
    # today's canary: 40 % slower than the baseline's legacy
    today = tmp_path / "today.jsonl"
    today.write_bytes(b"".join(
        orjson.dumps({"cohort": "canonical", "outcome": "ok", "ttfe_ms": 140.0 + i % 17}) + b"\n" for i in range(1000)
    ))  # fmt: skip
    code, out, err = in_process(
        capfd, "compare", str(base), str(_canary_doc(tmp_path, today)), "--baseline-cohort", "legacy",
        "--candidate-cohort", "canonical",
    )  # fmt: skip
    assert code == 2 and "ttfe_p95_ms" in out, out + err


def test_a_collected_baseline_reads_as_the_monitor_reads_one(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The monitor loads its baseline with read_document and judges same-named cohorts (ops.monitor)."""
    from sseprobe.ops.monitor import baseline_parts
    from sseprobe.report.document import read_document
    from sseprobe.verdict.policy import DEFAULT_POLICY

    base, today = tmp_path / "base.json", tmp_path / "today.json"
    for log, out in ((_log(tmp_path, 600, [], "a.jsonl"), base), (_log(tmp_path, 600, [], "b.jsonl"), today)):
        assert in_process(capfd, "baseline", "collect", "--from-log", str(log), "--to", str(out))[0] == 0
    docs = [read_document(p) for p in (today, base)]
    parts = baseline_parts(docs[0], docs[1], DEFAULT_POLICY)
    assert sorted(p.name for p in parts) == ["canonical vs baseline", "legacy vs baseline"], parts
    assert all(p.level == "GREEN" for p in parts), parts  # the same traffic


def _canary_doc(tmp_path: Path, log: Path) -> Path:
    from sseprobe.cli import main

    out = tmp_path / "canary.json"
    assert main(["baseline", "collect", "--from-log", str(log), "--to", str(out)]) == 0
    return out


def test_batched_recording_equals_one_by_one() -> None:
    """The log folder records latencies in batches: the same histogram as CohortStats.add's value by value."""
    import numpy as np

    from sseprobe.verdict.stats import _record_ms, new_histogram, record_many_ms

    values = np.concatenate([np.random.default_rng(3).lognormal(5, 2, 50_000), [0, 4e-4, 2.047, 2.048, 4.096, 5e9]])
    one, many = new_histogram(), new_histogram()
    for v in values.tolist():
        _record_ms(one, v)
    record_many_ms(many, values[:1000])
    record_many_ms(many, values[1000:])
    assert one.encode() == many.encode() and (one.min_value, one.max_value) == (many.min_value, many.max_value)


def test_stdin_and_several_files_add_up(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-`` reads stdin (here a gzip stream in its place), gzip too; lines of every file count."""
    a, b = _log(tmp_path, 300, [BAD["not JSON"]], "a.jsonl"), _log(tmp_path, 200, [], "b.jsonl")
    out = tmp_path / "both.json"
    stdin = io.BufferedReader(io.BytesIO(gzip.compress(b.read_bytes())))  # a buffered reader, as a real stdin is
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
    r = in_process(capfd, "compare", "--from-log", str(a), "--from-log", "-", "--out", str(out))
    assert r.returncode in (0, 3) and "Traceback" not in r.stderr, r.stderr
    src = json.loads(out.read_text())["source"]
    assert src["files"] == [str(a), "-"] and src["lines"] == 501 and src["unparseable"] == 1
    assert src["records"] == {"canonical": 250, "legacy": 250}


def test_access_log_refusals_before_listening(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, _out, err = in_process(
        capfd, "target", "--port", "0", "--profile", "vana-real", "--access-log", str(tmp_path / "a")
    )
    assert code == 3 and "the default profile only" in err, err
    code, _out, err = in_process(
        capfd, "target", "--port", "0", "--access-log", str(tmp_path / "no" / "such" / "a.jsonl")
    )
    assert code == 3 and "cannot write there" in err, err
