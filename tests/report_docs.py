"""Synthetic results documents for report, history and export tests: built the way a run builds them."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from sseprobe._outcomes import Outcome
from sseprobe._record import SessionRecord
from sseprobe.report.document import build_document
from sseprobe.verdict.intervals import IntervalLog
from sseprobe.verdict.schema import GeneratorDoc, ResultsDocument, VerdictDoc
from sseprobe.verdict.stats import CohortStats


def results_doc(
    ttfe_ms: float = 50.0,
    legacy_ttfe_ms: float | None = None,
    n: int = 400,
    p_fail: float = 0.02,
    seed: int = 1,
    with_verdict: bool = True,
) -> ResultsDocument:
    """A compare-like document: canonical and legacy cohorts, intervals over 8 s, a verdict section."""
    rng = np.random.default_rng(seed)
    log = IntervalLog(1.0)
    cohorts: dict[str, CohortStats] = {}
    for name, median in (("canonical", ttfe_ms), ("legacy", legacy_ttfe_ms or ttfe_ms * 1.1)):
        stats = CohortStats(flow=name, url="http://127.0.0.1:8000")
        for i in range(n):
            t = 8.0 * i / n
            ttfe = float(median * np.exp(0.3 * rng.standard_normal()))
            rec = SessionRecord(
                name,
                i,
                scheduled=t,
                started=t,
                status=200,
                connected=True,
                connect_ms=2.0,
                headers_ms=3.0,
                ttfe_ms=ttfe,
                events=5,
                bytes=900,
                max_gap_ms=20.0,
            )
            if rng.random() < p_fail:
                rec.outcome = Outcome.STREAM_ERROR
                rec.error = "ADK upstream error: 500"
            else:
                rec.outcome = Outcome.OK
                rec.completion_ms = ttfe + 80.0
            stats.add(rec)
            log.started(t)
            log.add(rec, t + 0.1)
        cohorts[name] = stats
    verdict: VerdictDoc | None = None
    if with_verdict:
        verdict = {
            "overall": "GREEN",
            "reasons": ["no metric worse than its YELLOW limit"],
            "metrics": [
                {
                    "name": "ttfe_p95_ms",
                    "baseline": 90.0,
                    "candidate": 82.0,
                    "change": -0.09,
                    "ci": [-0.15, -0.02],
                    "level": "GREEN",
                    "reason": "-9 %: the interval rules out",
                    "method": "order-statistic",
                },
                {
                    "name": "completion_rate",
                    "baseline": 0.98,
                    "candidate": 0.98,
                    "change": 0.0,
                    "ci": [-0.01, 0.01],
                    "level": "GREEN",
                    "reason": "failures +0.00 pp",
                    "method": "exact-binomial",
                },
            ],
            "triggers": [],
        }
    config = {
        "command": "compare",
        "cohorts": {
            c: {
                "flow": c,
                "url": "http://127.0.0.1:8000",
                "app": "vana",
                "headers": {"Authorization": "REDACTED", "X-Trace": "abc"},
            }
            for c in cohorts
        },
        "load": {"sessions": 2 * n, "concurrency": 20},
    }
    return build_document(
        started="2026-01-01T03:00:00+00:00",
        duration_s=8.2,
        config=config,
        cohorts=cohorts,
        verdict=verdict,
        extra={"intervals": log.finish(8.2)},
    )


def partial_generator(**keys: Any) -> GeneratorDoc:
    """A generator block with only the keys a test sets: a document of an earlier version or cut by hand
    (every reader of the block reads it with ``.get``)."""
    return cast(GeneratorDoc, keys)
