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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from .._errors import SseprobeError
from .._redact import redact_url
from .._toml import StrictReader, read_toml
from ..plan.scenario import BOUNDS, out_of_bounds
from ..verdict.levels import exit_codes
from ..verdict.schema import MetricDoc, PartDoc

EXIT = exit_codes("GREEN", "YELLOW", "RED", "UNKNOWN")
_RANK = {"GREEN": 0, "UNKNOWN": 1, "YELLOW": 2, "RED": 3}  # UNKNOWN only wins over GREEN


class MonitorError(SseprobeError, ValueError):
    """The pass cannot run (bad config, lock held, no baseline to save): one line, exit 3."""


DEFAULT_HISTORY = Path("results/history.sqlite")
ConfigView = dict[str, str | float | bool | list[str]]  # the config as outputs show it (MonitorDoc.config)


@dataclass(frozen=True)
class MonitorConfig:
    """The monitor config file, read once and checked (:func:`load_monitor_config`, which sets every field:
    the defaults are there); the command line's flags lay values over it with ``replace``."""

    path: Path
    canonical_url: str
    legacy_url: str
    scenario: Path | None
    sessions: int | None
    concurrency: int | None
    policy: Path | None
    baseline: Path | None
    history: Path
    results_dir: Path
    prometheus: Path | None
    pushgateway: str | None
    push_job: str
    webhook_env: str | None
    lock: Path
    html: Path | None
    check: bool
    check_timeout_s: float
    app: str | None
    ignore_checks: tuple[str, ...]
    bearer_env: str | None
    bearer_file: Path | None
    until_decided: bool  # compare --until-decided, with its caps below
    look_every: int | None
    max_sessions: int | None
    max_duration_s: float | None
    traffic_rate: float | None
    metrics_port: int | None  # live metrics while the probe runs (docs/metrics.md)
    metrics_host: str | None
    metrics_linger_s: float | None

    def public(self) -> ConfigView:
        """For outputs: paths, redacted URLs, the *names* of secret sources, never their values."""
        out: ConfigView = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if f.name in ("canonical_url", "legacy_url", "pushgateway"):
                v = redact_url(str(v))
            out[f.name] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        return out


_PATH_KEYS = {"scenario", "policy", "baseline", "history", "results_dir", "prometheus", "lock", "html", "bearer_file"}
_STR_KEYS = {"url", "canonical_url", "legacy_url", "pushgateway", "push_job", "webhook_env", "app", "bearer_env"}
_INT_KEYS = {"sessions", "concurrency", "look_every", "max_sessions"}
# the bounds scenario files and options have (plan.scenario.BOUNDS), by the option each key stands for
_BOUND_OF = {
    "check_timeout_s": "connect_timeout",
    "max_duration_s": "max_duration",
    "traffic_rate": "traffic_rate",
    "metrics_linger_s": "metrics_linger",
}
_KEYS = (
    _PATH_KEYS
    | _STR_KEYS
    | _INT_KEYS
    | set(_BOUND_OF)
    | {"metrics_port", "metrics_host", "check", "ignore_checks", "until_decided"}
)


