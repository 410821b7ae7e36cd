"""One synthetic-monitor pass, for cron: check, probe, judge, then history, metrics and alerts.

The pass reuses what the commands use rather than re-plumbing it: ``check``'s :func:`run_checks`
for health and the flag, and the library's ``plan_from`` and ``compare`` (one worker) for the probe
of both cohorts, so a nightly pass measures exactly what an engineer measures by hand. It then judges
today against the stored baseline (same-named cohorts, same statistics as ``compare``) and against
the absolute targets and rollback triggers of the rollout checklist. Each part says why in one
line; the exit code is the worst part's (0 GREEN, 1 YELLOW, 2 RED, 3 UNKNOWN when nothing is worse).

Outputs are written only once a pass has measured something, each atomically: a pass killed
midway leaves the history, the Prometheus file and the baseline as they were. Each output is a
writer with one ``write`` method (``writers_for`` lists them in the order they run).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import orjson

from .._api import compare as compare_live
from .._api import make_plan
from .._config import FlowName, FlowOptions
from .._errors import SseprobeError, UsageProblem
from .._redact import redact_url
from .._toml import StrictReader, read_toml
from ..plan.options import Options, options_from
from ..plan.scenario import BOUNDS, Scenario, ScenarioError, load_scenario, out_of_bounds
from ..report.document import ResultsError, dumps, read_document, write_atomic, write_with_fallback
from ..report.history import CohortRow, History, HistoryError, PassRow
from ..report.prom import PassMetrics, push, write_textfile
from ..verdict.compare import GENERATOR_ADVICE, generator_band, judge
from ..verdict.levels import exit_codes
from ..verdict.policy import (
    DEFAULT_POLICY,
    Policy,
    PolicyError,
    check_triggers,
    format_metric,
    load_policy,
    mark_generator_bound,
    metric_value,
)
from ..verdict.stats import CohortStats
from .check import run_checks

__all__ = [
    "MonitorError",
    "MonitorConfig",
    "Part",
    "load_monitor_config",
    "pass_lock",
    "run_pass",
    "save_baseline",
    "TARGETS",
    "worst",
]

EXIT = exit_codes("GREEN", "YELLOW", "RED", "UNKNOWN")
_RANK = {"GREEN": 0, "UNKNOWN": 1, "YELLOW": 2, "RED": 3}  # UNKNOWN only wins over GREEN
# PROTOCOLS.md "What good means": (metric, op, target, words). Missing one is YELLOW.
TARGETS = (
    ("connect_success_rate", ">", 0.99, "connect success"),
    ("ttfe_p95_ms", "<", 500.0, "TTFE p95"),
    ("error_rate_5xx", "<", 0.01, "5xx rate"),
    ("completion_rate", ">", 0.98, "completion"),
)


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
    """One judged part of the pass: GREEN / YELLOW / RED / UNKNOWN and why, in one line."""

    name: str
    level: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"part": self.name, "level": self.level, "detail": self.detail}


def worst(parts: list[Part]) -> str:
    return max((p.level for p in parts), key=_RANK.__getitem__, default="UNKNOWN")


def _level(verdict_level: str) -> str:
    return "UNKNOWN" if verdict_level == "INCONCLUSIVE" else verdict_level


# --- the parts ------------------------------------------------------------------------------------


def _headers(cfg: MonitorConfig) -> tuple[tuple[str, str], ...]:
    token = None
    if cfg.bearer_env:
        token = os.environ.get(cfg.bearer_env)
        if not token:
            raise MonitorError(f"bearer token: environment variable {cfg.bearer_env} is not set or empty")
    if cfg.bearer_file:
        try:
            token = cfg.bearer_file.read_text().strip()
        except OSError as exc:
            raise MonitorError(f"bearer token: cannot read {cfg.bearer_file}: {exc.strerror}") from None
    return (("Authorization", f"Bearer {token}"),) if token else ()


def check_part(cfg: MonitorConfig) -> tuple[Part, bool]:
    """Health and flag via ``check``; returns (part, reachable)."""
    groups = (
        {cfg.canonical_url: ("canonical", "legacy")}
        if cfg.canonical_url == cfg.legacy_url
        else {cfg.canonical_url: ("canonical",), cfg.legacy_url: ("legacy",)}
    )
    results = []
    for url, flows in groups.items():
        opts = FlowOptions(
            flow=cast(FlowName, flows[0]),
            url=url,
            app=cfg.app or "vana",
            user_prefix="sseprobe-monitor",
            headers=_headers(cfg),
        )
        found = asyncio.run(run_checks(opts, flows, cfg.check_timeout_s))
        results += found
        if any(r.level == "UNKNOWN" for r in found):
            why = "; ".join(r.detail for r in found if r.level == "UNKNOWN")
            return Part("check", "UNKNOWN", why), False
    bad = [r for r in results if r.level in ("FAIL", "WARN") and r.name not in cfg.ignore_checks]
    ignored = [r for r in results if r.level in ("FAIL", "WARN") and r.name in cfg.ignore_checks]
    level = "RED" if any(r.level == "FAIL" for r in bad) else "YELLOW" if bad else "GREEN"
    if bad:
        detail = "; ".join(f"{r.name}: {r.detail}" for r in bad)
    else:
        flag = next((r.detail.split(" ")[0] for r in results if r.name == "canonical.flag"), "?")
        sessions = sum(1 for r in results if r.name.endswith(".session") and r.level == "OK")
        detail = f"/health answered, canonical flag {flag}, {sessions} end-to-end session(s) ok"
    if ignored:
        detail += " (ignored by config: " + "; ".join(f"{r.name} {r.level}: {r.detail}" for r in ignored) + ")"
    return Part("check", level, detail), True


@dataclass(frozen=True)
class Probe:
    """What the pass's comparison gave: its exit code, its document (None if it could not run), why
    not, and whether the service answered at all (every session failing to connect is unreachable)."""

    code: int
    doc: dict[str, Any] | None
    error: str = ""
    reachable: bool = True


def probe(cfg: MonitorConfig, out: Path, scenario: Scenario | None, policy_path: Path | None) -> Probe:
    """Run the comparison through the library (one worker, no progress) and write its results document."""
    always = Options(
        canonical_url=cfg.canonical_url,
        legacy_url=cfg.legacy_url,
        quiet=True,
        out=str(out),
        workers=1,
        user_prefix="sseprobe-monitor",
    )
    optional: dict[str, object] = {
        "scenario": str(cfg.scenario) if cfg.scenario else None,
        "sessions": cfg.sessions,
        "concurrency": cfg.concurrency,
        "policy_file": str(policy_path) if policy_path else None,
        "app": cfg.app,
        "bearer_env": cfg.bearer_env,
        "bearer_file": str(cfg.bearer_file) if cfg.bearer_file else None,
        "until_decided": cfg.until_decided,
        "look_every": cfg.look_every,
        "max_sessions": cfg.max_sessions,
        "max_duration": cfg.max_duration_s,
        "traffic_rate": cfg.traffic_rate,
    }
    configured = {k: v for k, v in optional.items() if v}  # what the config sets; the rest: defaults
    metrics = {
        "metrics_port": cfg.metrics_port,
        "metrics_host": cfg.metrics_host,
        "metrics_linger": cfg.metrics_linger_s,
    }
    configured.update({k: v for k, v in metrics.items() if v is not None})  # port 0 and linger 0 are values
    given = frozenset({"canonical_url", "legacy_url", "quiet", "out", "workers", "user_prefix", *configured})
    try:
        result = compare_live(make_plan(scenario, options_from(configured, always), given, "compare"), progress=None)
    except UsageProblem as exc:
        return Probe(3, None, str(exc))
    except Exception as exc:  # noqa: BLE001 - a pass reports, it does not crash
        return Probe(3, None, f"probe failed: {type(exc).__name__}: {exc}"[:300])
    path, failed = write_with_fallback(out, dumps(result.document))
    if failed:
        return Probe(3, None, f"{failed}; the results are saved in {path}")
    return Probe(result.exit_code, result.document, result.problem or "", reachable=not result.problem)


def _first_reasons(reasons: list[str], n: int = 2) -> str:
    return "; ".join(reasons[:n]) + (f" (+{len(reasons) - n} more)" if len(reasons) > n else "")


def verdict_part(name: str, verdict: Mapping[str, Any]) -> Part:
    level = _level(str(verdict.get("overall", "INCONCLUSIVE")))
    reasons = list(verdict.get("reasons") or [])
    return Part(name, level, _first_reasons(reasons) or str(verdict.get("overall")))


def baseline_parts(doc: Mapping[str, Any], baseline: Mapping[str, Any], policy: Policy) -> list[Part]:
    band = max(generator_band(doc.get("generator")), generator_band(baseline.get("generator")))
    parts = []
    for name, data in doc["cohorts"].items():
        if name not in baseline["cohorts"]:
            parts.append(
                Part(
                    f"{name} vs baseline",
                    "UNKNOWN",
                    f"the baseline has no cohort {name!r} (it has {', '.join(baseline['cohorts'])})",
                )
            )
            continue
        try:
            v = judge(
                CohortStats.from_dict(baseline["cohorts"][name]),
                CohortStats.from_dict(data),
                policy,
                generator_error_ms=band,
            )
        except ValueError as exc:  # a pass that cannot judge is UNKNOWN, and still recorded
            parts.append(Part(f"{name} vs baseline", "UNKNOWN", f"cannot compare: {exc}"))
            continue
        parts.append(Part(f"{name} vs baseline", _level(v.overall), _first_reasons(v.reasons)))
    return parts


def target_parts(doc: Mapping[str, Any], policy: Policy) -> list[Part]:
    """Absolute checklist targets (missed: YELLOW) and rollback triggers (fired: RED), per cohort.
    A latency trigger or miss that a saturated generator's own lag could explain is UNKNOWN."""
    band = generator_band(doc.get("generator"))
    parts = []
    for name, data in doc["cohorts"].items():
        stats = CohortStats.from_dict(data)
        fired = mark_generator_bound(check_triggers(stats, policy), band)
        real = [f"{t.name} ({t.reason})" for t in fired if not t.generator_bound]
        misses, bound = _target_misses(stats, band)
        bound += [f"{t.name} ({t.reason})" for t in fired if t.generator_bound]
        if real:
            parts.append(Part(f"{name} targets", "RED", "rollback trigger: " + "; ".join(real)))
        elif misses:
            parts.append(Part(f"{name} targets", "YELLOW", "; ".join(misses)))
        elif bound:
            parts.append(Part(f"{name} targets", "UNKNOWN", f"generator-bound: {'; '.join(bound)}; {GENERATOR_ADVICE}"))
        else:
            parts.append(Part(f"{name} targets", "GREEN", "every checklist target met, no rollback trigger"))
    return parts


