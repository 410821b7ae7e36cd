"""``sseprobe monitor | baseline save | history``: the nightly synthetic monitor from cron, and its records."""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path
from typing import TypedDict

import click
import orjson

from ..load.metrics import cannot_bind
from ..ops.monitor import (
    MonitorError,
    PassResult,
    load_monitor_config,
    monitor_plan,
    run_pass,
    save_baseline,
)
from ..ops.monitor_config import DEFAULT_HISTORY
from ..report.document import read_document
from ..report.history import History, HistoryError, PassRow, deciding_reason
from ..verdict.policy import format_metric
from ._baseline import baseline_destination, baseline_path, config_option
from ._common import EXIT_OK, EXIT_UNKNOWN, UsageProblem, check_outputs

__all__ = ["monitor_cmd", "baseline_group", "history_cmd"]

_SPARK = "▁▂▃▄▅▆▇█"
_TREND_METRICS = ("ttfe_p95_ms", "completion_rate", "connect_success_rate", "error_rate_5xx")


@click.command("monitor")
@config_option("Monitor config (TOML): URLs, scenario, baseline, history, outputs.", required=True)
@click.option(
    "--update-baseline",
    is_flag=True,
    help="After the pass, store its results as the new baseline: only from a GREEN pass, unless --force.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --update-baseline: store the baseline from a pass that is not GREEN (never from a RED or "
    "interrupted one).",
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the pass's HTML report here (overrides the config's html).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65_535),
    default=None,
    metavar="PORT",
    help="Serve live Prometheus metrics while the probe runs (overrides the config's metrics_port).",
)
@click.option("--metrics-host", default=None, help="With --metrics-port: the address to listen on (default 127.0.0.1).")
@click.option(
    "--metrics-linger",
    type=click.FloatRange(0, 86_400),
    default=None,
    metavar="SECONDS",
    help="With --metrics-port: seconds the endpoint stays up after the probe (default 16).",
)
def monitor_cmd(
    config_path: str,
    update_baseline: bool,
    force: bool,
    html: str | None,
    metrics_port: int | None,
    metrics_host: str | None,
    metrics_linger: float | None,
) -> int:
    """One synthetic-monitor pass for cron: check, probe both cohorts, judge, record.

    Health and flag state (as 'check'), a short probe of each cohort (as 'compare', from the
    config's scenario), then canonical vs legacy, each cohort vs the stored baseline, and the
    checklist's absolute targets (missed: YELLOW) and rollback triggers (RED). One line per part
    says why. Appends to the history database, writes the Prometheus textfile, pushes to a
    Pushgateway and posts a webhook on RED when configured. A lock stops two passes overlapping.
    Exit 0 GREEN, 1 YELLOW, 2 RED, 3 UNKNOWN (cannot reach the service, lock held, bad history).
    """
    cfg = load_monitor_config(config_path)
    cfg = replace(  # the flags over the config's keys
        cfg,
        metrics_port=cfg.metrics_port if metrics_port is None else metrics_port,
        metrics_host=metrics_host or cfg.metrics_host,
        metrics_linger_s=cfg.metrics_linger_s if metrics_linger is None else metrics_linger,
    )
    if cfg.metrics_port is None and (cfg.metrics_host is not None or cfg.metrics_linger_s is not None):
        raise UsageProblem("metrics_host and metrics_linger_s (--metrics-host, --metrics-linger) need a metrics port")
    if cfg.metrics_port is not None and (why := cannot_bind(cfg.metrics_host or "127.0.0.1", cfg.metrics_port)):
        raise UsageProblem(f"--metrics-port: {why}")  # before the pass: nothing checked, probed or recorded
    check_outputs(
        ("history", cfg.history),
        ("prometheus", cfg.prometheus),
        ("html", html or cfg.html),
        ("results", cfg.results_dir / "monitor.json"),
    )
    try:
        result = run_pass(
            cfg, update_baseline=update_baseline, force=force, html=Path(html) if html else None, echo=click.echo
        )
    except (MonitorError, HistoryError) as exc:
        click.echo(f"sseprobe monitor: UNKNOWN - {exc}", err=True)
        return EXIT_UNKNOWN
    for line in _failure_lines(result):
        click.echo(line, err=True)
    return result.exit_code


