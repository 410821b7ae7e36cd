"""``compare --from-log`` / ``--from-prometheus``: the verdict on real traffic (docs/real-traffic.md).

Self-contained: its own options (``source_options``) and its own handling (``compare_source``), so the
compare command only asks ``wants_source(params)`` and hands over.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..ops.monitor import MonitorError, load_monitor_config
from ..report.document import dumps, write_atomic
from ..report.verdict_text import render_verdict
from ..sources import LogRead, SourceError, judge_logs, read_log_map, read_logs, window_from
from ..sources.baseline import baseline_document
from ..sources.judge import Judged
from ..verdict.policy import Policy
from ..verdict.schema import ResultsDocument
from ._common import EXIT_OK, EXIT_UNKNOWN, UsageProblem, check_outputs
from ._report import attach_html
from ._run import emit

__all__ = [
    "source_options",
    "window_options",
    "wants_source",
    "compare_source",
    "read_source_logs",
    "baseline_collect_cmd",
]

_LIVE = ("canonical_url", "legacy_url", "until_decided")


def window_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
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
    ):
        f = opt(f)
    return f


def source_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options of compare on real traffic: a log or a Prometheus server as the source."""
    f = window_options(f)
    for opt in reversed(
        [
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
    ):
        f = opt(f)
    return f


def wants_source(params: dict[str, Any]) -> bool:
    return bool(params.get("from_log") or params.get("from_prometheus"))


def read_source_logs(params: dict[str, Any]) -> LogRead:
    """The logs of --from-log, read with --log-map in the window; SourceError as a usage problem."""
    try:
        window = window_from(params["since"], params["until"], params["window"])
        return read_logs(list(params["from_log"]), read_log_map(params["log_map"]), window)
    except SourceError as exc:
        raise UsageProblem(str(exc)) from None


def compare_source(files: tuple[str, ...], params: dict[str, Any], policy: Policy) -> int:
    """compare from a log or Prometheus: the same verdict, text, document and exit code as offline compare."""
    if files or any(params.get(k) for k in _LIVE):
        raise UsageProblem(
            "--from-log/--from-prometheus judge recorded traffic: no results files, URLs or --until-decided"
        )
    if params["from_log"] and params["from_prometheus"]:
        raise UsageProblem("give --from-log or --from-prometheus, not both")
    check_outputs(("--out", params["out"]), ("--html", params["html_path"]))
    try:
        if params["from_log"]:
            read = read_source_logs(params)
            for example in read.examples:
                click.echo(f"sseprobe: unreadable log line: {example}", err=True)
            judged = judge_logs(read, policy, params["baseline_cohort"], params["candidate_cohort"])
        else:
            judged = _prometheus(params, policy)
    except SourceError as exc:
        raise UsageProblem(str(exc)) from None
    return _emit(judged, params)


def refuse_bucketed(docs: list[ResultsDocument], files: tuple[str, ...]) -> None:
    """Offline compare of a document from --from-prometheus would judge its buckets' upper edges as exact
    values, and rates it never measured: refused, one line."""
    for doc, path in zip(docs, files, strict=False):
        source = doc.get("source")
        if isinstance(source, dict) and source.get("kind") == "prometheus":
            raise UsageProblem(
                f"{path} holds Prometheus buckets (edges, no outcomes): judge them with compare --from-prometheus"
            )


def _prometheus(params: dict[str, Any], policy: Policy) -> Judged:
    from ..sources.prometheus import judge_prometheus  # urllib only when asked for

    if not (params["query_canonical"] and params["query_legacy"]):
        raise SourceError("--from-prometheus needs --query-canonical and --query-legacy (histogram _bucket selectors)")
    if params["since"] or params["log_map"]:
        raise SourceError("--from-prometheus takes --window (default 24h) and --until, not --since or --log-map")
    until = window_from(None, params["until"], None).until
    queries = {"canonical": params["query_canonical"], "legacy": params["query_legacy"]}
    names = (params["baseline_cohort"] or "legacy", params["candidate_cohort"] or "canonical")
    if set(names) != {"canonical", "legacy"}:
        raise SourceError("--from-prometheus compares its two queries: cohorts canonical and legacy only")
    return judge_prometheus(params["from_prometheus"], queries, policy, params["window"] or "24h", until, names)


def _emit(judged: Judged, params: dict[str, Any]) -> int:
    as_json, out, html = params["as_json"], params["out"], params["html_path"]
    color = sys.stdout.isatty() and not as_json

    def text() -> str:
        return render_verdict(
            judged.verdict, f"baseline ({judged.baseline})", f"candidate ({judged.candidate})", color=color
        )

    if as_json or out:
        if not emit(judged.document, out, "compare", as_json, text)[1]:
            return EXIT_UNKNOWN
    else:
        click.echo(text())
    attach_html(judged.document, "compare", html, as_json)
    return judged.verdict.exit_code


@click.command("collect")
@click.option(
    "--from-log", "from_log", multiple=True, required=True, metavar="FILE", help="Request logs (JSON Lines, .gz, -)."
)
@window_options
@click.option(
    "--config",
    "-C",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Save to this monitor config's baseline path.",
)
@click.option("--to", "dest", type=click.Path(dir_okay=False), default=None, help="Save to this path instead.")
def baseline_collect_cmd(config_path: str | None, dest: str | None, **params: Any) -> int:
    """Collect a baseline from real traffic: the logs' cohorts over a window (--window 24h: the last day).

    Writes a results document (histograms and all, the source recorded) that ``compare BASELINE.json
    CANDIDATE.json`` and the monitor read like any saved run (docs/real-traffic.md).
    """
    target = _baseline_path(config_path, dest)
    read = read_source_logs(params)
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


def _baseline_path(config_path: str | None, dest: str | None) -> Path:
    if (config_path is None) == (dest is None):
        raise UsageProblem("give exactly one of --config FILE (its baseline path) or --to PATH")
    if dest is not None:
        return Path(dest)
    try:
        cfg = load_monitor_config(config_path)  # type: ignore[arg-type]
    except MonitorError as exc:
        raise UsageProblem(str(exc)) from None
    if cfg.baseline is None:
        raise UsageProblem(f"{config_path}: no 'baseline' path in the config")
    return cfg.baseline
