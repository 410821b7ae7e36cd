"""CohortStats: outcome counts plus HDR histograms (µs) for one cohort.

Pure bookkeeping: no network, no printing. Histograms merge losslessly (HDR add), so shards
from several processes or machines combine exactly; percentiles are never averaged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from .._outcomes import Outcome
from .._record import SessionRecord
from .schema import CohortDoc, LatencySummaries, LatencySummary, SummaryKey

__all__ = [
    "CohortStats",
    "new_histogram",
    "histogram_arrays",
    "clock_step_us",
    "summarize_ms",
    "record_many_ms",
    "HISTOGRAMS",
]

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
SIGNIFICANT_FIGURES = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0)

# histogram name -> SessionRecord attribute (ms), also the key of its summary in the document
HISTOGRAMS: dict[str, SummaryKey] = {
    "connect_us": "connect_ms",
    "tcp_us": "tcp_ms",
    "tls_us": "tls_ms",
    "headers_us": "headers_ms",
    "first_event_us": "first_event_ms",  # any first progress event, bookkeeping included
    "ttfe_us": "ttfe_ms",  # the first event with answer content: what a user waits for
    "completion_us": "completion_ms",
    "max_gap_us": "max_gap_ms",
    "lag_us": "lag_ms",
}
MAX_REASONS = 5  # distinct failure reasons kept per cohort
MAX_ADDRESSES = 64  # distinct addresses counted per cohort (a name rarely has more A records)
REASON_CHARS = 160  # of each reason (record errors are short already)
SUMMARY_KEYS = HISTOGRAMS  # ttfe_us -> ttfe_ms: the document's summary of each histogram


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


# Bucket arithmetic of every histogram made by new_histogram() (lowest 1, 3 significant figures):
# hdrh's record_value does the same through four method calls, ~4x slower. Other shapes use hdrh's.
_PROTO = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
_MASK = _PROTO.sub_bucket_mask
_SHIFT = _PROTO.unit_magnitude + _PROTO.sub_bucket_half_count_magnitude + 1
_HALF_MAG = _PROTO.sub_bucket_half_count_magnitude
_HALF = _PROTO.sub_bucket_half_count
_UNIT = _PROTO.unit_magnitude
_LEN = _PROTO.counts_len


def _record_ms(h: HdrHistogram, ms: float) -> None:
    us = int(ms * 1000.0 + 0.5)
    us = LOWEST_US if us < LOWEST_US else HIGHEST_US if us > HIGHEST_US else us
    if h.sub_bucket_mask != _MASK or h.counts_len != _LEN or h.unit_magnitude != _UNIT:
        h.record_value(us)  # not new_histogram()'s shape: hdrh's own arithmetic
        return
    bucket = (us | _MASK).bit_length() - _SHIFT
    h.counts[((bucket + 1) << _HALF_MAG) + (us >> (bucket + _UNIT)) - _HALF] += 1
    h.total_count += 1
    if us < h.min_value:
        h.min_value = us
    if us > h.max_value:
        h.max_value = us


def record_many_ms(h: HdrHistogram, ms: np.ndarray) -> None:
    """Many latencies (ms) at once: the same buckets as ``_record_ms`` value by value (a test checks
    the encodings are equal), vectorised for folders of millions of values (request logs)."""
    if not len(ms):
        return
    us = np.clip(np.rint(np.asarray(ms, dtype=np.float64) * 1000.0), LOWEST_US, HIGHEST_US).astype(np.int64)
    if h.sub_bucket_mask != _MASK or h.counts_len != _LEN or h.unit_magnitude != _UNIT:
        for v in us.tolist():
            h.record_value(v)
        return
    bucket = np.frexp((us | _MASK).astype(np.float64))[1].astype(np.int64) - _SHIFT  # frexp's exponent: bit_length
    idx = ((bucket + 1) << _HALF_MAG) + (us >> (bucket + _UNIT)) - _HALF
    counts = np.ctypeslib.as_array(h.counts)[: h.counts_len]
    counts += np.bincount(idx, minlength=h.counts_len).astype(counts.dtype)
    h.total_count += len(us)
    lo, hi = int(us.min()), int(us.max())
    if lo < h.min_value:
        h.min_value = lo
    if hi > h.max_value:
        h.max_value = hi


def _buckets(h: HdrHistogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts, lowest value, log2 of the value range) of every non-empty bucket, ascending."""
    counts = np.ctypeslib.as_array(h.counts)[: h.counts_len].astype(np.int64)
    idx = np.flatnonzero(counts)
    half = int(h.sub_bucket_half_count)
    unit = int(h.unit_magnitude)
    bucket = (idx >> int(h.sub_bucket_half_count_magnitude)) - 1
    sub = (idx & (half - 1)) + half
    low = bucket < 0
    sub = np.where(low, sub - half, sub)
    bucket = np.where(low, 0, bucket)
    shift = bucket + unit
    return counts[idx], sub.astype(np.int64) << shift, shift


