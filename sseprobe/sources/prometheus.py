"""``compare --from-prometheus URL --query-canonical Q --query-legacy Q --window 24h``: latency histograms
from a Prometheus server's HTTP API, judged with intervals honest about bucket resolution.

What is asked: ``GET URL/api/v1/query?query=sum by (le) (increase(Q[WINDOW]))&time=UNTIL`` per cohort,
where Q is a selector of a histogram's ``_bucket`` series (``sse_first_answer_seconds_bucket{mode="canary"}``);
a Q with a parenthesis is sent as it is and must itself answer one sample per ``le``. Values are in
seconds (Prometheus' base unit) and read as the time to the first answer (``ttfe_ms``).

Bucketed data: a request's latency is known only to lie within its bucket (previous ``le``, ``le``].
Every placement within the buckets is possible, so each cohort is built twice, every request at its
bucket's lower edge and at its upper edge (``+Inf``: sseprobe's one-hour ceiling), and compared twice by
the same ``verdict.compare``:
* alarm side: the candidate at its lower edges against the baseline at its upper edges (as good as the
  buckets allow the candidate to be); a YELLOW or RED here holds wherever the values lie;
* GREEN side: the candidate at its upper edges against the baseline at its lower edges (as bad as the
  buckets allow); GREEN here rules out a RED-size regression wherever they lie.
A metric alarms when the alarm side alarms, is GREEN when the alarm side does not alarm and the GREEN
side is GREEN, and is otherwise INCONCLUSIVE ("bucket resolution"): buckets wider than the RED limit
can never be called GREEN, which is the honest answer. Rates are not measured (a latency histogram
counts requests, not outcomes): only the latency metrics and latency triggers of the policy are judged,
and the document's rates are null.
"""

from __future__ import annotations

import base64
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, replace

import orjson

from .._outcomes import Outcome
from .._redact import redact_url
from ..verdict.compare import MetricResult, Verdict, overall_of
from ..verdict.compare import judge as judge_cohorts
from ..verdict.policy import Policy
from ..verdict.schema import PrometheusSourceDoc, RateKey
from ..verdict.stats import HIGHEST_US, LOWEST_US, CohortStats
from .judge import Judged, judge
from .logmap import SourceError
from .logs import iso
from .window import parse_duration

__all__ = ["Buckets", "fetch_buckets", "judge_buckets", "judge_prometheus", "bucket_stats", "MAX_ANSWER_BYTES"]

MAX_ANSWER_BYTES = 16 << 20  # a histogram's buckets are a few KiB; more is not an answer to this query
TIMEOUT_S = 30.0
_RATES: tuple[RateKey, ...] = ("connect_success_rate", "completion_rate", "error_rate_5xx", "rate_429", "timeout_rate")


@dataclass(frozen=True)
class Buckets:
    """Cumulative counts per upper edge (seconds, ascending, the last may be +Inf), as Prometheus keeps them."""

    edges: tuple[float, ...]
    cumulative: tuple[float, ...]

    def counts(self) -> list[tuple[float, float, int]]:
        """(lower edge s, upper edge s, requests) of every non-empty bucket; counts rounded (increase()
        extrapolates to the window's ends, so its values are not whole)."""
        out, prev_edge, prev = [], 0.0, 0.0
        for edge, cum in zip(self.edges, self.cumulative, strict=True):
            n = round(max(cum - prev, 0.0))
            if n:
                out.append((prev_edge, edge, n))
            prev_edge, prev = edge, max(cum, prev)
        return out

    def to_list(self) -> list[list[float | str]]:
        return [["+Inf" if math.isinf(e) else e, round(c, 3)] for e, c in zip(self.edges, self.cumulative, strict=True)]


