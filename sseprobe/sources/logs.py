"""Request logs (JSON Lines, one stream each) folded into per-cohort CohortStats, streamed.

The rules, and why:
* Streamed: a line at a time (``readline`` with a cap), never a file whole: 10 million lines fold in
  the memory of one CohortStats per cohort (the HDR histograms, ~100 KiB each), whatever the file's size.
* A line longer than ``MAX_LINE_BYTES`` (1 MiB; a stream's log entry is ~0.5 KiB) is unparseable: its
  bytes are skipped in 64 KiB reads, never held.
* gzip is read transparently (by its magic bytes, not the name; stdin too). Inflating past
  ``max(INFLATE_FLOOR, INFLATE_RATIO x the compressed bytes read so far)`` (256 MiB, 200x: JSON logs
  compress 10-30x) is a gzip bomb, refused: SourceError, exit 3.
* A line that is not a JSON object, or whose mapped fields have the wrong type (a latency that is not
  a number >= 0, a status that is not a whole number 100-599, an unknown outcome, a timestamp that is
  not ISO 8601 or epoch seconds) is *unparseable*: counted, the first ``EXAMPLES`` kept with their
  file and line number, never silently dropped. More than ``UNPARSEABLE_SHARE`` (1 %) of the lines
  unparseable is SourceError (exit 3): a wrong mapping must not pass for a verdict.
* A line without the cohort field, or with a value no cohort is marked by, is *other traffic*
  (counted and reported, not judged); a line outside ``--since``/``--until`` is counted as outside.
* Timestamps: ISO 8601 (a naive one is UTC) or a number of epoch seconds. Without a window, a line
  may lack one; with a window, a line without a timestamp is unparseable (it cannot be placed).
"""

from __future__ import annotations

import gzip
import io
import math
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import numpy as np
import orjson

from .._outcomes import Outcome
from ..verdict.schema import JSONObject, LogSourceDoc, SpanDoc
from ..verdict.stats import CohortStats, record_many_ms
from .logmap import LATENCIES, LogMap, SourceError, known_outcome

__all__ = [
    "EXAMPLES",
    "INFLATE_FLOOR",
    "INFLATE_RATIO",
    "MAX_LINE_BYTES",
    "UNPARSEABLE_SHARE",
    "LineError",
    "LogRead",
    "Span",
    "Window",
    "iso",
    "parse_time",
    "read_logs",
]

MAX_LINE_BYTES = 1 << 20
INFLATE_RATIO = 200
INFLATE_FLOOR = 256 << 20
UNPARSEABLE_SHARE = 0.01
EXAMPLES = 5
_SKIP = 1 << 16
_BATCH = 1 << 16
_BLANK = b" \t\r\n"
_WRONG: Any = object()  # a path through something that is not an object
_NOT_CONNECTED = frozenset({Outcome.CONNECT_ERROR.value, Outcome.HTTP_ERROR.value, Outcome.BAD_CONTENT_TYPE.value})
# outcome names as plain strings: dictionary keys hashed and compared in C (an enum member costs ~3x)
_OK, _HTTP_ERROR, _TIMEOUT, _STREAM_ERROR, _PREMATURE_CLOSE = (
    o.value for o in (Outcome.OK, Outcome.HTTP_ERROR, Outcome.TIMEOUT, Outcome.STREAM_ERROR, Outcome.PREMATURE_CLOSE)
)
_SCALARS = ("cohort", "timestamp", "outcome", "status", "connected", "error", "completed")  # _extractor's order
_HIST = {
    "ttfe_ms": "ttfe_us",
    "first_event_ms": "first_event_us",
    "completion_ms": "completion_us",
    "connect_ms": "connect_us",
}


class LineError(Exception):
    """One line that cannot be read: why, in a few words."""


@dataclass(frozen=True)
class Window:
    """Lines kept: since <= timestamp < until (epoch seconds; None: open)."""

    since: float | None = None
    until: float | None = None

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None


@dataclass
class Span:
    """First and last timestamp (epoch s) of a cohort's lines, and how many carried one."""

    first: float = math.inf
    last: float = -math.inf
    stamped: int = 0

    def add(self, t: float) -> None:
        self.stamped += 1
        if t < self.first:
            self.first = t
        if t > self.last:
            self.last = t

    def to_dict(self) -> SpanDoc:
        if not self.stamped:
            return {"first": None, "last": None, "stamped": 0}
        return {"first": iso(self.first), "last": iso(self.last), "stamped": self.stamped}