def _target_misses(stats: CohortStats, band_ms: float) -> tuple[list[str], list[str]]:
    """(targets missed, latency targets missed only by less than the generator's error band)."""
    misses: list[str] = []
    bound: list[str] = []
    for metric, op, target, _words in TARGETS:
        v = metric_value(stats, metric)
        if v is None or _meets(v, op, target):
            continue
        text = f"{metric} {format_metric(metric, v)} misses the target {op} {format_metric(metric, target)}"
        if metric.endswith("_ms") and band_ms > 0 and _meets(v - band_ms, op, target):
            bound.append(f"{text}, within the generator's own lag (p99 {format_metric(metric, band_ms)})")
        else:
            misses.append(text)
    return misses, bound


def _meets(value: float, op: str, target: float) -> bool:
    return value > target if op == ">" else value < target


# --- outputs ---------------------------------------------------------------------------------------


def save_baseline(doc: Mapping[str, Any], source: str, dest: Path) -> Path:
    """Store a results document as the baseline, histograms and all (percentiles alone cannot be compared)."""
    for name, c in doc["cohorts"].items():
        hists = c.get("histograms") or {}
        if not hists.get("ttfe_us"):
            raise MonitorError(f"{source}: cohort {name!r} has no encoded histograms: cannot serve as a baseline")
        try:
            CohortStats.from_dict(c)
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitorError(f"{source}: cohort {name!r} is malformed: {exc}") from None
    saved = {**doc, "baseline": {"saved": datetime.now(UTC).isoformat(timespec="seconds"), "source": str(source)}}
    return write_atomic(dest, dumps(saved))


