"""Load runs through the CLI against the built-in target: open model, slowdowns, workers, signals."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from sseprobe._outcomes import Outcome
from sseprobe._record import SessionRecord
from sseprobe.plan.scenario import load_scenario
from sseprobe.verdict.stats import CohortStats, summarize_ms

from .conftest import CLI, in_process, sseprobe, target_process


def _doc(path: Path) -> dict:
    return json.loads(path.read_text())


def test_open_model_achieves_the_rate(target: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = sseprobe(
        "run",
        "--flow",
        "canonical",
        "--url",
        target,
        "--rate",
        "40",
        "--duration",
        "5",
        "--workers",
        "1",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    doc = _doc(out)
    c = doc["cohorts"]["canonical"]
    assert c["sessions"] == 200  # 40/s for 5 s, evenly spaced
    started = [i["started"] for i in doc["intervals"]]
    # arrivals were on time: what started in the first 5 one-second intervals is the rate
    assert sum(started[:5]) == pytest.approx(200, rel=0.02)
    assert c["lag_ms"]["p99"] < 50
    assert doc["config"]["load"]["model"] == "open"


def _target_json(url: str, path: str, patch: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"{url}{path}",
        method="PATCH" if patch else "GET",
        data=json.dumps(patch).encode() if patch else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"{}")


def test_slowdown_mid_run_shows_in_lag_and_ttfe(tmp_path: Path) -> None:
    out = tmp_path / "slow.json"
    patched_at: list[float] = []
    with target_process("--canonical-ttfe-ms", "20", "--canonical-ttfe-spread", "0", "--canonical-gap-ms", "5") as url:

        def slow_down() -> None:
            """On an event, not a timer: once 40 sessions (a second of the run) completed at full speed."""
            deadline = time.monotonic() + 60
            while _target_json(url, "/_target/stats")["canonical"]["completed"] < 40:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)
            _target_json(url, "/_target/config", {"canonical": {"ttfe_ms": 400}})
            patched_at.append(time.time())

        threading.Thread(target=slow_down, daemon=True).start()
        r = sseprobe(
            "run",
            "--flow",
            "canonical",
            "--url",
            url,
            "--rate",
            "40",
            "--duration",
            "6",
            "--max-in-flight",
            "8",
            "--workers",
            "1",
            "--out",
            str(out),
        )
    assert patched_at, "the service was never slowed down: 40 sessions never completed"
    doc = _doc(out)
    # the TTFE trigger may fire on the queue behind --max-in-flight: the generator's start lag, said as such (3)
    fired = doc["triggers"]
    assert r.returncode == (0 if not fired else 2 if any(not t.get("generator_bound") for t in fired) else 3), (
        r.stderr,
        fired,
    )
    if doc["generator"]["loop_lag_ms"]["p99"] > 100:
        pytest.fail(f"the generator's loop was stalled by the machine: {doc['generator']['note']}")
    t_patch = patched_at[0] - datetime.fromisoformat(doc["started"]).timestamp()
    ivals = [i for i in doc["intervals"] if "canonical" in i["cohorts"] and "ttfe_p95_ms" in i["cohorts"]["canonical"]]
    early = [i["cohorts"]["canonical"]["ttfe_p95_ms"] for i in ivals if i["t"] + 1 <= t_patch]
    late = [i["cohorts"]["canonical"]["ttfe_p95_ms"] for i in ivals if i["t"] >= t_patch + 1.5]
    assert early and late and max(early) < 150 and min(late) > 400, (t_patch, early, late)
    c = doc["cohorts"]["canonical"]
    # 40/s with 8 in flight cannot keep up with 400 ms sessions: arrivals wait, and it shows
    assert c["lag_ms"]["max"] > 500
    assert c["ttfe_ms"]["max"] > 400 + 500  # TTFE counts from the scheduled start, lag included


def test_workers_merge_to_the_same_totals(target: str, tmp_path: Path) -> None:
    outs = {}
    for w in ("1", "2"):
        outs[w] = tmp_path / f"w{w}.json"
        r = sseprobe(
            "run", "--flow", "legacy", "--url", target, "-n", "120", "-c", "8", "--workers", w, "--out", str(outs[w])
        )
        assert r.returncode == 0, r.stderr
    one, two = _doc(outs["1"]), _doc(outs["2"])
    assert one["cohorts"]["legacy"]["sessions"] == two["cohorts"]["legacy"]["sessions"] == 120
    assert two["cohorts"]["legacy"]["outcomes"] == {"ok": 120}
    assert two["config"]["load"]["workers"] == 2
    assert sum(i["started"] for i in two["intervals"]) == 120


def test_merged_histograms_equal_one_histogram_of_every_value() -> None:
    rng = np.random.default_rng(5)
    values = rng.lognormal(np.log(200), 0.6, 5000)
    whole, a, b = CohortStats(), CohortStats(), CohortStats()
    for i, v in enumerate(values):
        rec = SessionRecord("c", i, 0.0, outcome=Outcome.OK, connected=True, ttfe_ms=float(v))
        whole.add(rec)
        (a if i % 2 else b).add(rec)
    merged = CohortStats.from_dict(a.to_dict())  # through the encoded form, as workers ship it
    merged.merge(CohortStats.from_dict(b.to_dict()))
    assert summarize_ms(merged.histograms["ttfe_us"]) == summarize_ms(whole.histograms["ttfe_us"])
    assert merged.sessions == whole.sessions == 5000


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigint_mid_run_writes_a_complete_document(target: str, tmp_path: Path, workers: str) -> None:
    out = tmp_path / "int.json"
    proc = subprocess.Popen(
        [
            *CLI,
            "run",
            "--flow",
            "canonical",
            "--url",
            target,
            "--rate",
            "30",
            "--duration",
            "60",
            "--grace",
            "1",
            "--workers",
            workers,
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SSEPROBE_PROGRESS_EVERY": "0.25"},
    )
    # interrupted once it has measured 30 sessions, however long a busy machine takes to start it
    # (a fixed sleep interrupted some runs while starting, with nothing measured yet)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if (ok := re.search(r"\| (?:canonical )?ok (\d+)", line)) and int(ok.group(1)) >= 30:
            break
    proc.send_signal(signal.SIGINT)
    stdout, rest = proc.communicate(timeout=30)
    stderr = "".join(seen) + rest
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr
    assert "\n\n" not in stderr, repr(stderr)  # #24.18: no blank line before the notices
    doc = _doc(out)
    c = doc["cohorts"]["canonical"]
    assert doc["interrupted"] is True and "SIGINT" in doc["stop_reason"]
    assert c["sessions"] >= 30 and sum(c["outcomes"].values()) == c["sessions"]
    assert c["outcomes"].get("ok", 0) >= 30


def test_every_shipped_scenario_parses() -> None:
    files = [f for f in glob.glob("scenarios/*.toml") if "policy" not in f and "monitor" not in f]
    assert len(files) >= 8
    for f in files:
        s = load_scenario(f)
        assert {c.name for c in s.cohorts} == {"canonical", "legacy"}, f
        assert s.description


def test_smoke_scenario_runs_green(target: str, tmp_path: Path) -> None:
    for flow in ("canonical", "legacy"):
        out = tmp_path / f"smoke-{flow}.json"
        r = sseprobe(
            "run",
            "--scenario",
            "scenarios/smoke.toml",
            "--flow",
            flow,
            "--url",
            target,
            "--workers",
            "1",
            "--out",
            str(out),
        )
        assert r.returncode == 0, r.stdout + r.stderr
        c = _doc(out)["cohorts"][flow]
        assert c["sessions"] == 30 and c["completion_rate"] == 1.0


def test_scenario_mistake_names_file_key_and_expectation(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[load]\nsessions = "many"\n')
    code, _out, err = in_process(
        capfd, "run", "--scenario", str(bad), "--flow", "canonical", "--url", "http://127.0.0.1:9"
    )
    assert code == 3
    assert err.count("\n") == 1 and str(bad) in err and "load.sessions" in err
    assert "whole number" in err


def test_open_model_holds_arrivals_at_max_in_flight(tmp_path: Path) -> None:
    """Arrivals far faster than streams end wait for a free slot (one future per wake-up, not a wait on every
    task in flight): the server never sees more than --max-in-flight streams, and every session still runs."""
    import asyncio
    import threading

    from aiohttp import web

    import sseprobe

    peak = [0, 0]  # open now, most at once

    async def stream(request: web.Request) -> web.StreamResponse:
        peak[0] += 1
        peak[1] = max(peak)
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await asyncio.sleep(0.05)
            await resp.write(b"data: hi\n\n")
            return resp
        finally:
            peak[0] -= 1

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/s", stream)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        plan = sseprobe.plan_from(
            None,
            {
                "flow": "generic",
                "url": f"http://127.0.0.1:{port}/s",
                "method": "GET",
                "rate": 400.0,
                "sessions": 40,
                "max_in_flight": 3,
                "workers": 1,
                "quiet": True,
                "out": str(tmp_path / "r.json"),
            },
            "run",
        )
        result = sseprobe.run(plan, progress=None)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    cohort = result.document["cohorts"]["generic"]
    assert cohort["outcomes"] == {"ok": 40}
    assert 1 <= peak[1] <= 3
