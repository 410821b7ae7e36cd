"""The results document (``sseprobe.result/1``) as types: every part a TypedDict, so the JSON on disk
and the value in memory are one shape and mypy checks every key a producer writes or a reader takes.

Why TypedDicts and not dataclasses here: the document is written once and read back by six consumers
(report, compare from files, baseline, history, HTML, Prometheus), also from files of earlier versions
and edited by hand; a TypedDict costs nothing to build or read (no conversion layer to keep in step),
and what enters from a file is still checked where it enters (``CohortStats.from_dict``,
``read_document``). Values computed in-process (``CohortStats``, ``Verdict``, ``FiredTrigger``,
``RangeChange``, ``Options``) are frozen or plain dataclasses that render these shapes.

``JSONObject`` is for what really is free-form (a policy or scenario TOML table, a parsed log line,
an HTTP body); it is not used for a part of this document.

This module sits at the bottom of the stages (load, verdict and report all use it) and imports nothing.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "BaselineDoc",
    "CheckpointDoc",
    "ClusterDoc",
    "CohortDoc",
    "CpuCounters",
    "CpuShares",
    "DecisionDoc",
    "GeneratorDoc",
    "IntervalCohortDoc",
    "IntervalDoc",
    "JSONObject",
    "LatencySummary",
    "MetricDoc",
    "MonitorDoc",
    "PartDoc",
    "RangeDoc",
    "ResultsDocument",
    "SequentialDoc",
    "SequentialMetricDoc",
    "StepDoc",
    "TimeToDecideDoc",
    "TriggerDoc",
    "VerdictDoc",
]

JSONObject = dict[str, Any]  # free-form JSON only (see the module docstring)

LatencySummary = dict[str, float | int | None]  # count, p50, p90, p95, p99, p99.9, max, mean (ms; None when empty)


class CpuCounters(TypedDict):
    """The loop thread's scheduler counters over a run (``/proc/self/task/*/schedstat``)."""

    run_ns: int
    wait_ns: int
    runs: int
    wall_ns: int


class CpuShares(TypedDict):
    busy: float  # share of the run the loop thread ran
    waiting: float  # share of the run it waited, runnable, for a CPU
    wait_per_run_ms: float


# One change of range (self-ranging), ``generator.ranges[]``; "from" is a Python keyword, hence this form.
RangeDoc = TypedDict(
    "RangeDoc",
    {
        "at_session": int,
        "from": dict[str, float],
        "to": dict[str, float],
        "why": str,
        "discarded": int,
        "error_ms": float,
    },
)


class ClusterDoc(TypedDict):
    """``generator.cluster``: where a Ray (or local) cluster run ran and how its load was shared."""

    address: str | None
    joined: str | None
    actors: int
    on_node_loss: str
    start_spread_ms: float | None
    shares: list[JSONObject]


class GeneratorDoc(TypedDict):
    """The results document's ``generator`` block: was the prober itself the bottleneck?"""

    loop_lag_ms: LatencySummary
    start_lag_ms: LatencySummary
    error_ms: float
    saturated: bool
    threshold_ms: float
    note: str
    cpu_ns: CpuCounters | dict[str, int]  # {} when the counters are unknown
    cpu: NotRequired[CpuShares]
    loop_lag_us: NotRequired[str]  # the encoded loop-lag histogram (merging batches re-derives from it)
    below_target: NotRequired[str]  # a share was lost: the load ran below what was asked
    ranges: NotRequired[list[RangeDoc]]
    service_late_ms: NotRequired[float]
    cluster: NotRequired[ClusterDoc]
    nodes: NotRequired[list[JSONObject]]


class IntervalCohortDoc(TypedDict):
    outcomes: dict[str, int]
    ttfe_p50_ms: NotRequired[float]
    ttfe_p95_ms: NotRequired[float]
    ttfe_us: NotRequired[str]


class IntervalDoc(TypedDict):
    """One second (``width``) of a run: sessions started in it, and per cohort the outcomes of the
    sessions that finished in it and their TTFE."""

    t: float
    started: int
    cohorts: dict[str, IntervalCohortDoc]