def _failure_lines(result: PassResult) -> list[str]:
    """What went wrong, one line each, for stderr: stdout keeps the whole pass report, and cron mails
    (or a CI log shows) the failures even when stdout goes to a file."""
    lines = [f"sseprobe monitor: {p.level} {p.name}: {p.detail}" for p in result.parts if p.level != "GREEN"]
    return lines + [f"sseprobe monitor: {note}" for note in result.notes if ": WARN " in note]


# --- baseline ----------------------------------------------------------------------------------


@click.group("baseline")
def baseline_group() -> None:
    """The monitor's stored baseline: a results document kept with its histograms."""


@baseline_group.command("save")
@click.argument("results_file", type=click.Path(dir_okay=False))
@baseline_destination
@click.option(
    "--force",
    is_flag=True,
    help="Store it even from a saturated generator, or with cohorts, flows or load shape other than the config's.",
)
def baseline_save_cmd(results_file: str, config_path: str | None, dest: str | None, force: bool) -> int:
    """Store RESULTS.json (from run, compare or a monitor pass) as the baseline later passes are judged against.

    The whole document is kept, encoded HDR histograms included, so a comparison with it has the
    same statistics as a comparison of two fresh runs. Written atomically. Refused (unless --force)
    from a saturated generator, and, with --config, when its cohorts, flows or load shape differ from
    what the monitor measures (the refusal says what differs).
    """
    cfg, target = baseline_path(config_path, dest)
    expected = None if force or cfg is None else monitor_plan(cfg, cfg.results_dir / "x.json", secrets=False)
    doc = read_document(results_file)
    try:
        path = save_baseline(doc, results_file, target, force=force, expected=expected)
    except OSError as exc:
        raise UsageProblem(f"cannot write {target}: {exc.strerror or exc}") from None
    cohorts = ", ".join(f"{n} ({c.get('sessions') or 0:,} sessions)" for n, c in doc["cohorts"].items())
    click.echo(f"baseline saved: {path} from {results_file}: {cohorts}")
    return EXIT_OK


# --- history -----------------------------------------------------------------------------------


