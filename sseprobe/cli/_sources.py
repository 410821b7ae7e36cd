"""``compare --from-log`` / ``--from-prometheus``: the verdict on real traffic (docs/real-traffic.md).

Self-contained: its own options (``source_options``, handed to the command as one typed ``Source``) and
its own handling (``compare_source``), so the compare command only asks ``source.wanted`` and hands over.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from ..report.document import dumps, write_atomic
from ..report.verdict_text import render_verdict
from ..sources import LogRead, SourceError, judge_logs, read_log_map, read_logs, window_from
from ..sources.baseline import baseline_document
from ..sources.judge import Judged
from ..verdict.policy import Policy
from ..verdict.schema import ResultsDocument
from ._baseline import baseline_destination, baseline_path
from ._common import EXIT_OK, EXIT_UNKNOWN, UsageProblem, check_outputs
from ._report import attach_html
from ._run import emit

__all__ = [
    "Source",
    "TrafficWindow",
    "source_options",
    "window_options",
    "compare_source",
    "read_source_logs",
    "baseline_collect_cmd",
    "Destination",
]


@dataclass(frozen=True)
class TrafficWindow:
    """Which traffic: ``--log-map`` (how log lines map to fields), ``--since``, ``--until``, ``--window``."""

    log_map: str | None
    since: str | None
    until: str | None
    window: str | None


@dataclass(frozen=True)
class Source:
    """compare on real traffic: ``--from-log`` files or ``--from-prometheus`` with its two queries."""

    from_log: tuple[str, ...]
    from_prometheus: str | None
    query_canonical: str | None
    query_legacy: str | None
    traffic: TrafficWindow

    @property
    def wanted(self) -> bool:
        return bool(self.from_log or self.from_prometheus)


@dataclass(frozen=True)
class Destination:
    """Where a comparison's verdict goes: ``--out`` (the document), ``--html`` (its report), ``--json``."""

    out: str | None
    html: str | None
    as_json: bool


def window_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The window's flags, handed to the command as one ``traffic: TrafficWindow``."""

    @functools.wraps(f)
    def folded(
        *args: Any, log_map: str | None, since: str | None, until: str | None, window: str | None, **rest: Any
    ) -> Any:
        return f(*args, traffic=TrafficWindow(log_map, since, until, window), **rest)

    options = [
        click.option(
            "--log-map",
            default=None,
            metavar="NAME|FILE.toml",
            help="With --from-log: how lines map to fields (sseprobe: its own per-session records, the default; "
            "cloud-logging: a Cloud Logging export; or a TOML file, docs/real-traffic.md).",
        ),
        click.option(
            "--since", default=None, metavar="TIME", help="Only traffic at or after TIME (ISO 8601 or epoch s)."
        ),
        click.option("--until", default=None, metavar="TIME", help="Only traffic before TIME (default: no end)."),
        click.option(
            "--window",
            default=None,
            metavar="DURATION",
            help="Only the DURATION before --until (default now): 24h, 90m, 7d.",
        ),
    ]
    return _with(folded, options)