def histogram_arrays(h: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """(values µs, counts) of every non-empty bucket, ascending: the input for statistics.

    Vectorised over the HDR counts array (~0.1 ms instead of ~30 ms for hdrh's iterator). Values
    are each bucket's highest equivalent value, HDR's own convention for percentiles, so numbers
    computed from these arrays equal the report's.
    """
    counts, lowest, shift = _buckets(h)
    highest = lowest + (np.int64(1) << shift) - 1
    return highest.astype(np.float64), counts


_STEPS_US = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000)


def clock_step_us(h: HdrHistogram, min_buckets: int = 8) -> int:
    """The tick of the clock that stamped these values (µs), when they all sit on one: the largest
    of 1, 2, 5 ... 1,000 ms such that every non-empty bucket holds a multiple of it; 0 when none
    does (a fine clock) or fewer than ``min_buckets`` buckets are filled.

    Why: a clock that reports whole 10 ms moves a quantile by up to half a tick, so a +5 % change
    at 180 ms can read +5.6 % and a 100 ms clock cannot see +5 % of a 500 ms p95 at all; the
    comparison widens each quantile's interval by half a tick (CohortStats keeps no raw values, so
    the tick is read off the buckets). A bucket of a continuous value holds a multiple of 10 ms with
    chance ~0.013 at 180 ms, so eight of them all doing so by chance is below 1e-15."""
    counts, lowest, shift = _buckets(h)
    if len(counts) < min_buckets:
        return 0
    highest = lowest + (np.int64(1) << shift) - 1
    for step in reversed(_STEPS_US):
        if bool(np.all((highest // step) * step >= lowest)):
            return step
    return 0


def mean_us(h: HdrHistogram) -> float:
    """hdrh's get_mean_value (each bucket at its median equivalent value), vectorised: hdrh's own
    walks every bucket in Python, ~50 ms a histogram, paid six times at the end of every run."""
    n: int = h.get_total_count()
    if not n:
        return 0.0
    counts, lowest, shift = _buckets(h)
    median = lowest + ((np.int64(1) << shift) >> 1)
    if int(counts.sum()) != n or n * (int(median[-1]) + 1) >= 1 << 62:  # int64 could overflow
        return float(h.get_mean_value())
    return float(int(np.dot(counts, median))) / n


def summarize_ms(h: HdrHistogram) -> LatencySummary:
    """p50/p90/p95/p99/max/mean in ms. Percentiles come from the same histogram as max, so p99 <= max."""
    n: int = h.get_total_count()
    out: LatencySummary = {"count": n}
    for p in PERCENTILES:
        out[f"p{p:g}"] = round(h.get_value_at_percentile(p) / 1000.0, 3) if n else None
    out["max"] = round(h.get_max_value() / 1000.0, 3) if n else None
    out["mean"] = round(mean_us(h) / 1000.0, 3) if n else None
    return out


@dataclass
class CohortStats:
    """Everything a report or a comparison needs about one cohort, and nothing per session."""

    flow: str = ""
    url: str = ""
    sessions: int = 0
    events: int = 0
    bytes: int = 0
    connected: int = 0
    answer_events: int = 0
    answer_chars: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    http_status: Counter[str] = field(default_factory=Counter)
    histograms: dict[str, HdrHistogram] = field(default_factory=lambda: {name: new_histogram() for name in HISTOGRAMS})
    # why sessions failed, "outcome: reason" -> sessions: the first MAX_REASONS distinct ones (a run that
    # fails one way fails in a handful of words; a bound keeps a server's varied messages from growing it)
    reasons: Counter[str] = field(default_factory=Counter)
    # new connections per address they went to (the first MAX_ADDRESSES), and TLS handshakes that resumed
    addresses: Counter[str] = field(default_factory=Counter)
    tls_resumed: int = 0

    # --- folding -----------------------------------------------------------------------
    def add(self, rec: SessionRecord) -> None:
        self.sessions += 1
        self.events += rec.events
        self.bytes += rec.bytes
        self.connected += rec.connected
        self.answer_events += rec.answer_events
        self.answer_chars += rec.answer_chars
        self.outcomes[str(rec.outcome)] += 1
        if rec.status is not None:
            self.http_status[str(rec.status)] += 1
        if rec.address is not None and (rec.address in self.addresses or len(self.addresses) < MAX_ADDRESSES):
            self.addresses[rec.address] += 1
        self.tls_resumed += rec.tls_resumed
        if rec.error and rec.outcome != Outcome.OK:
            self._reason(f"{rec.outcome}: {rec.error[:REASON_CHARS]}", 1)
        for name, h in self.histograms.items():
            ms = getattr(rec, HISTOGRAMS[name])
            if ms is not None:
                _record_ms(h, ms)

    def merge(self, other: CohortStats) -> None:
        """Lossless: counts add, histograms add bucket by bucket."""
        self.sessions += other.sessions
        self.events += other.events
        self.bytes += other.bytes
        self.connected += other.connected
        self.answer_events += other.answer_events
        self.answer_chars += other.answer_chars
        self.outcomes.update(other.outcomes)
        self.http_status.update(other.http_status)
        for address, n in other.addresses.items():
            if address in self.addresses or len(self.addresses) < MAX_ADDRESSES:
                self.addresses[address] += n
        self.tls_resumed += other.tls_resumed
        for reason, n in other.reasons.items():
            self._reason(reason, n)
        for name, h in other.histograms.items():
            mine = self.histograms.get(name)
            if mine is None:
                mine = self.histograms[name] = new_histogram()
            mine.add(h)

    def _reason(self, reason: str, n: int) -> None:
        if reason in self.reasons or len(self.reasons) < MAX_REASONS:
            self.reasons[reason] += n

    # --- derived rates (fractions of attempts; a cancelled session is no attempt) --------
    @property
    def attempts(self) -> int:
        return self.sessions - self.outcomes.get(Outcome.CANCELLED, 0)

    def _rate(self, n: int) -> float | None:
        return n / self.attempts if self.attempts else None

    @property
    def ok(self) -> int:
        return self.outcomes.get(Outcome.OK, 0)

    @property
    def status_5xx(self) -> int:
        return sum(n for s, n in self.http_status.items() if s.startswith("5"))

    @property
    def status_429(self) -> int:
        return self.http_status.get("429", 0)

    @property
    def timeouts(self) -> int:
        return self.outcomes.get(Outcome.TIMEOUT, 0) + self.outcomes.get(Outcome.IDLE_TIMEOUT, 0)

    @property
    def connect_success_rate(self) -> float | None:
        return self._rate(self.connected)

    @property
    def completion_rate(self) -> float | None:
        """Sessions that reached success *with answer content* (``ok``; ``empty`` is not) / attempts."""
        return self._rate(self.ok)

    @property
    def error_rate_5xx(self) -> float | None:
        return self._rate(self.status_5xx)

    @property
    def timeout_rate(self) -> float | None:
        return self._rate(self.timeouts)

    # --- the results document's COHORT ----------------------------------------------------
    def to_dict(self) -> CohortDoc:
        summaries: LatencySummaries = {}
        for name, h in self.histograms.items():
            summaries[SUMMARY_KEYS[name]] = summarize_ms(h)
        return {
            "flow": self.flow,
            "url": self.url,
            "sessions": self.sessions,
            "attempts": self.attempts,
            "connected": self.connected,
            "outcomes": {str(k): v for k, v in sorted(self.outcomes.items())},
            "events": self.events,
            "bytes": self.bytes,
            "answer_events": self.answer_events,
            "answer_chars": self.answer_chars,
            "http_status": dict(sorted(self.http_status.items())),
            "connect_success_rate": self.connect_success_rate,
            "completion_rate": self.completion_rate,
            "error_rate_5xx": self.error_rate_5xx,
            "rate_429": self._rate(self.status_429),
            "timeout_rate": self.timeout_rate,
            "failure_reasons": dict(self.reasons.most_common()),
            "addresses": dict(sorted(self.addresses.items())),
            "tls_resumed": self.tls_resumed,
            **summaries,
            "histograms": {name: h.encode().decode("ascii") for name, h in self.histograms.items()},
        }

    @classmethod
    def light(cls, histograms: tuple[str, ...] = ("ttfe_us",)) -> CohortStats:
        """Counts plus only the named histograms: cheap enough to make one per second (live views)."""
        return cls(histograms={name: new_histogram() for name in histograms})

    @classmethod
    def from_dict(cls, d: Any) -> CohortStats:
        """Rebuild from a results document's COHORT (histograms decoded, so stats are exact).

        Checked where it enters: a document edited or cut by hand raises ValueError naming what is
        wrong, rather than a comparison quietly judging impossible numbers."""
        if not isinstance(d, dict):
            raise ValueError("not a table of cohort statistics")
        if "sessions" not in d:
            raise ValueError("'sessions' is missing")
        sessions = _count(d, "sessions")
        outcomes = _counts(d, "outcomes")
        http_status = _counts(d, "http_status")
        stats = cls(
            flow=str(d.get("flow", "")),
            url=str(d.get("url", "")),
            sessions=sessions,
            events=_count(d, "events"),
            bytes=_count(d, "bytes"),
            connected=_count(d, "connected"),
            answer_events=_count(d, "answer_events"),
            answer_chars=_count(d, "answer_chars"),
            outcomes=Counter(outcomes),
            http_status=Counter(http_status),
            addresses=Counter(dict(list(_counts(d, "addresses").items())[:MAX_ADDRESSES])),
            tls_resumed=_count(d, "tls_resumed"),
            reasons=Counter(
                {k[: REASON_CHARS + 30]: v for k, v in list(_counts(d, "failure_reasons").items())[:MAX_REASONS]}
            ),
        )
        if sum(outcomes.values()) != sessions:
            raise ValueError(f"outcomes add up to {sum(outcomes.values())}, not to its {sessions} sessions")
        if stats.connected > sessions or sum(http_status.values()) > sessions:
            raise ValueError(f"more connected sessions or HTTP statuses than its {sessions} sessions")
        encoded_all = d.get("histograms")
        if not isinstance(encoded_all, dict):
            raise ValueError("'histograms' is missing (the encoded histograms every statistic is computed from)")
        for name, encoded in encoded_all.items():
            stats.histograms[str(name)] = h = _decoded(str(name), encoded)
            if h.get_total_count() > sessions:
                raise ValueError(f"histogram {name} holds {h.get_total_count()} values for {sessions} sessions")
        return stats


def _count(d: Mapping[str, object], key: str) -> int:
    v = d.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{key!r} is {v!r}, not a whole number >= 0")
    return v


def _counts(d: Mapping[str, object], key: str) -> dict[str, int]:
    table = d.get(key, {})
    if not isinstance(table, dict):
        raise ValueError(f"{key!r} is not a table of counts")
    return {str(k): _count(table, k) for k in table}


def _decoded(name: str, encoded: Any) -> HdrHistogram:
    h = new_histogram()
    if not encoded:
        return h
    if not isinstance(encoded, str):
        raise ValueError(f"histogram {name} is not an encoded histogram")
    try:
        h.add(HdrHistogram.decode(encoded))
    except Exception as exc:  # noqa: BLE001 - base64, zlib and hdrh each raise their own
        raise ValueError(f"histogram {name} is corrupt ({type(exc).__name__})") from None
    return h