def bucket_stats(buckets: Buckets, name: str, at: str) -> CohortStats:
    """A cohort with every request at its bucket's ``lower`` or ``upper`` edge (``at``), in ttfe_us."""
    stats = CohortStats(flow=name, url="prometheus")
    h = stats.histograms["ttfe_us"]
    for lo, hi, n in buckets.counts():
        if at == "lower":
            us = max(LOWEST_US, math.floor(lo * 1e6 * (1 - 1e-3)))  # HDR rounds up by <= 0.1 %: stay at or below
        else:
            us = HIGHEST_US if math.isinf(hi) else min(HIGHEST_US, math.ceil(hi * 1e6))
        h.record_value(us, n)
    stats.sessions = stats.connected = h.get_total_count()  # requests that got a latency; outcomes unknown
    stats.outcomes = Counter({str(Outcome.OK): stats.sessions})
    return stats


def _latency_only(policy: Policy) -> Policy:
    metrics = tuple(m for m in policy.metrics if m.kind == "quantile" and m.source == "ttfe_us")
    triggers = tuple(t for t in policy.triggers if t.metric.startswith("ttfe_p"))
    if not metrics:
        raise SourceError("the policy has no ttfe quantile metric: nothing a latency histogram can judge")
    return replace(policy, metrics=metrics, triggers=triggers)


def _row(alarm: MetricResult, green: MetricResult) -> MetricResult:
    """One metric's row from its two placements (the rule of this module's docstring)."""
    if alarm.level in ("YELLOW", "RED"):
        return replace(alarm, method=f"bucket-edges ({alarm.method})", reason=_ALARM_SIDE + alarm.reason)
    if green.level in ("GREEN", "INCONCLUSIVE"):  # GREEN, or too little data even before the buckets' width
        return replace(green, method=f"bucket-edges ({green.method})", reason=_GREEN_SIDE + green.reason)
    lo, hi = alarm.change, green.change
    span = ""
    if lo is not None and hi is not None:
        span = f"; by bucket placement the change lies in [{lo * 100:+.1f}, {hi * 100:+.1f}] %"
    return replace(
        green,
        level="INCONCLUSIVE",
        method="bucket-edges",
        ci=(alarm.ci[0], green.ci[1]),
        change=None,
        baseline=None,
        candidate=None,
        reason=f"bucket resolution: cannot tell where in their buckets the values lie{span}",
    )


_ALARM_SIDE = "even as well as the buckets allow (candidate at lower edges, baseline at upper): "
_GREEN_SIDE = "even as badly as the buckets allow (candidate at upper edges, baseline at lower): "


def judge_buckets(
    base: Buckets, cand: Buckets, names: tuple[str, str], policy: Policy
) -> tuple[Verdict, dict[str, CohortStats]]:
    """The verdict on two bucketed cohorts, and the cohorts (at their upper edges) for the document."""
    policy = _latency_only(policy)
    b, c = names
    alarm = judge_cohorts(bucket_stats(base, b, "upper"), bucket_stats(cand, c, "lower"), policy)
    green = judge_cohorts(bucket_stats(base, b, "lower"), bucket_stats(cand, c, "upper"), policy)
    rows = [_row(a, g) for a, g in zip(alarm.metrics, green.metrics, strict=True)]
    fired = [t for t in alarm.triggers if t.cohort == "candidate"]
    others = [t for t in alarm.triggers if t.cohort != "candidate"]
    nb, nc = alarm.n_baseline, alarm.n_candidate
    level, reasons = overall_of(rows, fired, others, policy, (nb, nc), 0.0)
    reasons.append(
        "note: bucketed latencies: each cohort judged with its requests at both edges of their buckets "
        "(the candidate's lower edges against the baseline's upper for an alarm, the reverse for GREEN)"
    )
    reasons.append("note: rates are not measured from a latency histogram: only latency metrics are judged")
    verdict = Verdict(level, rows, alarm.triggers, reasons, policy.confidence, nb, nc)
    return verdict, {b: bucket_stats(base, b, "upper"), c: bucket_stats(cand, c, "upper")}


# --- the HTTP API -----------------------------------------------------------------------------------


def _query_text(query: str, window: str) -> str:
    return query if "(" in query else f"sum by (le) (increase({query}[{window}]))"