def send_webhook(url: str, text: str, timeout: float = 10.0) -> str | None:
    """POST Slack-compatible JSON; None when sent, else why not (never the URL: it holds a token)."""
    req = urllib.request.Request(
        url,
        data=orjson.dumps({"text": text}),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "sseprobe-monitor"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the operator's URL
            resp.read()
        return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(exc).__name__}: {type(reason).__name__ if not isinstance(reason, str) else reason}"


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass
class PassResult:
    overall: str
    parts: list[Part]
    results: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT[self.overall]


def run_pass(
    cfg: MonitorConfig,
    *,
    update_baseline: bool = False,
    force: bool = False,
    html: Path | None = None,
    echo: Callable[[str], None] = print,
) -> PassResult:
    """One whole pass under the lock. Raises MonitorError / HistoryError only before measuring."""
    with pass_lock(cfg.lock):
        started = datetime.now(UTC).replace(microsecond=0)  # as stored in the history
        t0 = time.monotonic()
        history = History(cfg.history)  # a corrupt or newer file stops the pass before any load
        try:
            scenario = load_scenario(cfg.scenario) if cfg.scenario else None
            policy_path = cfg.policy or (Path(scenario.policy) if scenario and scenario.policy else None)
            policy = load_policy(policy_path) if policy_path else DEFAULT_POLICY
        except (ScenarioError, PolicyError) as exc:
            history.close()
            raise MonitorError(str(exc)) from None
        try:
            return _measure_and_record(
                cfg, history, started, t0, (scenario, policy, policy_path), (update_baseline, force), html, echo
            )
        finally:
            history.close()