class CohortDoc(TypedDict):
    """A cohort's counts, rates, latency summaries and encoded histograms (``CohortStats.to_dict``)."""

    flow: str
    url: str
    sessions: int
    attempts: int
    connected: int
    outcomes: dict[str, int]
    events: int
    bytes: int
    answer_events: int
    answer_chars: int
    http_status: dict[str, int]
    connect_success_rate: float | None
    completion_rate: float | None
    error_rate_5xx: float | None
    rate_429: float | None
    timeout_rate: float | None
    failure_reasons: dict[str, int]
    addresses: dict[str, int]
    tls_resumed: int
    histograms: dict[str, str]
    # one summary per histogram kept (verdict/stats.py HISTOGRAMS)
    connect_ms: NotRequired[LatencySummary]
    tcp_ms: NotRequired[LatencySummary]
    tls_ms: NotRequired[LatencySummary]
    headers_ms: NotRequired[LatencySummary]
    first_event_ms: NotRequired[LatencySummary]
    ttfe_ms: NotRequired[LatencySummary]
    completion_ms: NotRequired[LatencySummary]
    max_gap_ms: NotRequired[LatencySummary]
    lag_ms: NotRequired[LatencySummary]


class MetricDoc(TypedDict):
    """One compared metric, ``verdict.metrics[]``."""

    name: str
    baseline: float | None
    candidate: float | None
    change: float | None
    ci: list[float | None]
    level: str
    reason: str
    method: str | None
    sessions_needed: NotRequired[int | None]
    generator_bound: NotRequired[bool]
    clock_bound: NotRequired[bool]


class TriggerDoc(TypedDict):
    """A rollback trigger that fired, ``verdict.triggers[]`` (and a run's ``triggers``)."""

    name: str
    metric: str
    op: str
    threshold: float
    value: float | None
    reason: str
    bound: NotRequired[float | None]
    cohort: NotRequired[str]
    generator_bound: NotRequired[bool]


class SequentialMetricDoc(TypedDict):
    name: str
    critical: bool
    decided_at_sessions: int | None
    level_then: str | None


class SequentialDoc(TypedDict):
    """``verdict.sequential``: how ``--until-decided`` looked and why it stopped."""

    look_every: int
    max_sessions: int
    max_duration_s: float | None
    looks: int
    sessions: dict[str, int]
    stopped: str
    decided: bool
    metrics: list[SequentialMetricDoc]


class StepDoc(TypedDict):
    canary_share: float
    seconds: float


class TimeToDecideDoc(TypedDict):
    """``verdict.time_to_decide``: how long a decision takes at each rollout step."""

    sessions_per_cohort: int
    basis: Literal["decided", "sessions_needed"]
    traffic_rate: float
    traffic_source: str
    steps: list[StepDoc]


class DecisionDoc(TypedDict, total=False):
    """What a comparison adds to its verdict besides the metrics: the sequential record and time to decide."""

    sequential: SequentialDoc
    time_to_decide: TimeToDecideDoc | None


class VerdictDoc(TypedDict):
    """The results document's ``verdict`` section."""

    overall: str
    metrics: list[MetricDoc]
    triggers: list[TriggerDoc]
    reasons: NotRequired[list[str]]
    generator_error_ms: NotRequired[float]
    sequential: NotRequired[SequentialDoc]
    time_to_decide: NotRequired[TimeToDecideDoc | None]


class CheckpointDoc(TypedDict):
    """What a cluster share sends back at a checkpoint: its cohorts and intervals so far."""

    cohorts: dict[str, CohortDoc]
    intervals: list[IntervalDoc]


class BaselineDoc(TypedDict):
    """``baseline``: when and from which file a document was stored as the monitor's baseline."""

    saved: str
    source: str


class PartDoc(TypedDict):
    """One judged part of a monitor pass, ``monitor.parts[]``; a comparison's part keeps its metric rows."""

    part: str
    level: str
    detail: str
    metrics: NotRequired[list[MetricDoc]]


class MonitorDoc(TypedDict):
    """``monitor``: the pass's verdict and the monitor config it ran (paths, redacted URLs, names of secret
    sources, never their values)."""

    overall: str
    exit_code: int
    parts: list[PartDoc]
    config: dict[str, str | float | bool | list[str]]


class ResultsDocument(TypedDict):
    """``sseprobe.result/1``. ``config`` records the options the run was given (free-form: a scenario's
    own keys are kept), the rest is measured."""

    schema: str
    started: str
    duration_s: float
    interrupted: bool
    config: JSONObject
    cohorts: dict[str, CohortDoc]
    verdict: NotRequired[VerdictDoc]
    stop_reason: NotRequired[str | None]
    generator: NotRequired[GeneratorDoc]
    worker_errors: NotRequired[list[str]]
    intervals: NotRequired[list[IntervalDoc]]
    triggers: NotRequired[list[TriggerDoc]]
    failure: NotRequired[str]
    unreachable: NotRequired[str]
    source: NotRequired[JSONObject]
    html: NotRequired[str]
    monitor: NotRequired[MonitorDoc]
    baseline: NotRequired[BaselineDoc]