def fetch_buckets(url: str, query: str, window: str, at: float | None = None) -> Buckets:
    """One instant query; SourceError (one line, no credentials) when the server or its answer is wrong."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"--from-prometheus {redact_url(url)!r}: expected http(s)://HOST[:PORT][/PREFIX]")
    headers = {"Accept": "application/json"}
    if parts.username is not None:
        secret = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(secret.encode()).decode()
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path.rstrip("/"), "", ""))
    params = {"query": _query_text(query, window)}
    if at is not None:
        params["time"] = f"{at:.3f}"
    request = urllib.request.Request(f"{base}/api/v1/query?{urllib.parse.urlencode(params)}", headers=headers)
    shown = redact_url(url)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:  # noqa: S310 - http(s) checked above
            body = resp.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = _error_of(exc.read(4096))
        raise SourceError(f"prometheus {shown}: HTTP {exc.code} for {query!r}{detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or exc
        raise SourceError(f"prometheus {shown}: cannot query: {why}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise SourceError(f"prometheus {shown}: answer over {MAX_ANSWER_BYTES:,} bytes for {query!r}: not a histogram")
    return _parse(body, shown, query)


def _error_of(body: bytes) -> str:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    return f": {str(doc.get('error'))[:200]}" if isinstance(doc, dict) and doc.get("error") else ""


def _parse(body: bytes, shown: str, query: str) -> Buckets:
    try:
        doc = orjson.loads(body)
        if doc.get("status") != "success":
            raise SourceError(f"prometheus {shown}: query {query!r} failed{_error_of(body)}")
        data = doc["data"]
        if data["resultType"] != "vector":
            raise SourceError(f"prometheus {shown}: {query!r} answers a {data['resultType']}, not an instant vector")
        points: dict[float, float] = {}
        for sample in data["result"]:
            le = sample["metric"].get("le")
            if le is None:
                raise SourceError(f"prometheus {shown}: {query!r} answers series without an 'le' label: not buckets")
            edge = float(le)
            if edge in points:
                raise SourceError(f"prometheus {shown}: {query!r} answers le={le} twice: sum it by (le)")
            value = float(sample["value"][1])
            if not math.isfinite(value) or value < 0:
                raise SourceError(f"prometheus {shown}: {query!r} answers le={le} = {value}")
            points[edge] = value
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        if isinstance(exc, SourceError):
            raise
        raise SourceError(f"prometheus {shown}: not a Prometheus query answer ({type(exc).__name__})") from None
    if not points:
        raise SourceError(f"prometheus {shown}: {query!r} answers no buckets (no such series in the window?)")
    edges = tuple(sorted(points))
    return Buckets(edges, tuple(points[e] for e in edges))


def judge_prometheus(
    url: str,
    queries: dict[str, str],
    policy: Policy,
    window: str = "24h",
    until: float | None = None,
    names: tuple[str, str] = ("legacy", "canonical"),
) -> Judged:
    """Fetch both cohorts' buckets over the same window (the same instant: the cohorts cannot cover
    different times) and judge them; the source block records where they came from (no credentials)."""
    seconds = parse_duration(window)
    at = time.time() if until is None else until
    buckets = {name: fetch_buckets(url, queries[name], window, at) for name in names}
    verdict, cohorts = judge_buckets(buckets[names[0]], buckets[names[1]], names, policy)
    for name in names:
        if not cohorts[name].sessions:
            raise SourceError(f"prometheus: no {name} requests in the {window} to {iso(at)}")
    source: PrometheusSourceDoc = {
        "kind": "prometheus",
        "url": redact_url(url),
        "queries": {n: _query_text(queries[n], window) for n in names},
        "window": {"since": iso(at - seconds), "until": iso(at), "duration": window},
        "buckets": {n: buckets[n].to_list() for n in names},
        "histograms": "each bucket at its upper edge (le); the verdict used both edges",
    }
    judged = judge(cohorts, names, policy, source, [], started=iso(at - seconds), verdict=verdict)
    for name in names:
        for rate in _RATES:
            judged.document["cohorts"][name][rate] = None  # not measured: a histogram counts requests only
    judged.document["duration_s"] = seconds
    return judged
