"""The monitor's configuration (strict TOML), its lock, and the values its pass and writers share.

A pass is judged in parts (check, cohorts vs each other, vs the baseline, vs the checklist targets);
each part is GREEN / YELLOW / RED / UNKNOWN with a one-line why, and the pass is the worst part's level
(UNKNOWN only wins over GREEN), so cron sees one exit code: 0 GREEN, 1 YELLOW, 2 RED, 3 UNKNOWN.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._errors import SseprobeError
from .._redact import redact_url
from .._toml import StrictReader, read_toml
from ..plan.scenario import BOUNDS, out_of_bounds
from ..verdict.levels import exit_codes
from ..verdict.schema import MetricDoc

EXIT = exit_codes("GREEN", "YELLOW", "RED", "UNKNOWN")
_RANK = {"GREEN": 0, "UNKNOWN": 1, "YELLOW": 2, "RED": 3}  # UNKNOWN only wins over GREEN


class MonitorError(SseprobeError, ValueError):
    """The pass cannot run (bad config, lock held, no baseline to save): one line, exit 3."""


@dataclass(frozen=True)
class MonitorConfig:
    path: Path
    canonical_url: str
    legacy_url: str
    scenario: Path | None = None
    sessions: int | None = None
    concurrency: int | None = None
    policy: Path | None = None
    baseline: Path | None = None
    history: Path = Path("results/history.sqlite")
    results_dir: Path = Path("results")
    prometheus: Path | None = None
    pushgateway: str | None = None
    push_job: str = "sseprobe_monitor"
    webhook_env: str | None = None
    lock: Path = Path("results/monitor.lock")
    html: Path | None = None
    check: bool = True
    check_timeout_s: float = 10.0
    app: str | None = None
    ignore_checks: tuple[str, ...] = ()
    bearer_env: str | None = None
    bearer_file: Path | None = None
    until_decided: bool = False  # compare --until-decided, with its caps below
    look_every: int | None = None
    max_sessions: int | None = None
    max_duration_s: float | None = None
    traffic_rate: float | None = None
    metrics_port: int | None = None  # live metrics while the probe runs (docs/metrics.md)
    metrics_host: str | None = None
    metrics_linger_s: float | None = None

    def public(self) -> dict[str, Any]:
        """For outputs: paths, redacted URLs, the *names* of secret sources, never their values."""
        out: dict[str, Any] = {}
        for k, v in vars(self).items():
            if v is None:
                continue
            if k in ("canonical_url", "legacy_url", "pushgateway"):
                v = redact_url(str(v))
            out[k] = str(v) if isinstance(v, Path) else v
        return out


_PATH_KEYS = {"scenario", "policy", "baseline", "history", "results_dir", "prometheus", "lock", "html", "bearer_file"}
_STR_KEYS = {"url", "canonical_url", "legacy_url", "pushgateway", "push_job", "webhook_env", "app", "bearer_env"}
_INT_KEYS = {"sessions", "concurrency", "look_every", "max_sessions"}
_SECONDS_KEYS = {"check_timeout_s", "max_duration_s", "traffic_rate"}  # numbers > 0
# the bounds scenario files and options have (plan.scenario.BOUNDS), by the option each key stands for
_BOUND_OF = {"check_timeout_s": "connect_timeout", "max_duration_s": "max_duration", "traffic_rate": "traffic_rate"}
_METRICS_KEYS = {"metrics_port": "metrics_port", "metrics_linger_s": "metrics_linger"}  # 0 is a value: any port
_KEYS = (
    _PATH_KEYS
    | _STR_KEYS
    | _INT_KEYS
    | _SECONDS_KEYS
    | set(_METRICS_KEYS)
    | {"metrics_host", "check", "ignore_checks", "until_decided"}
)


def load_monitor_config(path: str | Path) -> MonitorConfig:
    """Strict TOML: unknown keys and wrong types are one-line errors naming the file and key.
    Relative paths are relative to the config file's folder."""
    p = Path(path)
    data = read_toml(p, MonitorError)
    reader = StrictReader(p, MonitorError)
    fail = reader.fail
    reader.known("", data, _KEYS)
    values: dict[str, Any] = {}
    for key, v in data.items():
        if key in _PATH_KEYS or key in _STR_KEYS or key == "metrics_host":
            if not isinstance(v, str) or not v:
                raise fail(key, "a non-empty string")
            values[key] = Path(os.path.normpath(p.parent / v)) if key in _PATH_KEYS else v
        elif key in _INT_KEYS:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1 or out_of_bounds(_BOUND_OF.get(key, key), v):
                raise fail(key, f"a whole number >= 1 and <= {BOUNDS[_BOUND_OF.get(key, key)][1]:g}")
            values[key] = v
        elif key in ("check", "until_decided"):
            if not isinstance(v, bool):
                raise fail(key, "true or false")
            values[key] = v
        elif key == "ignore_checks":
            if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                raise fail(key, 'a list of check names, e.g. ["health.dependencies"]')
            values[key] = tuple(v)
        elif key in _METRICS_KEYS:
            kind = int if key == "metrics_port" else (int, float)
            if isinstance(v, bool) or not isinstance(v, kind) or (why := out_of_bounds(_METRICS_KEYS[key], v)):
                raise fail(key, why or ("a TCP port" if key == "metrics_port" else "seconds"))
            values[key] = v
        elif key in _SECONDS_KEYS:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (why := out_of_bounds(_BOUND_OF[key], v)):
                raise fail(key, f"{'sessions per second' if key == 'traffic_rate' else 'seconds'}: {why or 'a number'}")
            values[key] = float(v)
    url = values.pop("url", None)
    if url and ("canonical_url" in values or "legacy_url" in values):
        raise fail("url", "either url or canonical_url + legacy_url, not both")
    values.setdefault("canonical_url", url)
    values.setdefault("legacy_url", url)
    for key in ("canonical_url", "legacy_url"):
        u = values.get(key)
        if not u:
            raise fail("url" if url is None else key, "the service's base URL (url, or canonical_url and legacy_url)")
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise fail(key if key in data else "url", f"an http(s) URL, got {redact_url(u)!r}")
    if "pushgateway" in values and urlsplit(values["pushgateway"]).scheme not in ("http", "https"):
        raise fail("pushgateway", "an http(s) URL")
    if "history" in values and "lock" not in values:
        values["lock"] = Path(values["history"]).with_suffix(".lock")
    return MonitorConfig(path=p, **values)


