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

from typing import Any, Literal, NotRequired, TypedDict, final

__all__ = [
    "BareCohortDoc",
    "BareDocument",
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
    "LagOnlyDoc",
    "LatencySummaries",
    "LatencySummary",
    "LoadConfigDoc",
    "LogSourceDoc",
    "MetricDoc",
    "MonitorDoc",
    "NodeDoc",
    "PhaseConfigDoc",
    "PartDoc",
    "PrometheusSourceDoc",
    "RangeDoc",
    "RateKey",
    "ResultsDocument",
    "ResultsParts",
    "SequentialDoc",
    "SequentialMetricDoc",
    "ShareDoc",
    "SpanDoc",
    "StepDoc",
    "SummaryKey",
    "TimeToDecideDoc",
    "TimeoutsConfigDoc",
    "TlsConfigDoc",
    "TriggerDoc",
    "VerdictDoc",
    "WindowDoc",
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


class ShareDoc(TypedDict):
    """``generator.cluster.shares[]``: what one actor was asked to run (the shares add up to the load asked for)."""

    actor: int
    node: str
    sessions: int | None
    concurrency: NotRequired[int]  # closed model
    max_in_flight: NotRequired[int]  # open model


class NodeDoc(TypedDict):
    """``generator.nodes[]``: one node of a cluster run, its clock as measured and its actors."""

    node: str  # the raylet's ip:port
    node_id: str  # its first 12 characters
    actors: list[int]
    clock_offset_ms: float
    round_trip_ms: float
    start_skew_ms: float | None  # the latest of its actors to reach the common start (None: none said)
    cpu_s: float  # its actors' process CPU seconds
    lost: list[int]


class ClusterDoc(TypedDict):
    """``generator.cluster``: where a Ray (or local) cluster run ran and how its load was shared."""

    address: str
    joined: str
    actors: int
    on_node_loss: str
    start_spread_ms: float | None
    shares: list[ShareDoc]


class GeneratorDoc(TypedDict):
    """The results document's ``generator`` block: was the prober itself the bottleneck?"""

    loop_lag_ms: LatencySummary
    start_lag_ms: LatencySummary
    error_ms: float
    saturated: bool
    threshold_ms: float
    note: str
    cpu_ns: CpuCounters | dict[str, int]  # {} when the counters are unknown
    cpu: NotRequired[CpuShares]  # with the counters (and, merged, the last part's when a part's are unknown)
    loop_lag_us: NotRequired[str]  # the encoded loop-lag histogram (merging batches re-derives from it)
    below_target: NotRequired[str]  # a share was lost: the load ran below what was asked
    ranges: NotRequired[list[RangeDoc]]
    service_late_ms: NotRequired[float]
    cluster: NotRequired[ClusterDoc]
    nodes: NotRequired[list[NodeDoc]]


@final
class LagOnlyDoc(TypedDict):
    """The generator block a lost cluster share leaves (rebuilt from its checkpoint, which keeps none): no
    loop-lag samples and no CPU counters, so the merged block says the run's CPU is unknown."""

    loop_lag_us: str  # an empty histogram, encoded


class IntervalCohortDoc(TypedDict):
    """One cohort in one interval: outcomes of the sessions that finished in it; their TTFE when any had one."""

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


class LatencySummaries(TypedDict, total=False):
    """A cohort's latency summaries, one per histogram it keeps (``verdict/stats.py`` HISTOGRAMS)."""

    connect_ms: LatencySummary
    tcp_ms: LatencySummary
    tls_ms: LatencySummary
    headers_ms: LatencySummary
    first_event_ms: LatencySummary
    ttfe_ms: LatencySummary
    completion_ms: LatencySummary
    max_gap_ms: LatencySummary
    lag_ms: LatencySummary


SummaryKey = Literal[
    "connect_ms", "tcp_ms", "tls_ms", "headers_ms", "first_event_ms", "ttfe_ms", "completion_ms", "max_gap_ms", "lag_ms"
]
RateKey = Literal["connect_success_rate", "completion_rate", "error_rate_5xx", "rate_429", "timeout_rate"]


class CohortDoc(LatencySummaries):
    """A cohort's counts, rates, latency summaries and encoded histograms (``CohortStats.to_dict``).
    Rates are null with no attempts (and for a Prometheus source, which counts requests only)."""

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


class BareCohortDoc(TypedDict):
    """What is left of a cohort when even ``CohortStats.to_dict`` failed (a measurement is never lost)."""

    sessions: int
    outcomes: dict[str, int]


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
    """The results document's ``verdict`` section (``Verdict.section``; ``Verdict.to_dict`` is its levels alone)."""

    overall: str  # a Level, or UNKNOWN when no session connected at all
    metrics: list[MetricDoc]
    triggers: list[TriggerDoc]
    generator_error_ms: NotRequired[float]  # only when a saturated generator widened the latency intervals
    reasons: NotRequired[list[str]]  # in every document sseprobe writes
    sequential: NotRequired[SequentialDoc]  # --until-decided
    time_to_decide: NotRequired[TimeToDecideDoc | None]  # a live comparison


class CheckpointDoc(TypedDict):
    """What a cluster share sends back at a checkpoint (every ~10 s): its cumulative cohorts and the
    intervals closed so far, so a share that is lost later keeps what it measured up to then."""

    at_s: float  # run-clock seconds when it was taken
    started: str  # when the share started (ISO 8601)
    cohorts: dict[str, CohortDoc]
    sessions: int  # in all cohorts
    intervals: list[IntervalDoc]


class SpanDoc(TypedDict):
    """First and last timestamp of a cohort's log lines (ISO 8601; null when none carried one)."""

    first: str | None
    last: str | None
    stamped: int


class WindowDoc(TypedDict):
    since: str | None
    until: str | None
    duration: NotRequired[str]  # a Prometheus source: the window as given (e.g. "24h")


class LogSourceDoc(TypedDict):
    """``source`` of a document read from logs: what the logs held and an account of every line."""

    kind: Literal["log"]
    map: str
    files: list[str]
    lines: int
    records: dict[str, int]
    unparseable: int
    unparseable_examples: list[str]
    other_traffic: int
    outside_window: int
    window: WindowDoc
    spans: dict[str, SpanDoc]


class PrometheusSourceDoc(TypedDict):
    """``source`` of a document judged from Prometheus histograms: where the buckets came from."""

    kind: Literal["prometheus"]
    url: str  # redacted
    queries: dict[str, str]
    window: WindowDoc
    buckets: dict[str, list[list[float | str]]]  # [upper edge ("+Inf" for infinity), cumulative count]
    histograms: str


class BaselineDoc(TypedDict):
    """``baseline``: when and from what a saved baseline was collected."""

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


class TlsConfigDoc(TypedDict):
    """``config.cohorts.NAME.tls``: how an https cohort trusted its target (no paths, no keys)."""

    verified: bool
    trust: str
    client_certificate: bool
    resume: bool
    warning: NotRequired[str]


class PhaseConfigDoc(TypedDict):
    name: str
    duration_s: float
    rate: list[float]  # [start, end] sessions/s


class TimeoutsConfigDoc(TypedDict):
    connect: float
    idle: float
    session: float


class LoadConfigDoc(TypedDict):
    """``config.load``: the load a run was given (no secrets live here)."""

    sessions: int | None
    duration: float | None
    concurrency: int
    think: float
    grace: float
    workers: int | None  # processes that ran (None on a cluster: see the generator block)
    cluster: str | None  # redacted
    scenario: str | None
    model: Literal["open", "closed"]
    phases: list[PhaseConfigDoc]
    poisson: bool
    timeouts: TimeoutsConfigDoc


class ResultsParts(TypedDict, total=False):
    """The results document's optional parts, each written by what measured or judged it."""

    verdict: VerdictDoc  # compare
    triggers: list[TriggerDoc]  # run
    failure: str  # measured, then failed: why (the measurement is kept)
    unreachable: str  # no session connected at all: why
    stop_reason: str | None
    generator: GeneratorDoc
    worker_errors: list[str]
    intervals: list[IntervalDoc]
    source: LogSourceDoc | PrometheusSourceDoc  # a verdict on real traffic
    baseline: BaselineDoc  # a saved baseline
    monitor: MonitorDoc  # a monitor pass: its parts and config (ops.monitor_writers)


class ResultsDocument(ResultsParts):
    """``sseprobe.result/1``. ``config`` records the options the run was given (free-form: a scenario's
    own keys are kept), the rest is measured."""

    schema: str
    started: str
    duration_s: float
    interrupted: bool
    config: JSONObject
    cohorts: dict[str, CohortDoc]


class BareDocument(TypedDict):
    """What a run that measured and then failed writes when even building its document failed:
    the failure and the bare counts (measured results are never lost)."""

    schema: str
    failure: str
    cohorts: dict[str, CohortDoc | BareCohortDoc]