@dataclass(frozen=True)
class _Keys:
    """The file's top-level table, each key read as its kind: the value, or None where the key is absent
    (TOML has no null); a value of the wrong kind is one error naming the file and the key."""

    path: Path
    data: Mapping[str, object]
    fail: Callable[[str, str], Exception]

    def text(self, key: str) -> str | None:
        v = self.data.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            raise self.fail(key, "a non-empty string")
        return v

    def file(self, key: str) -> Path | None:
        """A path, relative to the config file's folder."""
        v = self.text(key)
        return None if v is None else Path(os.path.normpath(self.path.parent / v))

    def flag(self, key: str, default: bool) -> bool:
        v = self.data.get(key, default)
        if not isinstance(v, bool):
            raise self.fail(key, "true or false")
        return v

    def count(self, key: str) -> int | None:
        v, bound = self.data.get(key), _BOUND_OF.get(key, key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < 1 or out_of_bounds(bound, v):
            raise self.fail(key, f"a whole number >= 1 and <= {BOUNDS[bound][1]:g}")
        return v

    def seconds(self, key: str) -> float | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or (why := out_of_bounds(_BOUND_OF[key], v)):
            raise self.fail(
                key, f"{'sessions per second' if key == 'traffic_rate' else 'seconds'}: {why or 'a number'}"
            )
        return float(v)

    def port(self, key: str) -> int | None:
        """A TCP port; 0 is a value (any free port)."""
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or (why := out_of_bounds(key, v)):
            raise self.fail(key, why or "a TCP port")
        return v

    def names(self, key: str) -> tuple[str, ...]:
        v = self.data.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise self.fail(key, 'a list of check names, e.g. ["health.dependencies"]')
        return tuple(v)

    def url(self, key: str, given: str | None, fallback: str | None) -> str:
        """``key`` (canonical_url, legacy_url) or else ``url``: an http(s) URL."""
        u = given or fallback
        if not u:
            raise self.fail(
                "url" if fallback is None else key, "the service's base URL (url, or canonical_url and legacy_url)"
            )
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.fail(key if key in self.data else "url", f"an http(s) URL, got {redact_url(u)!r}")
        return u


def load_monitor_config(path: str | Path) -> MonitorConfig:
    """Strict TOML: unknown keys and wrong types are one-line errors naming the file and key.
    Relative paths are relative to the config file's folder. Every default is here."""
    p = Path(path)
    data = read_toml(p, MonitorError)
    reader = StrictReader(p, MonitorError)
    reader.known("", data, _KEYS)
    keys = _Keys(p, data, reader.fail)
    url, canonical, legacy = keys.text("url"), keys.text("canonical_url"), keys.text("legacy_url")
    if url and (canonical or legacy):
        raise reader.fail("url", "either url or canonical_url + legacy_url, not both")
    pushgateway = keys.text("pushgateway")
    if pushgateway and urlsplit(pushgateway).scheme not in ("http", "https"):
        raise reader.fail("pushgateway", "an http(s) URL")
    history = keys.file("history")
    return MonitorConfig(
        path=p,
        canonical_url=keys.url("canonical_url", canonical, url),
        legacy_url=keys.url("legacy_url", legacy, url),
        scenario=keys.file("scenario"),
        sessions=keys.count("sessions"),
        concurrency=keys.count("concurrency"),
        policy=keys.file("policy"),
        baseline=keys.file("baseline"),
        history=history or DEFAULT_HISTORY,
        results_dir=keys.file("results_dir") or Path("results"),
        prometheus=keys.file("prometheus"),
        pushgateway=pushgateway,
        push_job=keys.text("push_job") or "sseprobe_monitor",
        webhook_env=keys.text("webhook_env"),
        lock=keys.file("lock") or (history.with_suffix(".lock") if history else Path("results/monitor.lock")),
        html=keys.file("html"),
        check=keys.flag("check", True),
        check_timeout_s=keys.seconds("check_timeout_s") or 10.0,
        app=keys.text("app"),
        ignore_checks=keys.names("ignore_checks"),
        bearer_env=keys.text("bearer_env"),
        bearer_file=keys.file("bearer_file"),
        until_decided=keys.flag("until_decided", False),
        look_every=keys.count("look_every"),
        max_sessions=keys.count("max_sessions"),
        max_duration_s=keys.seconds("max_duration_s"),
        traffic_rate=keys.seconds("traffic_rate"),
        metrics_port=keys.port("metrics_port"),
        metrics_host=keys.text("metrics_host"),
        metrics_linger_s=keys.seconds("metrics_linger_s"),  # 0 is a value: no linger
    )


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


@dataclass(frozen=True)
class Part:
    """One judged part of the pass: GREEN / YELLOW / RED / UNKNOWN and why, in one line; a comparison's
    part keeps its metric rows (the results document's verdict rows), so a report can show what decided it."""

    name: str
    level: str
    detail: str
    metrics: tuple[MetricDoc, ...] = ()

    def to_dict(self) -> PartDoc:
        d = PartDoc(part=self.name, level=self.level, detail=self.detail)
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