def _spark(values: list[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return _SPARK[3] * len(values)
    return "".join(_SPARK[min(int((v - lo) / (hi - lo) * len(_SPARK)), len(_SPARK) - 1)] for v in values)


def _trends(passes: list[PassRow], cohorts: list[str]) -> list[str]:
    lines = []
    for cohort in cohorts:
        for metric in _TREND_METRICS:
            vals = [c.metrics.get(metric) for p in passes for c in p.cohorts if c.cohort == cohort]
            series = [v for v in vals if v is not None]
            if not series:
                continue
            last = series[-1]
            text = f"last {format_metric(metric, last)}"
            if len(series) > 1:
                med = statistics.median(series[:-1])
                if metric.endswith("_ms") and med:
                    text += f", median before {format_metric(metric, med)} ({(last / med - 1) * 100:+.1f} %)"
                else:
                    text += f", median before {format_metric(metric, med)} ({(last - med) * 100:+.2f} pp)"
            lines.append(f"  {cohort + ' ' + metric:<34} {_spark(series):<12} {text}")
    return lines


def _generator_cell(p: PassRow) -> str:
    """How the prober itself kept up: "ok", "SATURATED 72ms" (its p99 lag), or "-" when not known."""
    if p.generator_saturated is None:
        return "-"
    if not p.generator_saturated:
        return "ok"
    return "SATURATED" + (f" {p.generator_error_ms:,.0f}ms" if p.generator_error_ms is not None else "")


def _whole_clauses(why: str, width: int = 100) -> str:
    """The why column, never cut mid-sentence: whole clauses ("; "-separated) while they fit in
    ``width``, at least the first whole, and how many more there are (``history --json`` has all)."""
    clauses = why.split("; ")
    kept = clauses[:1]
    for c in clauses[1:]:
        if len("; ".join([*kept, c])) > width:
            break
        kept.append(c)
    more = len(clauses) - len(kept)
    return "; ".join(kept) + (f" (+{more} more)" if more else "")


class _GeneratorJSON(TypedDict):
    saturated: bool | None
    error_ms: float | None


class _PassJSON(TypedDict):
    """A pass as ``history --json`` prints it; each cohort: sessions, attempts, its key metrics, outcomes."""

    id: int | None
    started: str
    duration_s: float
    verdict: str
    exit_code: int
    reasons: list[str]
    results: str | None
    generator: _GeneratorJSON
    cohorts: dict[str, dict[str, float | None | dict[str, int]]]


def _row_json(p: PassRow) -> _PassJSON:
    return _PassJSON(
        id=p.id,
        started=p.started,
        duration_s=p.duration_s,
        verdict=p.verdict,
        exit_code=p.exit_code,
        reasons=p.reasons,
        results=p.results,
        generator=_GeneratorJSON(saturated=p.generator_saturated, error_ms=p.generator_error_ms),
        cohorts={
            c.cohort: {"sessions": c.sessions, "attempts": c.attempts, **c.metrics, "outcomes": c.outcomes}
            for c in p.cohorts
        },
    )


@click.command("history")
@config_option("Read the history database named in this monitor config.")
@click.option(
    "--db", type=click.Path(dir_okay=False), default=None, help=f"History database path (default: {DEFAULT_HISTORY})."
)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, 100_000),
    default=20,
    show_default=True,
    help="How many recent passes to show.",
)
@click.option("--cohort", "cohorts", multiple=True, help="Only these cohorts (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the passes as JSON on stdout.")
def history_cmd(config_path: str | None, db: str | None, limit: int, cohorts: tuple[str, ...], as_json: bool) -> int:
    """Recent monitor passes (time, verdict, key metrics per cohort) and the trend of each metric.

    Reads without blocking a running pass (the database is in WAL mode). A missing, corrupt,
    locked or newer-schema file is one line on stderr and exit 3.
    """
    if config_path and db:
        raise UsageProblem("give --config or --db, not both")
    path = Path(db) if db else DEFAULT_HISTORY
    if config_path:
        path = load_monitor_config(config_path).history
    with History(path, readonly=True) as h:
        passes = h.recent(limit)
        total = h.count()
    names = list(cohorts) or sorted({c.cohort for p in passes for c in p.cohorts})
    if as_json:
        click.echo(orjson.dumps([_row_json(p) for p in passes], option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    click.echo(f"history {path}: last {len(passes)} of {total} passes")
    if not passes:
        return EXIT_OK
    head = (
        f"  {'#':>5}  {'started (UTC)':<25} {'verdict':<8} {'generator':<14}"
        + "".join(f" {n + ' TTFE p95':>22} {'completion':>10}" for n in names)
        + "  why"
    )
    click.echo(head)
    for p in passes:
        by = {c.cohort: c for c in p.cohorts}
        cells = "".join(
            f" {format_metric('ttfe_p95_ms', by[n].metrics.get('ttfe_p95_ms')) if n in by else '-':>22}"
            f" {format_metric('completion_rate', by[n].metrics.get('completion_rate')) if n in by else '-':>10}"
            for n in names
        )
        why = _whole_clauses(deciding_reason(p.verdict, p.reasons))
        click.echo(f"  {p.id:>5}  {p.started:<25} {p.verdict:<8} {_generator_cell(p):<14}{cells}  {why}")
    trend = _trends(passes, names)
    if trend:
        click.echo("trends (oldest to newest; last pass against the median of the earlier ones):")
        for line in trend:
            click.echo(line)
    return EXIT_OK


from ._sources import baseline_collect_cmd  # noqa: E402 - it builds on this module's neighbours

baseline_group.add_command(baseline_collect_cmd)  # baseline collect: real traffic (cli/_sources.py)