@dataclass
class LogRead:
    """What the logs held: per-cohort statistics and spans, and an account of every line."""

    log_map: LogMap
    window: Window
    cohorts: dict[str, CohortStats]
    spans: dict[str, Span]
    files: list[str] = field(default_factory=list)
    lines: int = 0  # non-blank lines read
    unparseable: int = 0
    examples: list[str] = field(default_factory=list)  # "FILE:LINE: why", the first EXAMPLES
    other: int = 0  # lines naming no mapped cohort
    outside: int = 0  # lines outside the window

    def bad(self, where: str, lineno: int, why: str) -> None:
        self.unparseable += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{where}:{lineno}: {why}")

    def to_dict(self) -> LogSourceDoc:
        """The results document's ``source`` block."""
        return {
            "kind": "log",
            "map": self.log_map.source,
            "files": list(self.files),
            "lines": self.lines,
            "records": {name: s.sessions for name, s in self.cohorts.items()},
            "unparseable": self.unparseable,
            "unparseable_examples": list(self.examples),
            "other_traffic": self.other,
            "outside_window": self.outside,
            "window": {
                "since": None if self.window.since is None else iso(self.window.since),
                "until": None if self.window.until is None else iso(self.window.until),
            },
            "spans": {name: s.to_dict() for name, s in self.spans.items()},
        }


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def parse_time(v: Any) -> float:
    """Epoch seconds from ISO 8601 (naive: UTC) or a number of epoch seconds; LineError otherwise."""
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            raise LineError(f"timestamp {v[:40]!r} is not ISO 8601") from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    raise LineError(f"timestamp {str(v)[:40]!r} is not ISO 8601 or epoch seconds")


def read_logs(paths: list[str], log_map: LogMap, window: Window = Window()) -> LogRead:
    """Fold every line of ``paths`` (``-``: stdin) into per-cohort statistics; SourceError when the
    logs cannot be judged (unreadable, a gzip bomb, too many unparseable lines, no mapped cohort)."""
    cohorts = {name: CohortStats(flow=name, url="log") for name in log_map.cohorts}
    read = LogRead(log_map, window, cohorts, {name: Span() for name in log_map.cohorts})
    fold = _Folder(read)
    for path in paths:
        read.files.append(path)
        try:
            for lineno, line in _lines(path):
                if line is None:
                    read.lines += 1
                    read.bad(path, lineno, f"longer than {MAX_LINE_BYTES:,} bytes")
                    continue
                if line[0] in _BLANK and not line.strip():  # a blank line is no record (most start with "{")
                    continue
                read.lines += 1
                try:
                    fold.line(line)
                except LineError as why:
                    read.bad(path, lineno, str(why))
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # BadGzipFile is an OSError: caught first
            raise SourceError(f"{path}: not a readable gzip file ({exc or type(exc).__name__})") from None
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    fold.close()
    _check(read)
    return read


def _check(read: LogRead) -> None:
    if read.lines and read.unparseable > UNPARSEABLE_SHARE * read.lines:
        share = read.unparseable / read.lines * 100
        raise SourceError(
            f"{read.unparseable:,} of {read.lines:,} lines ({share:.1f} %) cannot be read with mapping "
            f"{read.log_map.source} (more than {UNPARSEABLE_SHARE * 100:g} % is refused); first: {read.examples[0]}"
        )
    if read.lines and not any(s.sessions for s in read.cohorts.values()) and read.other:
        path = ".".join(read.log_map.paths["cohort"])
        marks = ", ".join(f"{n} = {v!r}" for n, vs in read.log_map.cohorts.items() for v in vs)
        raise SourceError(f"no line names a cohort of mapping {read.log_map.source} ({path}: {marks})")


