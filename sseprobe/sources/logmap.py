"""The mapping from a log's JSON lines to sseprobe's per-session fields (``--log-map FILE.toml``).

A mapping names, with dotted paths into each JSON object, where a line keeps the fields sseprobe
judges on, which values mark each cohort, how an outcome is derived and in what units latencies are
written. Two ship with sseprobe (``sseprobe/sources/maps``): ``sseprobe`` (its own per-session
record, the default) and ``cloud-logging`` (a Cloud Logging export, as ``target --access-log``
writes); ``--log-map NAME`` picks a shipped one, ``--log-map FILE.toml`` reads another. Every key is
known and typed (``_toml.StrictReader``): a typo is one line naming the file and key, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._outcomes import Outcome
from .._toml import StrictReader, read_toml
from ..verdict.schema import JSONObject

__all__ = ["FIELDS", "LATENCIES", "UNITS", "LogMap", "SourceError", "read_log_map", "SHIPPED_MAPS"]

MAPS_DIR = Path(__file__).with_name("maps")
SHIPPED_MAPS = ("sseprobe", "cloud-logging")
# the latency fields a line may carry (ms after unit conversion), as SessionRecord names them
LATENCIES = ("ttfe_ms", "first_event_ms", "completion_ms", "connect_ms")
FIELDS = ("cohort", "timestamp", "outcome", "status", "connected", "error", "completed", *LATENCIES)
# ms: a number of milliseconds; s: a number of seconds; duration: "0.123s" (Cloud Logging's Duration) or a number of s
UNITS = ("ms", "s", "duration")
_TABLES = ("fields", "cohorts", "units", "outcome")
_OUTCOME_KEYS = ("completed", "timeout_errors", "ok_status")


class SourceError(ValueError):
    """Input that cannot be judged (a mapping, a log, a window, a Prometheus answer): one line, exit 3."""


@dataclass(frozen=True)
class LogMap:
    """Where each field is (a path of keys, or None: not in this log), what marks each cohort, the units.

    Outcome of one line, first rule that applies (the rule ``sources.logs`` follows):
    1. ``outcome`` mapped and present: sseprobe's own outcome name (any other value: unparseable);
    2. ``status`` present and outside ``ok_status`` (default 200-299): ``http_error``;
    3. ``error`` present and not empty (null, "", false are no error): ``timeout`` when its value is one of
       ``timeout_errors``, else ``stream_error``;
    4. ``completed`` mapped: ``ok`` when its value is one of ``[outcome] completed`` (default ``[true]``),
       else ``premature_close`` (the stream ended without its success);
    5. otherwise ``ok``.
    """

    source: str  # the file or shipped name, for messages and the document
    paths: dict[str, tuple[str, ...]]
    cohorts: dict[str, tuple[Any, ...]]  # sseprobe cohort -> the values that mark it
    units: dict[str, str]
    completed_values: tuple[Any, ...] = (True,)
    timeout_errors: tuple[str, ...] = ()
    ok_status: tuple[int, int] = (200, 299)

    def cohort_of(self) -> dict[Any, str]:
        """value -> cohort name (the inverse of ``cohorts``; a value marks one cohort only)."""
        return {v: name for name, values in self.cohorts.items() for v in values}


def read_log_map(spec: str | None) -> LogMap:
    """A shipped mapping by name (None: ``sseprobe``) or a TOML file; SourceError names what is wrong."""
    name = spec or "sseprobe"
    path = MAPS_DIR / f"{name}.toml" if name in SHIPPED_MAPS else Path(name)
    return _parse(read_toml(path, SourceError, "log mapping"), name)


def _parse(data: JSONObject, source: str) -> LogMap:
    r = StrictReader(source, SourceError)
    r.known("", data, _TABLES)
    fields = r.table("fields", data.get("fields", {}))
    r.known("fields.", fields, FIELDS)
    paths = {k: _path(r, f"fields.{k}", v) for k, v in fields.items()}
    if "cohort" not in paths:
        raise r.fail("fields.cohort", "the dotted path of the field that names each line's cohort")
    cohorts_t = r.table("cohorts", data.get("cohorts", {}))
    if not cohorts_t:
        raise r.fail("cohorts", 'a table naming the value(s) that mark each cohort, e.g. canonical = "canonical"')
    cohorts: dict[str, tuple[Any, ...]] = {}
    seen: dict[Any, str] = {}
    for name, v in cohorts_t.items():
        values = tuple(v) if isinstance(v, list) else (v,)
        for value in values:
            r.typed(f"cohorts.{name}", value, ((str, int, bool), "a string, number or true/false (or a list)"))
            if value in seen:
                raise r.fail(f"cohorts.{name}", f"a value no other cohort has ({seen[value]!r} has it)", value)
            seen[value] = name
        cohorts[name] = values
    units_t = r.table("units", data.get("units", {}))
    r.known("units.", units_t, LATENCIES)
    units = {k: r.text(f"units.{k}", v, list(UNITS)) for k, v in units_t.items()}
    units = {k: units.get(k, "ms") for k in LATENCIES}
    rules = r.table("outcome", data.get("outcome", {}))
    r.known("outcome.", rules, _OUTCOME_KEYS)
    completed = tuple(_list(r, "outcome.completed", rules.get("completed", [True])))
    timeouts = tuple(
        r.text("outcome.timeout_errors", t) for t in _list(r, "outcome.timeout_errors", rules.get("timeout_errors", []))
    )
    ok = _list(r, "outcome.ok_status", rules.get("ok_status", [200, 299]))
    if len(ok) != 2:
        raise r.fail("outcome.ok_status", "[lowest, highest] HTTP status that is a success", ok)
    lo, hi = (int(r.number("outcome.ok_status", s, 100, 599, "an HTTP status 100-599")) for s in ok)
    if "completed" in rules and "completed" not in paths:
        raise r.fail("outcome.completed", "fields.completed too (the field these values are read from)")
    return LogMap(source, paths, cohorts, units, completed, timeouts, (lo, hi))


def _path(r: StrictReader, key: str, v: Any) -> tuple[str, ...]:
    text = r.text(key, v)
    parts = tuple(text.split("."))
    if not all(parts):
        raise r.fail(key, "a dotted path such as jsonPayload.stream_mode", v)
    return parts


def _list(r: StrictReader, key: str, v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise r.fail(key, "a list", v)
    return v


def known_outcome(value: Any) -> Outcome | None:
    """sseprobe's outcome of that name, or None."""
    try:
        return Outcome(value) if isinstance(value, str) else None
    except ValueError:
        return None
