"""The monitor pass's outputs: one writer each, run in order once a pass has measured something.

Each output is written atomically: a pass killed midway leaves the history, the Prometheus file and
the baseline as they were. The history comes first (its failure can change the verdict the others
report), the baseline last (it is stored only if the whole pass earns it).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import orjson

from .._api import RunPlan
from .._redact import redact_url
from ..report.document import dumps, write_atomic
from ..report.history import CohortRow, History, HistoryError, PassRow
from ..report.prom import PassMetrics, push, write_textfile
from ..verdict.schema import BaselineDoc, MonitorDoc, ResultsDocument
from ..verdict.stats import CohortStats
from .monitor_config import EXIT, MonitorConfig, MonitorError, Part, PassResult, worst


def save_baseline(
    doc: ResultsDocument, source: str, dest: Path, *, force: bool = False, expected: RunPlan | None = None
) -> Path:
    """Store a results document as the baseline, histograms and all (percentiles alone cannot be compared).

    Unless ``force``: never from a saturated generator (its latencies read high by up to its lag, and
    every later pass would be judged against them), and never a document whose cohorts, flows or load
    shape differ from ``expected`` (the monitor config's own ``config`` block): a canonical-only run over
    a two-cohort monitor, or 50 in flight against a monitor's 10, would judge every pass against the
    wrong thing."""
    for name, c in doc["cohorts"].items():
        hists = c.get("histograms") or {}
        if not hists.get("ttfe_us"):
            raise MonitorError(f"{source}: cohort {name!r} has no encoded histograms: cannot serve as a baseline")
        try:
            CohortStats.from_dict(c)
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitorError(f"{source}: cohort {name!r} is malformed: {exc}") from None
    if not force:
        generator = doc.get("generator")
        if generator and generator.get("saturated") is True:
            raise MonitorError(
                f"{source}: its generator was saturated ({generator.get('note') or 'lagging'}): its latencies read"
                " high; record the baseline on a quieter machine or at a lower load (--force stores it anyway)"
            )
        differs = shape_differences(doc, expected) if expected is not None else []
        if differs:
            raise MonitorError(
                f"{source} differs from the monitor config: {'; '.join(differs)} (--force stores it anyway)"
            )
    saved = doc.copy()
    saved["baseline"] = BaselineDoc(saved=datetime.now(UTC).isoformat(timespec="seconds"), source=str(source))
    return write_atomic(dest, dumps(saved))


def shape_differences(doc: ResultsDocument, expected: RunPlan) -> list[str]:
    """What differs between a results document and the plan of a monitor pass: the cohorts, each cohort's
    flow, and the load's shape (model, users in flight, rates, think time) where the document records it.
    The numbers of sessions may differ: the statistics allow for them."""
    out: list[str] = []
    have, want = doc.get("cohorts") or {}, {c.name: c.options.flow for c in expected.cohorts}
    if sorted(have) != sorted(want):
        out.append(f"cohorts {', '.join(sorted(have)) or 'none'} where the monitor measures {', '.join(sorted(want))}")
    for name in sorted(set(have) & set(want)):
        a, b = (have[name] or {}).get("flow"), want[name]
        if a != b:
            out.append(f"cohort {name} runs flow {a} where the monitor runs {b}")
    load, want_load = (doc.get("config") or {}).get("load") or {}, expected.config["load"]
    keys = ("model", "think") + (("phases",) if want_load.get("model") == "open" else ("concurrency",))
    for key in keys:
        if key in load and load[key] != want_load.get(key):
            out.append(f"load {key} {_short(load[key])} where the monitor's is {_short(want_load.get(key))}")
    return out


def _short(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{p.get('rate')}/s for {p.get('duration_s')} s" for p in value) + "]"
    return "none" if value is None else str(value)


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
    doc: ResultsDocument | None
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
                cohorts=self.doc["cohorts"] if self.doc else {},
                generator=self.doc.get("generator") if self.doc else None,
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
        cohorts = done.doc["cohorts"] if done.doc else {}
        row = PassRow(
            started=done.started.isoformat(timespec="seconds"),
            duration_s=round(done.duration, 3),
            verdict=done.overall,
            exit_code=EXIT[done.overall],
            reasons=[f"{p.name} {p.level}: {p.detail}" for p in done.parts],
            results=str(done.results_path) if done.doc is not None else None,
            cohorts=[CohortRow.from_document(n, c) for n, c in cohorts.items()],
            **PassRow.generator_of(done.doc.get("generator") if done.doc else None),
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
        done.doc["monitor"] = MonitorDoc(
            overall=overall,
            exit_code=EXIT[overall],
            parts=[p.to_dict() for p in done.parts],
            config=done.cfg.public(),
        )
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
    """Today's document as the next baseline: only from a GREEN pass whose generator kept up (with
    --force also from a YELLOW or UNKNOWN one, or a saturated one; never from a RED or unmeasured one)."""

    path: Path | None
    force: bool

    def write(self, done: FinishedPass) -> None:
        overall, doc = done.overall, done.doc
        generator = doc.get("generator") if doc else None
        saturated = generator is not None and generator.get("saturated") is True
        if self.path is None:
            done.notes.append("baseline: WARN no 'baseline' path in the config: nothing saved")
        elif doc is None or overall == "RED" or ((overall != "GREEN" or saturated) and not self.force):
            why = f"this pass is {overall}" + (", not GREEN" if overall != "GREEN" else "")
            if overall == "GREEN" and saturated:
                why = "this pass's generator was saturated (its latencies read high)"
            done.notes.append(
                f"baseline: WARN not updated: {why}"
                + (" (--force stores it anyway)" if doc is not None and overall != "RED" else "")
                + (" (save one by hand with: sseprobe baseline save FILE)" if doc is not None else "")
            )
        else:
            save_baseline(doc, str(done.results_path), self.path, force=True)
            done.notes.append(f"baseline: updated {self.path}")


def _safe(f: Callable[[], str | None]) -> str | None:
    try:
        return f()
    except ValueError:
        return None


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _webhook_text(result: PassResult, cfg: MonitorConfig) -> str:
    lines = [f":red_circle: sseprobe monitor RED for {redact_url(cfg.canonical_url)}"]
    lines += [f"• {p.name}: {p.level}: {p.detail}" for p in result.parts if p.level != "GREEN"]
    return "\n".join(lines)