class _Folder:
    """One line into its cohort's statistics; the mapping's paths compiled once into one extractor."""

    def __init__(self, read: LogRead) -> None:
        m = read.log_map
        self.read = read
        self.by_value = m.cohort_of()
        lat = [k for k in LATENCIES if k in m.paths]
        self.extract = _extractor([m.paths.get(k) for k in _SCALARS] + [m.paths[k] for k in lat])
        self.lat = [(k, _UNIT[m.units[k]], _HIST[k]) for k in lat]
        self.has_outcome, self.has_done = "outcome" in m.paths, "completed" in m.paths
        self.completed = m.completed_values
        self.timeouts = frozenset(m.timeout_errors)
        self.ok_lo, self.ok_hi = m.ok_status
        self.window = read.window
        self.bounded = read.window.bounded
        self.status_text: dict[int, str] = {}
        # latencies wait in lists and go into the histograms _BATCH at a time (record_many_ms: ~20x cheaper a value)
        self.pending: dict[str, dict[str, list[float]]] = {n: {h: [] for *_, h in self.lat} for n in read.cohorts}

    def line(self, raw: bytes) -> None:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise LineError("not JSON") from None
        if type(obj) is not dict:
            raise LineError("not a JSON object")
        mark, t, outcome_v, status, connected_v, err, done, *lats = self.extract(obj)
        if mark is _WRONG:
            raise LineError("the cohort's path runs through a value that is not an object")
        try:
            name = self.by_value.get(mark)
        except TypeError:  # an unhashable value (a list or object) marks no cohort
            name = None
        if name is None:
            self.read.other += 1
            return
        if t is not None:
            if t is _WRONG:
                raise LineError("timestamp: its path runs through a value that is not an object")
            t = parse_time(t)
        if self.bounded:
            w = self.window
            if t is None:
                raise LineError("no timestamp to place it in the window")
            if (w.since is not None and t < w.since) or (w.until is not None and t >= w.until):
                self.read.outside += 1
                return
        if status is not None and (type(status) is not int or not 100 <= status <= 599):
            raise LineError(f"status {str(status)[:40]!r} is not an HTTP status (a whole number 100-599)")
        outcome = self._outcome(outcome_v, status, err, done)
        connected = self._connected(connected_v, status, outcome)
        values = []
        for (key, unit, h), v in zip(self.lat, lats, strict=True):
            if v is None:
                continue
            ms = None if v is _WRONG else unit(v)
            if ms is None or not (ms >= 0.0 and ms < math.inf):
                raise LineError(f"{key} {str(v)[:40]!r} is not a latency >= 0 in the mapping's unit")
            if h != "completion_us" or outcome == _OK:  # completion: only a success's
                values.append((h, ms))
        stats = self.read.cohorts[name]
        stats.sessions += 1
        stats.connected += connected
        stats.outcomes[outcome] += 1
        if status is not None:
            text = self.status_text.get(status)
            if text is None:
                text = self.status_text[status] = str(status)
            stats.http_status[text] += 1
        pending = self.pending[name]
        for h, ms in values:
            waiting = pending[h]
            waiting.append(ms)
            if len(waiting) >= _BATCH:
                self._flush(name, h)
        if t is not None:
            span = self.read.spans[name]
            span.stamped += 1
            if t < span.first:
                span.first = t
            if t > span.last:
                span.last = t

    def _flush(self, name: str, h: str) -> None:
        waiting = self.pending[name][h]
        record_many_ms(self.read.cohorts[name].histograms[h], np.fromiter(waiting, np.float64, len(waiting)))
        waiting.clear()

    def close(self) -> None:
        """Every latency still waiting into its histogram."""
        for name, by_hist in self.pending.items():
            for h in by_hist:
                self._flush(name, h)

    def _outcome(self, v: Any, status: int | None, err: Any, done: Any) -> str:
        """The rule of LogMap's docstring, in its order."""
        if v is not None:
            known = known_outcome(v)
            if known is None:
                raise LineError(f"outcome {str(v)[:40]!r} is not one of sseprobe's outcomes")
            return known.value
        if status is not None and not self.ok_lo <= status <= self.ok_hi:
            return _HTTP_ERROR
        if err is _WRONG:
            raise LineError("error: its path runs through a value that is not an object")
        if err is not None and err != "" and err is not False:
            try:
                return _TIMEOUT if err in self.timeouts else _STREAM_ERROR
            except TypeError:  # an object or list as the error: an error all the same
                return _STREAM_ERROR
        if self.has_done:
            try:
                return _OK if done in self.completed else _PREMATURE_CLOSE
            except TypeError:
                raise LineError("completed: an object or list, not a marker value") from None
        return _OK

    def _connected(self, v: Any, status: int | None, outcome: str) -> bool:
        """The mapped ``connected`` (true/false) when present; else a success status; else what the outcome says."""
        if v is not None:
            if type(v) is not bool:
                raise LineError(f"connected {str(v)[:40]!r} is not true or false")
            return v
        if status is not None:
            return self.ok_lo <= status <= self.ok_hi
        return outcome not in _NOT_CONNECTED


def _number(v: Any) -> float | None:
    return float(v) if type(v) is float or type(v) is int else None