@contextlib.contextmanager
def pass_lock(path: Path) -> Iterator[None]:
    """An exclusive, non-blocking flock for the whole pass: two passes never overlap.

    The file stays in place (deleting it would race with a waiting pass); the kernel drops the
    lock when the process ends, however it ends.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_NONBLOCK: a FIFO put there opens at once (and is refused below) instead of blocking the pass
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        raise MonitorError(f"lock {path}: cannot open: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise MonitorError(f"lock {path}: not a regular file")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        raise MonitorError(f"another pass holds the lock {path}" + (f" (pid {holder})" if holder else "")) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


@dataclass
class Part:
    """One judged part of the pass: GREEN / YELLOW / RED / UNKNOWN and why, in one line; a comparison's
    part keeps its metric rows (the results document's verdict rows), so a report can show what decided it."""

    name: str
    level: str
    detail: str
    metrics: tuple[MetricDoc, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"part": self.name, "level": self.level, "detail": self.detail}
        if self.metrics:
            d["metrics"] = list(self.metrics)
        return d


def worst(parts: list[Part]) -> str:
    return max((p.level for p in parts), key=_RANK.__getitem__, default="UNKNOWN")


@dataclass
class PassResult:
    overall: str
    parts: list[Part]
    results: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT[self.overall]