def source_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options of compare on real traffic, handed to the command as one ``source: Source``."""

    @functools.wraps(f)
    def folded(
        *args: Any,
        from_log: tuple[str, ...],
        from_prometheus: str | None,
        query_canonical: str | None,
        query_legacy: str | None,
        traffic: TrafficWindow,
        **rest: Any,
    ) -> Any:
        return f(*args, source=Source(from_log, from_prometheus, query_canonical, query_legacy, traffic), **rest)

    options = [
        click.option(
            "--from-log",
            "from_log",
            multiple=True,
            metavar="FILE",
            help="Judge real traffic from request logs (JSON Lines, .gz read too, - for stdin); repeatable.",
        ),
        click.option(
            "--from-prometheus",
            default=None,
            metavar="URL",
            help="Judge real traffic from latency histograms in Prometheus (--query-canonical, --query-legacy).",
        ),
        click.option(
            "--query-canonical",
            default=None,
            metavar="METRIC",
            help="With --from-prometheus: the canonical histogram.",
        ),
        click.option(
            "--query-legacy", default=None, metavar="METRIC", help="With --from-prometheus: the legacy histogram."
        ),
    ]
    return window_options(_with(folded, options))


def _with(f: Callable[..., Any], options: list[Callable[..., Any]]) -> Callable[..., Any]:
    for option in reversed(options):
        f = option(f)
    return f


def read_source_logs(files: tuple[str, ...], traffic: TrafficWindow) -> LogRead:
    """The logs of --from-log, read with --log-map in the window; SourceError as a usage problem."""
    try:
        window = window_from(traffic.since, traffic.until, traffic.window)
        return read_logs(list(files), read_log_map(traffic.log_map), window)
    except SourceError as exc:
        raise UsageProblem(str(exc)) from None


def compare_source(
    files: tuple[str, ...],
    source: Source,
    policy: Policy,
    *,
    live: bool,
    cohorts: tuple[str | None, str | None],
    to: Destination,
) -> int:
    """compare from a log or Prometheus: the same verdict, text, document and exit code as offline compare.
    ``live``: URLs or --until-decided were given (refused); ``cohorts``: baseline and candidate, if named."""
    if files or live:
        raise UsageProblem(
            "--from-log/--from-prometheus judge recorded traffic: no results files, URLs or --until-decided"
        )
    if source.from_log and source.from_prometheus:
        raise UsageProblem("give --from-log or --from-prometheus, not both")
    check_outputs(("--out", to.out), ("--html", to.html))
    try:
        if source.from_log:
            read = read_source_logs(source.from_log, source.traffic)
            for example in read.examples:
                click.echo(f"sseprobe: unreadable log line: {example}", err=True)
            judged = judge_logs(read, policy, *cohorts)
        else:
            judged = _prometheus(source, policy, cohorts)
    except SourceError as exc:
        raise UsageProblem(str(exc)) from None
    return _emit(judged, to)


def refuse_bucketed(docs: list[ResultsDocument], files: tuple[str, ...]) -> None:
    """Offline compare of a document from --from-prometheus would judge its buckets' upper edges as exact
    values, and rates it never measured: refused, one line."""
    for doc, path in zip(docs, files, strict=False):
        source = doc.get("source")
        if isinstance(source, dict) and source.get("kind") == "prometheus":
            raise UsageProblem(
                f"{path} holds Prometheus buckets (edges, no outcomes): judge them with compare --from-prometheus"
            )


def _prometheus(source: Source, policy: Policy, cohorts: tuple[str | None, str | None]) -> Judged:
    from ..sources.prometheus import judge_prometheus  # urllib only when asked for

    traffic = source.traffic
    if not (source.query_canonical and source.query_legacy):
        raise SourceError("--from-prometheus needs --query-canonical and --query-legacy (histogram _bucket selectors)")
    if traffic.since or traffic.log_map:
        raise SourceError("--from-prometheus takes --window (default 24h) and --until, not --since or --log-map")
    assert source.from_prometheus is not None  # only asked for with it
    until = window_from(None, traffic.until, None).until
    queries = {"canonical": source.query_canonical, "legacy": source.query_legacy}
    names = (cohorts[0] or "legacy", cohorts[1] or "canonical")
    if set(names) != {"canonical", "legacy"}:
        raise SourceError("--from-prometheus compares its two queries: cohorts canonical and legacy only")
    return judge_prometheus(source.from_prometheus, queries, policy, traffic.window or "24h", until, names)


def _emit(judged: Judged, to: Destination) -> int:
    color = sys.stdout.isatty() and not to.as_json

    def text() -> str:
        return render_verdict(
            judged.verdict, f"baseline ({judged.baseline})", f"candidate ({judged.candidate})", color=color
        )

    if to.as_json or to.out:
        if not emit(judged.document, to.out, "compare", to.as_json, text)[1]:
            return EXIT_UNKNOWN
    else:
        click.echo(text())
    attach_html(judged.document, "compare", to.html, to.as_json)
    return judged.verdict.exit_code


@click.command("collect")
@click.option(
    "--from-log", "from_log", multiple=True, required=True, metavar="FILE", help="Request logs (JSON Lines, .gz, -)."
)
@window_options
@baseline_destination
def baseline_collect_cmd(
    config_path: str | None, dest: str | None, from_log: tuple[str, ...], traffic: TrafficWindow
) -> int:
    """Collect a baseline from real traffic: the logs' cohorts over a window (--window 24h: the last day).

    Writes a results document (histograms and all, the source recorded) that ``compare BASELINE.json
    CANDIDATE.json`` and the monitor read like any saved run (docs/real-traffic.md).
    """
    target = baseline_path(config_path, dest)[1]
    read = read_source_logs(from_log, traffic)
    try:
        doc = baseline_document(read)
        path = write_atomic(target, dumps(doc))
    except SourceError as exc:
        raise UsageProblem(str(exc)) from None
    except OSError as exc:
        raise UsageProblem(f"cannot write {target}: {exc.strerror or exc}") from None
    for example in read.examples:
        click.echo(f"sseprobe: unreadable log line: {example}", err=True)
    cohorts = ", ".join(f"{n} ({c['sessions']:,} records)" for n, c in doc["cohorts"].items())
    click.echo(f"baseline collected: {path} from {read.lines:,} log lines: {cohorts}")
    return EXIT_OK