def _ms(v: Any) -> float | None:
    return float(v) if type(v) is float or type(v) is int else None


def _s(v: Any) -> float | None:
    n = _number(v)
    return None if n is None else n * 1000.0


def _duration(v: Any) -> float | None:
    """Cloud Logging's Duration ("0.123s"), or a number of seconds."""
    if type(v) is str and v.endswith("s"):
        try:
            return float(v[:-1]) * 1000.0
        except ValueError:
            return None
    return _s(v)


_UNIT = {"ms": _ms, "s": _s, "duration": _duration}


def _extractor(paths: list[tuple[str, ...] | None]) -> Callable[[JSONObject], tuple[Any, ...]]:
    """One function returning the value at each dotted path (None when absent or null, _WRONG through a
    value that is not an object; an unmapped path: None). Each parent object is looked up once for all
    the fields under it (a Cloud Logging line: 2 lookups, not 7): ~2.5x faster than a getter per field.
    Built from source whose only inputs are ``repr()`` of the mapping's keys, so no key can inject code."""
    lines: list[str] = []
    out: list[str] = []
    names: dict[tuple[str, ...], str] = {(): "o"}

    def parent(prefix: tuple[str, ...]) -> str:
        if prefix not in names:
            up = parent(prefix[:-1])
            v = names[prefix] = f"v{len(names)}"
            lines.append(f"    {v} = {_child(up, prefix[-1], prefix[:-1] == ())}")
        return names[prefix]

    for path in paths:
        if path is None:
            out.append("None")
            continue
        up = parent(path[:-1])
        out.append(_child(up, path[-1], path[:-1] == ()))
    source = "def extract(o):\n" + "\n".join(lines) + ("\n" if lines else "") + f"    return ({', '.join(out)},)\n"
    scope: dict[str, object] = {"W": _WRONG, "dict": dict}  # the generated function's globals
    exec(compile(source, "<log map>", "exec"), scope)  # noqa: S102 - see the docstring
    return cast(Callable[[JSONObject], tuple[Any, ...]], scope["extract"])


def _child(up: str, key: str, top: bool) -> str:
    """The expression for ``up[key]`` in _extractor's terms (``o`` itself is always an object)."""
    if top:
        return f"o.get({key!r})"
    return f"({up}.get({key!r}) if type({up}) is dict else (None if {up} is None else W))"


# --- reading, bounded -----------------------------------------------------------------------------


def _lines(path: str) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) of a file or stdin, gzip inflated; None for a line over MAX_LINE_BYTES."""
    if path == "-":
        yield from _maybe_gzip(sys.stdin.buffer, path)
        return
    with open(path, "rb") as raw:
        yield from _maybe_gzip(raw, path)


def _maybe_gzip(raw: Any, path: str) -> Iterator[tuple[int, bytes | None]]:
    head = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
    if head != b"\x1f\x8b":
        yield from _capped(raw, path, None)
        return
    counted = _Counted(raw)
    with gzip.GzipFile(fileobj=counted, mode="rb") as gz:
        yield from _capped(gz, path, counted)


class _Counted:
    """The compressed side of a gzip stream, counting the bytes read: the cap follows what was inflated
    from how much, so a bomb stops early and a large honest file (or stdin, of unknown size) reads on."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.count = raw, 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.raw.read(n)
        self.count += len(data)
        return data

    def seek(self, n: int, /) -> object:  # gzip seeks only to rewind, which reading forward never asks
        return self.raw.seek(n)


class _Readable(Protocol):
    def readline(self, size: int = ..., /) -> bytes: ...


def _capped(f: _Readable, path: str, packed: _Counted | None) -> Iterator[tuple[int, bytes | None]]:
    readline = f.readline
    total = 0
    lineno = 0
    while True:
        line = readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        lineno += 1
        total += len(line)
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := readline(_SKIP)) and not rest.endswith(b"\n"):  # skip the rest, a chunk at a time
                total += len(rest)
                if packed is not None:
                    _inflated(total, packed, path)
            total += len(rest)
            yield lineno, None
        else:
            yield lineno, line
        if packed is not None:
            _inflated(total, packed, path)


def _inflated(total: int, packed: _Counted, path: str) -> None:
    if total > INFLATE_FLOOR and total > INFLATE_RATIO * packed.count:
        raise SourceError(
            f"{path}: inflates to over {INFLATE_RATIO}x its compressed size ({total:,} bytes from "
            f"{packed.count:,}): refused as a gzip bomb"
        )