def _measure_and_record(
    cfg: MonitorConfig,
    history: History,
    started: datetime,
    t0: float,
    judged_by: tuple[Scenario | None, Policy, Path | None],
    baseline_update: tuple[bool, bool],
    html: Path | None,
    echo: Callable[[str], None],
) -> PassResult:
    update_baseline = baseline_update[0]
    scenario, policy, policy_path = judged_by
    parts: list[Part] = []
    notes: list[str] = []
    baseline = None
    if cfg.baseline and not update_baseline:
        try:
            baseline = read_document(cfg.baseline)
        except ResultsError as exc:
            why = (
                "none saved yet (sseprobe baseline save, or monitor --update-baseline)"
                if not cfg.baseline.exists()
                else str(exc)
            )
            parts.append(Part("baseline", "UNKNOWN", f"{cfg.baseline}: {why}"))
    reachable = True
    if cfg.check:
        part, reachable = check_part(cfg)
        parts.append(part)
    doc: dict[str, Any] | None = None
    results_path = cfg.results_dir / f"monitor-{_stamp()}.json"
    if reachable:
        found = probe(cfg, results_path, scenario, policy_path)
        doc = found.doc
        if doc is None:
            parts.append(Part("probe", "UNKNOWN", found.error or "the probe wrote no results"))
        elif doc.get("interrupted"):
            parts.append(Part("probe", "UNKNOWN", f"interrupted: {doc.get('stop_reason') or 'stopped'}"))
            echo(_summary(PassResult(worst(parts), parts)))
            echo("  (interrupted pass: history, metrics and baseline left as they were)")
            return PassResult(worst(parts), parts, results_path)
        elif not found.reachable:
            reachable = False
            parts.append(Part("probe", "UNKNOWN", found.error))
        else:
            parts.append(verdict_part("canonical vs legacy", doc.get("verdict") or {}))
            if baseline is not None:
                parts += baseline_parts(doc, baseline, policy)
            parts += target_parts(doc, policy)
            generator = doc.get("generator") or {}
            if generator.get("saturated"):  # the prober itself was the bottleneck: latencies read high
                notes.append(f"generator: WARN {generator.get('note', 'saturated')}")
    done = FinishedPass(
        cfg, history, started, time.monotonic() - t0, parts, notes, doc, results_path, reachable and doc is not None
    )
    for writer in writers_for(cfg, history, html, baseline_update):
        writer.write(done)
    result = done.result()
    echo(_summary(result))
    for note in notes:
        echo(f"  {note}")
    return result


# --- the pass's outputs: one writer each, run in order ---------------------------------------------


