"""``sseprobe monitor`` end to end against the built-in target: verdicts, history, Prometheus, alerts.

The monitor runs as the command line runs it (``main(argv)``, in this process; in a process of its own
where a signal ends it); the target runs in its own process and is degraded through its knobs
(PATCH /_target/config) between passes.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from sseprobe.ops.monitor import load_monitor_config, pass_lock
from sseprobe.report.history import CohortRow, History, PassRow
from sseprobe.verdict.schema import ResultsDocument

from .conftest import CLI, Ran, in_process
from .conftest import target_process as target
from .report_docs import partial_generator, results_doc

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-9f2c51e0a7"  # the target requires it; it must never show in any output
HOOK_SECRET = "T0K3N-hook-77b1"  # part of the webhook URL: a secret too

SCENARIO = """
[load]
sessions = 500
concurrency = 10
grace_s = 5
[timeouts]
connect_s = 5
idle_s = 10
session_s = 20
[cohorts.canonical]
flow = "canonical"
[cohorts.legacy]
flow = "legacy"
"""


def patch_target(url: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(
        f"{url}/_target/config", data=orjson.dumps(body), method="PATCH", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def target_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_target/stats", timeout=5) as resp:
        return orjson.loads(resp.read())


def monitor(capfd: pytest.CaptureFixture[str], cfg: Path, *args: str) -> Ran:
    return in_process(capfd, "monitor", "--config", str(cfg), *args)


def write_config(tmp: Path, url: str, **extra: Any) -> Path:
    (tmp / "scenario.toml").write_text(SCENARIO)
    lines = [
        f'url = "{url}"',
        'scenario = "scenario.toml"',
        'baseline = "out/baseline.json"',
        'history = "out/history.sqlite"',
        'prometheus = "out/prom/sseprobe.prom"',
        'results_dir = "out"',
        'ignore_checks = ["health.dependencies"]',
    ]
    lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in extra.items()]
    cfg = tmp / "monitor.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def prom_families(path: Path) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(path.read_text())}


@contextmanager
def app_in_thread(route: str, handler: Any, method: str = "*") -> Iterator[int]:
    """A small aiohttp server on 127.0.0.1, port 0, in its own thread; yields its port."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        app = web.Application()
        app.router.add_route(method, route, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        state["port"], state["stop"] = runner.addresses[0][1], asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await runner.cleanup()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield state["port"]
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(10)


@contextmanager
def webhook_server() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Records every POST body sent to /hook/{secret}."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append({"path": request.path, "body": await request.json()})
        return web.Response(text="ok")

    with app_in_thread("/hook/{secret}", hook, "POST") as port:
        yield port, received


def test_green_pass_then_degraded_target_is_red(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # TTFE in the hundreds of ms: a busy machine's generator lag (tens of ms, up to ~100) must not be able to
    # explain canonical's lead, or the first pass would rightly be undecided (generator-bound) instead of GREEN
    with (
        target(
            "--canonical-ttfe-ms",
            "200",
            "--legacy-ttfe-ms",
            "300",
            "--canonical-ttfe-spread",
            "0",
            "--legacy-ttfe-spread",
            "0",
            "--canonical-gap-ms",
            "2",
            "--legacy-gap-ms",
            "2",
            "--canonical-events",
            "3",
            "--legacy-events",
            "3",
            "--require-token",
            TOKEN,
        ) as url,
        webhook_server() as (port, posts),
    ):
        cfg = write_config(
            tmp_path, url, bearer_env="SSEPROBE_TEST_TOKEN", webhook_env="SSEPROBE_TEST_HOOK", html="out/monitor.html"
        )
        shorter = SCENARIO.replace("sessions = 500", "sessions = 200").replace("concurrency = 10", "concurrency = 20")
        (tmp_path / "scenario.toml").write_text(shorter)  # fewer sessions, more in flight: a pass of seconds still
        monkeypatch.setenv("SSEPROBE_TEST_TOKEN", TOKEN)
        monkeypatch.setenv("SSEPROBE_TEST_HOOK", f"http://127.0.0.1:{port}/hook/{HOOK_SECRET}")
        out = tmp_path / "out"

        # --force: a GREEN pass whose generator this busy machine saturated is stored too (without it, it is
        # not: test_a_pass_stores_the_baseline_only_when_green_and_its_generator_kept_up)
        first = monitor(capfd, cfg, "--update-baseline", "--force")
        assert first.returncode == 0, first.stdout + first.stderr
        assert first.stdout.startswith("sseprobe monitor: GREEN")
        assert re.search(r"^  canonical vs legacy +GREEN ", first.stdout, re.M)
        assert posts == []  # no alert for a GREEN pass
        assert not re.search(r"^sseprobe monitor: (YELLOW|RED|UNKNOWN) ", first.stderr, re.M)  # no failure to tell
        baseline = orjson.loads((out / "baseline.json").read_bytes())
        assert baseline["cohorts"]["canonical"]["histograms"]["ttfe_us"]  # kept with its histograms
        fams = prom_families(out / "prom" / "sseprobe.prom")
        assert {s.labels["part"]: s.value for s in fams["sseprobe_monitor_verdict"].samples}["overall"] == 0
        assert fams["sseprobe_up"].samples[0].value == 1
        first_ok = fams["sseprobe_monitor_last_success_timestamp_seconds"].samples[0].value
        assert abs(first_ok - time.time()) < 120
        ratios = {s.labels["cohort"]: s.value for s in fams["sseprobe_completion_ratio"].samples}
        assert ratios == {"canonical": 1.0, "legacy": 1.0}

        patch_target(url, {"canonical": {"p_stream_error": 0.5}})
        second = monitor(capfd, cfg)
        assert second.returncode == 2, second.stdout + second.stderr
        head = second.stdout.splitlines()[0]
        assert head.startswith("sseprobe monitor: RED") and "canonical vs legacy" in head
        assert "completion_rate is RED" in second.stdout  # says which metric
        assert re.search(r"^  canonical vs baseline +RED ", second.stdout, re.M)
        assert "webhook: RED alert sent" in second.stdout
        assert re.search(r"^sseprobe monitor: RED canonical vs baseline: ", second.stderr, re.M)  # failures on stderr
        assert len(posts) == 1 and posts[0]["body"]["text"].startswith(":red_circle: sseprobe monitor RED")
        assert "completion_rate" in posts[0]["body"]["text"]

        fams = prom_families(out / "prom" / "sseprobe.prom")
        verdicts = {s.labels["part"]: s.value for s in fams["sseprobe_monitor_verdict"].samples}
        assert verdicts["overall"] == 2 and verdicts["canonical vs legacy"] == 2
        assert fams["sseprobe_monitor_last_success_timestamp_seconds"].samples[0].value == first_ok
        ratios = {s.labels["cohort"]: s.value for s in fams["sseprobe_completion_ratio"].samples}
        assert 0.3 < ratios["canonical"] < 0.7 and ratios["legacy"] == 1.0

        hist = in_process(capfd, "history", "--config", str(cfg))
        assert hist.returncode == 0, hist.stderr
        rows = [ln for ln in hist.stdout.splitlines() if ln.strip()[:1].isdigit()]
        assert [r.split()[2] for r in rows] == ["GREEN", "RED"]
        assert "canonical completion_rate" in hist.stdout  # the trend lines
        as_json = orjson.loads(in_process(capfd, "history", "--config", str(cfg), "--json").stdout)
        assert as_json[1]["cohorts"]["canonical"]["completion_rate"] < 0.7

        html = (out / "monitor.html").read_text()
        assert "Monitor pass" in html and "canonical vs legacy" in html

        # no secret anywhere: outputs, results, metrics, report, history
        everything = first.stdout + first.stderr + second.stdout + second.stderr + hist.stdout
        for path in out.rglob("*"):
            if path.is_file():
                everything += path.read_bytes().decode("latin-1")
        assert TOKEN not in everything and HOOK_SECRET not in everything
        assert "SSEPROBE_TEST_TOKEN" in everything  # the variable's *name* may show


def test_unreachable_service_is_unknown_with_reason(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_config(tmp_path, f"http://127.0.0.1:{port}")
    res = monitor(capfd, cfg)
    assert res.returncode == 3, res.stdout + res.stderr
    assert res.stdout.startswith("sseprobe monitor: UNKNOWN")
    assert "cannot reach" in res.stdout and "Traceback" not in res.stderr
    assert re.search(r"^sseprobe monitor: UNKNOWN check: .*cannot reach", res.stderr, re.M)
    with History(tmp_path / "out" / "history.sqlite", readonly=True) as h:
        (row,) = h.recent()
        assert row.verdict == "UNKNOWN" and row.exit_code == 3
    fams = prom_families(tmp_path / "out" / "prom" / "sseprobe.prom")
    assert fams["sseprobe_up"].samples[0].value == 0
    assert {s.labels["part"]: s.value for s in fams["sseprobe_monitor_verdict"].samples}["overall"] == 3


def test_second_pass_while_one_holds_the_lock_exits_3(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9", lock="run.lock")
    with pass_lock(tmp_path / "run.lock"):  # flock: a second open file, even in this process, is refused
        res = monitor(capfd, cfg)
    assert res.returncode == 3
    assert "another pass holds the lock" in res.stderr and str(os.getpid()) in res.stderr
    assert res.stdout == ""  # an error, not a report
    assert not (tmp_path / "out" / "history.sqlite").exists()  # nothing measured, nothing written


def test_corrupt_history_stops_the_pass_with_a_clear_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    db = tmp_path / "out" / "history.sqlite"
    db.parent.mkdir()
    db.write_bytes(b"garbage, not sqlite\n" * 100)
    res = monitor(capfd, cfg)
    assert res.returncode == 3
    assert "corrupt" in res.stderr and str(db) in res.stderr and "Traceback" not in res.stderr
    assert db.read_bytes() == b"garbage, not sqlite\n" * 100


def test_killing_a_pass_mid_probe_keeps_history_and_previous_prom(tmp_path: Path) -> None:
    with target("--canonical-ttfe-ms", "300", "--legacy-ttfe-ms", "300") as url:
        cfg = write_config(tmp_path, url)
        out = tmp_path / "out"
        doc = results_doc()
        with History(out / "history.sqlite") as h:  # an earlier pass
            h.append(
                PassRow(
                    "2026-01-01T03:00:00+00:00",
                    10.0,
                    "GREEN",
                    0,
                    ["ok"],
                    [CohortRow.from_document(n, c) for n, c in doc["cohorts"].items()],
                )
            )
        prom = out / "prom" / "sseprobe.prom"
        prom.parent.mkdir(parents=True)
        prom.write_text("# previous pass\nsseprobe_up 1.0\n")
        before = prom.read_bytes()

        proc = subprocess.Popen(
            [*CLI, "monitor", "--config", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the check's sessions, then the probe's
                stats = target_stats(url)
                if stats["canonical"]["started"] + stats["legacy"]["started"] > 6:
                    break
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)
            else:
                pytest.fail("the probe never started")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL

    with History(out / "history.sqlite", readonly=True) as h:
        assert h.integrity() == "ok"
        assert [p.verdict for p in h.recent()] == ["GREEN"]
    assert prom.read_bytes() == before
    assert not list(prom.parent.glob(".*.tmp"))
    with pass_lock(tmp_path / "out" / "history.lock"):  # the dead pass's lock is gone with it
        pass


def test_config_is_strict_and_the_example_loads(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('url = "http://127.0.0.1:8000"\ncolour = "blue"\n')
    res = monitor(capfd, cfg)
    assert res.returncode == 3
    assert res.stderr.startswith(f"sseprobe: error: {cfg}: colour: expected a known key")
    cfg.write_text('url = "ftp://x"\n')
    assert "an http(s) URL" in monitor(capfd, cfg).stderr
    example = load_monitor_config(ROOT / "scenarios" / "monitor-example.toml")
    assert example.scenario is not None and example.scenario.exists()
    assert example.history.name == "history.sqlite" and example.canonical_url == example.legacy_url


def test_sigterm_mid_probe_is_unknown_and_writes_nothing(tmp_path: Path) -> None:
    """systemd's stop (or a timer's timeout) is SIGTERM: the pass says so and keeps the outputs as they were."""
    with target("--canonical-ttfe-ms", "200", "--legacy-ttfe-ms", "200") as url:
        cfg = write_config(tmp_path, url)
        proc = subprocess.Popen(
            [*CLI, "monitor", "--config", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = target_stats(url)
            if stats["canonical"]["started"] + stats["legacy"]["started"] > 6:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stdout + stderr
    assert stdout.startswith("sseprobe monitor: UNKNOWN") and "interrupted" in stdout
    with History(tmp_path / "out" / "history.sqlite", readonly=True) as h:
        assert h.count() == 0
    assert not (tmp_path / "out" / "prom" / "sseprobe.prom").exists()


def test_baseline_save_keeps_histograms_and_refuses_percentiles_only(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "run.json"
    doc = results_doc()
    src.write_bytes(orjson.dumps(doc))
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    res = in_process(capfd, "baseline", "save", str(src), "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    saved = orjson.loads((tmp_path / "out" / "baseline.json").read_bytes())
    assert saved["cohorts"]["legacy"]["histograms"] == doc["cohorts"]["legacy"]["histograms"]
    assert saved["baseline"]["source"] == str(src)
    for c in doc["cohorts"].values():
        c["histograms"] = {}
    src.write_bytes(orjson.dumps(doc))
    res = in_process(capfd, "baseline", "save", str(src), "--to", str(tmp_path / "b2.json"))
    assert res.returncode == 3 and "no encoded histograms" in res.stderr
    assert not (tmp_path / "b2.json").exists()


def test_push_to_a_pushgateway(tmp_path: Path) -> None:
    from sseprobe.report.prom import PassMetrics, push

    got: list[tuple[str, str, str]] = []

    async def metrics(request: web.Request) -> web.Response:
        got.append((request.method, request.path, await request.text()))
        return web.Response(status=200)

    with app_in_thread("/metrics/{tail:.*}", metrics) as port:
        pm = PassMetrics({"overall": "GREEN"}, time.time(), 3.0, True, cohorts=results_doc()["cohorts"])
        push(pm, f"http://127.0.0.1:{port}", "sseprobe_monitor")
    ((method, path, body),) = got
    assert method == "PUT" and path == "/metrics/job/sseprobe_monitor"
    assert "sseprobe_ttfe_seconds" in body and 'cohort="canonical"' in body


# --- a baseline that cannot be poisoned ----------------------------------------------------------

SATURATED = {"saturated": True, "error_ms": 78.7, "note": "generator loop lag p99 78.7 ms: late; other processes"}


def test_baseline_save_refuses_a_saturated_or_other_shaped_document_unless_forced(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    src = tmp_path / "run.json"
    saved = tmp_path / "out" / "baseline.json"

    def save(doc: Mapping[str, Any], *flags: str) -> tuple[int, str]:
        src.write_bytes(orjson.dumps(doc))
        code, _out, err = in_process(capfd, "baseline", "save", str(src), "--config", str(cfg), *flags)
        return code, err

    code, err = save({**results_doc(), "generator": SATURATED})
    assert code == 3 and err.count("\n") == 1 and "generator was saturated" in err and "--force" in err, err
    assert not saved.exists()
    one = results_doc()
    del one["cohorts"]["legacy"]  # a canonical-only run over the monitor's two cohorts
    code, err = save(one)
    assert code == 3 and "cohorts canonical where the monitor measures canonical, legacy" in err, err
    wide = {**results_doc(), "config": {"load": {"model": "closed", "concurrency": 100, "think": 0.0}}}
    code, err = save(wide)
    assert code == 3 and "load concurrency 100 where the monitor's is 20" in err, err  # 10 per cohort
    swapped = results_doc()
    swapped["cohorts"]["legacy"]["flow"] = "canonical"
    code, err = save(swapped)
    assert code == 3 and "cohort legacy runs flow canonical where the monitor runs legacy" in err, err
    assert not saved.exists()
    code, err = save({**results_doc(), "generator": SATURATED}, "--force")
    assert code == 0 and saved.exists(), err


def test_a_pass_stores_the_baseline_only_when_green_and_its_generator_kept_up(tmp_path: Path) -> None:
    from sseprobe.ops.monitor_writers import BaselineWriter

    def write(overall: str, generator: dict[str, Any], force: bool = False) -> list[str]:
        done = SimpleNamespace(overall=overall, doc={**results_doc(), "generator": generator}, notes=[])
        done.results_path = tmp_path / "pass.json"
        BaselineWriter(tmp_path / "baseline.json", force).write(done)  # type: ignore[arg-type]
        return list(done.notes)

    (note,) = write("GREEN", SATURATED)
    assert "not updated" in note and "generator was saturated" in note and "--force" in note
    assert not (tmp_path / "baseline.json").exists()
    (note,) = write("YELLOW", {"saturated": False})
    assert "not updated: this pass is YELLOW, not GREEN" in note
    assert write("GREEN", SATURATED, force=True) == [f"baseline: updated {tmp_path / 'baseline.json'}"]
    assert write("GREEN", {"saturated": False}) == [f"baseline: updated {tmp_path / 'baseline.json'}"]


def _typed(doc: ResultsDocument) -> ResultsDocument:
    """A results document built by the tests, as the monitor's functions take it."""
    return doc


def test_a_saturated_baseline_is_not_held_against_each_pass_and_warns_once(tmp_path: Path) -> None:
    from sseprobe.ops.monitor import baseline_parts, stale_baseline_note
    from sseprobe.verdict.policy import DEFAULT_POLICY

    tonight = _typed(results_doc(seed=2, p_fail=0.0))  # kept up: no band of its own
    baseline = _typed(
        {
            **results_doc(seed=3, p_fail=0.0),
            "generator": partial_generator(**SATURATED),
            "baseline": {"saved": "2026-12-01T00:00:00+00:00", "source": "pass-1.json"},
        }
    )
    parts = baseline_parts(tonight, baseline, DEFAULT_POLICY)
    assert [p.level for p in parts] == ["GREEN", "GREEN"], parts
    assert all("recorded saturated" in p.detail for p in parts), parts
    path = tmp_path / "baseline.json"
    first = stale_baseline_note(path, baseline)
    assert first is not None and first.startswith("baseline: WARN") and "re-record the baseline" in first
    assert stale_baseline_note(path, baseline) is None  # once, not every night
    again = _typed({**baseline, "baseline": {"saved": "2026-12-02T00:00:00+00:00", "source": "pass-2.json"}})
    assert stale_baseline_note(path, again) is not None  # a new saturated baseline is a new warning
    assert stale_baseline_note(path, _typed(results_doc())) is None  # one that kept up: nothing to say
    slower = _typed(results_doc(ttfe_ms=250.0, legacy_ttfe_ms=275.0, seed=4, p_fail=0.0))  # x5: far past its lag
    assert {p.level for p in baseline_parts(slower, baseline, DEFAULT_POLICY)} == {"RED"}


def test_history_keeps_whole_clauses_in_its_why_column() -> None:
    from sseprobe.cli._monitor import _whole_clauses

    why = "probe UNKNOWN: ttfe_p95_ms is undecided at 400 sessions; ~1,200 would decide; generator-bound: lag 80 ms"
    cut = _whole_clauses(why, width=60)
    assert cut == "probe UNKNOWN: ttfe_p95_ms is undecided at 400 sessions (+2 more)"
    assert _whole_clauses(why, width=500) == why
    long = "x" * 150 + "; y"
    assert _whole_clauses(long, width=100) == "x" * 150 + " (+1 more)"  # the first clause whole, however long


def test_a_red_pass_report_shows_the_rows_that_decided_it_and_the_saturation() -> None:
    """#24.24: a monitor report whose RED part is a comparison against the baseline shows that part's metric
    table (the canonical-vs-legacy verdict under it may be GREEN), and a saturated generator in the verdict
    section, not only in the notes."""
    from sseprobe.ops.monitor import baseline_parts
    from sseprobe.report.html import render_report
    from sseprobe.verdict.policy import DEFAULT_POLICY

    baseline = results_doc(seed=3, p_fail=0.0)
    slower = results_doc(ttfe_ms=250.0, legacy_ttfe_ms=275.0, seed=4, p_fail=0.0)
    parts = baseline_parts(_typed(slower), _typed(baseline), DEFAULT_POLICY)
    assert {p.level for p in parts} == {"RED"} and all(p.metrics for p in parts)
    doc: ResultsDocument = {
        **slower,
        "generator": partial_generator(**{**SATURATED, "error_ms": 42.0}),
        "monitor": {"overall": "RED", "exit_code": 2, "parts": [p.to_dict() for p in parts], "config": {}},
    }
    html = render_report([("pass.json", doc)])
    section = html.split("canonical vs baseline: ")[1]
    assert "RED" in section.split("</h4>")[0] and "ttfe_p95_ms" in section.split("</table>")[0]
    assert "Generator saturated</b>: timings may be late by up to 42" in html
