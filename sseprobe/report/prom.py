"""Prometheus exposition of a monitor pass: a textfile for node_exporter's collector, optionally a push.

Why a textfile: the nightly pass is a cron job, not a server, and node_exporter's textfile
collector is the standard way to expose such a job; the file is replaced atomically (temp file,
fsync, rename in the same folder), so the collector never reads half a file and a killed pass
leaves the previous file in place. Values use base units (seconds, ratios in [0, 1]); every
per-cohort series carries a ``cohort`` label. Rendering goes through prometheus-client, so the
output is the library's own exposition format and the same registry can be pushed to a Pushgateway.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from .._redact import redact_url
from ..verdict.levels import LEVEL_EXIT
from ..verdict.schema import CohortDoc, GeneratorDoc, RateKey, SummaryKey
from .document import write_atomic

__all__ = ["PassMetrics", "render", "write_textfile", "push", "LEVEL_CODES"]

LEVEL_CODES = LEVEL_EXIT
_QUANTILES = (("p50", "0.5"), ("p90", "0.9"), ("p95", "0.95"), ("p99", "0.99"))
_RATIOS: tuple[tuple[RateKey, str, str], ...] = (
    (
        "connect_success_rate",
        "sseprobe_connect_success_ratio",
        "Share of session attempts answered 200 text/event-stream.",
    ),
    (
        "completion_rate",
        "sseprobe_completion_ratio",
        "Share of session attempts that reached the terminal success event.",
    ),
    ("error_rate_5xx", "sseprobe_error_5xx_ratio", "Share of session attempts answered with HTTP status >= 500."),
    (
        "timeout_rate",
        "sseprobe_timeout_ratio",
        "Share of session attempts that timed out (no headers, idle, deadline).",
    ),
)


@dataclass
class PassMetrics:
    """What one pass exposes. ``parts`` maps each verdict part (and ``overall``) to its level."""

    parts: dict[str, str]
    started_ts: float
    duration_s: float
    up: bool
    last_success_ts: float | None = None
    cohorts: Mapping[str, CohortDoc] = field(default_factory=dict)  # results document COHORTs
    generator: GeneratorDoc | None = None  # the results document's generator block, if the pass measured


def _finite(x: object) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _summary(name: str, doc: str, cohorts: Mapping[str, CohortDoc], key: SummaryKey) -> Metric:
    """A summary per cohort: quantiles from the HDR histogram, count, and sum (= mean x count), in seconds."""
    m = Metric(name, doc, "summary")
    for cohort, d in cohorts.items():
        s = d.get(key) or {}
        for pk, q in _QUANTILES:
            if _finite(v := s.get(pk)):
                m.add_sample(name, {"cohort": cohort, "quantile": q}, v / 1000.0)
        count = s.get("count") or 0
        mean = float(v) if _finite(v := s.get("mean")) else 0.0
        m.add_sample(name + "_count", {"cohort": cohort}, float(count))
        m.add_sample(name + "_sum", {"cohort": cohort}, float(count) * mean / 1000.0)
    return m


def _generator(block: GeneratorDoc | None) -> Iterator[Metric]:
    """Whether the prober itself was the bottleneck, beside the verdict it qualifies: an alert on
    latency can then be silenced (or explained) when the generator, not the service, was late."""
    if not isinstance(block, Mapping):
        return
    yield GaugeMetricFamily(
        "sseprobe_generator_saturated",
        "1 when the last pass's generator could not keep up (its own lag may inflate latencies).",
        value=1.0 if block.get("saturated") is True else 0.0,
    )
    if _finite(block.get("error_ms")):
        yield GaugeMetricFamily(
            "sseprobe_generator_error_seconds",
            "How late the last pass's generator itself may have stamped any one latency (p99).",
            value=float(block["error_ms"]) / 1000.0,
        )


class _Collector:
    def __init__(self, pm: PassMetrics) -> None:
        self.pm = pm

    def collect(self) -> Iterator[Metric]:
        pm = self.pm
        verdict = GaugeMetricFamily(
            "sseprobe_monitor_verdict",
            "Verdict of the last monitor pass per part: 0 GREEN, 1 YELLOW, 2 RED, 3 UNKNOWN.",
            labels=["part"],
        )
        for part, level in pm.parts.items():
            verdict.add_metric([part], LEVEL_CODES.get(level, 3))
        yield verdict
        yield GaugeMetricFamily(
            "sseprobe_up", "1 when the last pass could reach and measure the service.", value=1.0 if pm.up else 0.0
        )
        yield GaugeMetricFamily(
            "sseprobe_monitor_last_run_timestamp_seconds",
            "Start of the last monitor pass (Unix time).",
            value=pm.started_ts,
        )
        yield GaugeMetricFamily(
            "sseprobe_monitor_duration_seconds", "Duration of the last monitor pass.", value=pm.duration_s
        )
        if pm.last_success_ts is not None:
            yield GaugeMetricFamily(
                "sseprobe_monitor_last_success_timestamp_seconds",
                "Start of the last GREEN monitor pass (Unix time).",
                value=pm.last_success_ts,
            )
        yield from _generator(pm.generator)
        if not pm.cohorts:
            return
        info = GaugeMetricFamily(
            "sseprobe_cohort_info", "Flow and (redacted) URL of each cohort.", labels=["cohort", "flow", "url"]
        )
        for cohort, d in pm.cohorts.items():
            info.add_metric([cohort, str(d.get("flow", "")), redact_url(str(d.get("url", "")))], 1.0)
        yield info
        for key, name, doc in _RATIOS:
            g = GaugeMetricFamily(name, doc, labels=["cohort"])
            for cohort, d in pm.cohorts.items():
                if _finite(v := d.get(key)):
                    g.add_metric([cohort], float(v))
            yield g
        outcomes = GaugeMetricFamily(
            "sseprobe_sessions", "Sessions of the last pass by outcome.", labels=["cohort", "outcome"]
        )
        for cohort, d in pm.cohorts.items():
            for outcome, n in sorted((d.get("outcomes") or {}).items()):
                outcomes.add_metric([cohort, str(outcome)], float(n))
        yield outcomes
        yield _summary("sseprobe_ttfe_seconds", "Time to first answer event, last pass.", pm.cohorts, "ttfe_ms")
        yield _summary(
            "sseprobe_completion_seconds",
            "Time to the terminal success event of the last pass.",
            pm.cohorts,
            "completion_ms",
        )


def _registry(pm: PassMetrics) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(pm))
    return reg


def render(pm: PassMetrics) -> bytes:
    """The Prometheus text exposition of one pass."""
    return generate_latest(_registry(pm))


def write_textfile(pm: PassMetrics, path: str | Path) -> Path:
    """Replace the textfile atomically (node_exporter's collector reads ``*.prom`` in its folder; the
    temp file is ``.<name>.*.tmp``, which it ignores)."""
    return write_atomic(path, render(pm))


def push(pm: PassMetrics, gateway: str, job: str = "sseprobe_monitor", timeout: float = 10.0) -> None:
    """PUT the pass's metrics to a Pushgateway (replacing the job's group). Raises OSError on failure."""
    from prometheus_client import push_to_gateway

    push_to_gateway(gateway, job=job, registry=_registry(pm), timeout=timeout)
