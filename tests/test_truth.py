"""TTFE reported against the delay the built-in target injects, at low load, for both flows.

The bounds come from the injected shape, not from this machine's speed: the answer's first event is due
120 ms after the message arrived and the next one GAP_MS later, so a clock started late reads under 120
and a clock stopped at the wrong event reads a whole gap off. What a busy machine adds (late wake-ups,
tens of ms at load average 10) stays under half a gap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import sseprobe, target_process

GAP_MS = 60


@pytest.mark.parametrize("flow", ["canonical", "legacy"])
def test_ttfe_matches_the_injected_delay(flow: str, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    knobs = (f"--{flow}-ttfe-ms", "120", f"--{flow}-ttfe-spread", "0", f"--{flow}-gap-ms", str(GAP_MS))
    with target_process(*knobs) as url:
        r = sseprobe("run", "--flow", flow, "--url", url, "-n", "40", "-c", "4", "--workers", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    cohort = json.loads(out.read_text())["cohorts"][flow]
    ttfe, first = cohort["ttfe_ms"], cohort["first_event_ms"]
    # the delay runs from the message request's arrival to the first answer: never less, and well before
    # the second answer event (a whole gap later)
    assert 120 <= ttfe["p50"] < 120 + GAP_MS / 2, ttfe
    assert ttfe["p90"] < 120 + GAP_MS, ttfe
    if flow == "canonical":  # the first event already carries text: the same moment
        assert first == ttfe
    else:  # agent_status, published on the POST, comes first; the answer follows at the knob's delay
        assert first["p50"] < ttfe["p50"], (first, ttfe)
    # every session answered: the target's 5 content events each (knob `events`), none empty
    assert cohort["outcomes"] == {"ok": 40} and cohort["answer_events"] == 40 * 5, cohort["outcomes"]
    assert cohort["answer_chars"] > 0