@dataclass
class FinishedPass:
    """A judged pass as its writers see it. A writer that fails says so in ``notes`` (a WARN line) or,
    where the pass's record is at stake (history, Prometheus), as an UNKNOWN part, which the later writers
    then see in ``overall``."""

    cfg: MonitorConfig
    history: History
    started: datetime
    duration: float
    parts: list[Part]
    notes: list[str]
    doc: dict[str, Any] | None
    results_path: Path
    up: bool
    _metrics: PassMetrics | None = None

    @property
    def overall(self) -> str:
        return worst(self.parts)

    def result(self) -> PassResult:
        return PassResult(self.overall, self.parts, self.results_path if self.doc is not None else None, self.notes)

    def metrics(self) -> PassMetrics:
        """The Prometheus view, built once (after the history is written) for the textfile and the push."""
        if self._metrics is None:
            overall = self.overall
            last_green = (
                self.started.timestamp() if overall == "GREEN" else _ts(_safe(lambda: self.history.last_time("GREEN")))
            )
            self._metrics = PassMetrics(
                parts={"overall": overall, **{p.name: p.level for p in self.parts}},
                started_ts=self.started.timestamp(),
                duration_s=self.duration,
                up=self.up,
                last_success_ts=last_green,
                cohorts=(self.doc or {}).get("cohorts", {}),
                generator=(self.doc or {}).get("generator"),
            )
        return self._metrics


class Writer(Protocol):
    def write(self, done: FinishedPass) -> None:
        """Write one output of the pass; report a failure in ``done``, never raise for an optional output."""


def writers_for(
    cfg: MonitorConfig, history: History, html: Path | None, baseline_update: tuple[bool, bool]
) -> list[Writer]:
    """The configured outputs, in the order they run: the history first (its failure can change the
    verdict the others report), the baseline last (it is stored only if the whole pass earns it)."""
    writers: list[Writer] = [HistoryWriter(history)]
    if cfg.prometheus:
        writers.append(PrometheusWriter(cfg.prometheus))
    if cfg.pushgateway:
        writers.append(PushgatewayWriter(cfg.pushgateway, cfg.push_job))
    if cfg.webhook_env:
        writers.append(WebhookWriter(cfg.webhook_env))
    writers.append(ResultsWriter())
    report = html or cfg.html
    if report:
        writers.append(ReportWriter(report))
    update_baseline, force = baseline_update
    if update_baseline:
        writers.append(BaselineWriter(cfg.baseline, force))
    return writers


@dataclass(frozen=True)
class HistoryWriter:
    """One row per pass, in one transaction; a failure makes the pass UNKNOWN if nothing is worse."""

    history: History

    def write(self, done: FinishedPass) -> None:
        row = PassRow(
            started=done.started.isoformat(timespec="seconds"),
            duration_s=round(done.duration, 3),
            verdict=done.overall,
            exit_code=EXIT[done.overall],
            reasons=[f"{p.name} {p.level}: {p.detail}" for p in done.parts],
            results=str(done.results_path) if done.doc is not None else None,
            cohorts=[CohortRow.from_document(n, c) for n, c in (done.doc or {}).get("cohorts", {}).items()],
            **PassRow.generator_of((done.doc or {}).get("generator")),
        )
        try:
            pass_id = self.history.append(row)
            done.notes.append(f"history: pass {pass_id} written to {done.cfg.history}")
        except HistoryError as exc:
            done.parts.append(Part("history", "UNKNOWN", str(exc)))


@dataclass(frozen=True)
class PrometheusWriter:
    """The node-exporter textfile; a failure is an UNKNOWN part (the scrape would show a stale pass)."""

    path: Path

    def write(self, done: FinishedPass) -> None:
        metrics = done.metrics()
        try:
            write_textfile(metrics, self.path)
            done.notes.append(f"prometheus: {self.path}")
        except OSError as exc:
            done.parts.append(Part("prometheus", "UNKNOWN", f"cannot write {self.path}: {exc.strerror or exc}"))
            metrics.parts["overall"] = done.overall


@dataclass(frozen=True)
class PushgatewayWriter:
    url: str
    job: str

    def write(self, done: FinishedPass) -> None:
        try:
            push(done.metrics(), self.url, self.job)
            done.notes.append(f"pushgateway: pushed job {self.job} to {redact_url(self.url)}")
        except Exception as exc:  # noqa: BLE001 - optional output: warn, never crash
            done.notes.append(f"pushgateway: WARN not pushed: {type(exc).__name__}: {str(exc)[:120]}")


@dataclass(frozen=True)
class WebhookWriter:
    """A Slack-compatible alert on RED only; the URL is read from the environment and never shown."""

    env: str

    def write(self, done: FinishedPass) -> None:
        if done.overall != "RED":
            return
        hook_url = os.environ.get(self.env)
        if not hook_url:
            done.notes.append(f"webhook: WARN environment variable {self.env} is not set: no alert sent")
            return
        failure = send_webhook(hook_url, _webhook_text(done.result(), done.cfg))
        done.notes.append("webhook: RED alert sent" if failure is None else f"webhook: WARN not sent: {failure}")


@dataclass(frozen=True)
class ResultsWriter:
    """The probe's results document again, now with the pass's verdict in its ``monitor`` section."""

    def write(self, done: FinishedPass) -> None:
        if done.doc is None:
            return
        overall = done.overall
        done.doc["monitor"] = {
            "overall": overall,
            "exit_code": EXIT[overall],
            "parts": [p.to_dict() for p in done.parts],
            "config": done.cfg.public(),
        }
        try:
            write_atomic(done.results_path, dumps(done.doc))
            done.notes.append(f"results: {done.results_path}")
        except OSError as exc:
            done.notes.append(f"results: WARN cannot rewrite {done.results_path}: {exc.strerror or exc}")


def monitor_title(done: FinishedPass) -> str:
    """The report's title: the pass's level and every part's, so that a RED pass whose comparison
    inside is GREEN says which part is RED (the check, the baseline) right where the GREEN shows."""
    parts = ", ".join(f"{p.name} {p.level}" for p in done.parts)
    return f"sseprobe monitor {done.overall}" + (f" ({parts})" if parts else "")


@dataclass(frozen=True)
class ReportWriter:
    path: Path

    def write(self, done: FinishedPass) -> None:
        if done.doc is None:
            return
        from ..report.html import write_report

        try:
            write_report([(str(done.results_path), done.doc)], self.path, title=monitor_title(done))
            done.notes.append(f"report: {self.path}")
        except OSError as exc:
            done.notes.append(f"report: WARN cannot write {self.path}: {exc.strerror or exc}")


@dataclass(frozen=True)
class BaselineWriter:
    """Today's document as the next baseline: only from a GREEN pass (or a YELLOW one with --force)."""

    path: Path | None
    force: bool

    def write(self, done: FinishedPass) -> None:
        overall, doc = done.overall, done.doc
        if self.path is None:
            done.notes.append("baseline: WARN no 'baseline' path in the config: nothing saved")
        elif doc is None or overall == "RED" or (overall != "GREEN" and not self.force):
            done.notes.append(
                f"baseline: WARN not updated: this pass is {overall}"
                + (", not GREEN (--force stores it anyway)" if doc is not None and overall != "RED" else "")
                + (" (save one by hand with: sseprobe baseline save FILE)" if doc is not None else "")
            )
        else:
            save_baseline(doc, str(done.results_path), self.path)
            done.notes.append(f"baseline: updated {self.path}")


def _safe(f: Callable[[], Any]) -> Any:
    try:
        return f()
    except ValueError:
        return None


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _summary(result: PassResult) -> str:
    bad = [p.name for p in result.parts if p.level == result.overall and p.level != "GREEN"]
    head = f"sseprobe monitor: {result.overall}" + (f" ({', '.join(bad)})" if bad else "")
    width = max((len(p.name) for p in result.parts), default=5)
    return "\n".join([head, *(f"  {p.name:<{width}}  {p.level:<7} {p.detail}" for p in result.parts)])


def _webhook_text(result: PassResult, cfg: MonitorConfig) -> str:
    lines = [f":red_circle: sseprobe monitor RED for {redact_url(cfg.canonical_url)}"]
    lines += [f"• {p.name}: {p.level}: {p.detail}" for p in result.parts if p.level != "GREEN"]
    return "\n".join(lines)
