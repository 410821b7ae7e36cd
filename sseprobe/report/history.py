"""The monitor's history: one row per pass in an embedded SQLite file, for trends and last-success times.

Why SQLite and these settings: WAL journal, so ``sseprobe history`` (or a dashboard) reads while a
pass writes; each pass is written in one transaction with ``synchronous=FULL``, so a pass killed at
any point leaves either its whole row or none, never a torn file; ``PRAGMA user_version`` carries
the schema version, so an older sseprobe refuses a newer file instead of misreading it. A column
added later is nullable and added on the first write (``_ADDED``): that keeps the version, since an
older sseprobe still reads and writes such a file (its passes simply carry no value there). Histograms
are stored encoded (HdrHistogram base64), so any past pass can be re-compared or re-plotted exactly.
Every failure to open, read or write is a :class:`HistoryError` with one line naming the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import orjson

from .._errors import SseprobeError
from ..verdict.schema import CohortDoc, GeneratorDoc, RateKey, SummaryKey

__all__ = ["SCHEMA_VERSION", "HistoryError", "History", "PassRow", "CohortRow", "METRICS", "deciding_reason"]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 10.0

# key metrics stored per cohort (columns), in the units of the results document
_RATES: tuple[RateKey, ...] = ("connect_success_rate", "completion_rate", "error_rate_5xx", "timeout_rate")
_QUANTILES: tuple[tuple[str, SummaryKey, str], ...] = (  # column, the cohort's summary, its percentile
    ("ttfe_p50_ms", "ttfe_ms", "p50"),
    ("ttfe_p95_ms", "ttfe_ms", "p95"),
    ("ttfe_p99_ms", "ttfe_ms", "p99"),
    ("completion_p95_ms", "completion_ms", "p95"),
)
METRICS = (*_RATES, *(column for column, _, _ in _QUANTILES))

_SCHEMA = f"""
CREATE TABLE passes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started TEXT NOT NULL,          -- ISO 8601, UTC
    duration_s REAL NOT NULL,
    verdict TEXT NOT NULL,          -- GREEN | YELLOW | RED | UNKNOWN
    exit_code INTEGER NOT NULL,
    reasons TEXT NOT NULL,          -- JSON list of one-line reasons
    results TEXT,                   -- path of the pass's results document, if any
    generator_saturated INTEGER,    -- 1 when the prober itself could not keep up, NULL before it was kept
    generator_error_ms REAL         -- how late it may have stamped any latency (p99), NULL likewise
);
CREATE TABLE cohorts (
    pass_id INTEGER NOT NULL REFERENCES passes(id) ON DELETE CASCADE,
    cohort TEXT NOT NULL,
    sessions INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    {", ".join(f"{m} REAL" for m in METRICS)},
    outcomes TEXT NOT NULL,         -- JSON {{outcome: n}}
    PRIMARY KEY (pass_id, cohort)
);
CREATE TABLE histograms (
    pass_id INTEGER NOT NULL REFERENCES passes(id) ON DELETE CASCADE,
    cohort TEXT NOT NULL,
    name TEXT NOT NULL,             -- ttfe_us, completion_us, ...
    encoding TEXT NOT NULL,         -- 'hdr-base64': HdrHistogram compressed, base64
    data TEXT NOT NULL,
    PRIMARY KEY (pass_id, cohort, name)
);
CREATE INDEX passes_started ON passes(started);
"""


# columns added to ``passes`` after version 1 was released: (name, type), added in place to an older file
_ADDED = (("generator_saturated", "INTEGER"), ("generator_error_ms", "REAL"))


class HistoryError(SseprobeError, ValueError):
    """The history file cannot be used: missing, corrupt, locked, or written by a newer sseprobe."""


@dataclass
class CohortRow:
    cohort: str
    sessions: int
    attempts: int
    metrics: dict[str, float | None]
    outcomes: dict[str, int]
    histograms: dict[str, str] = field(default_factory=dict)  # name -> encoded HDR

    @classmethod
    def from_document(cls, name: str, d: CohortDoc) -> CohortRow:
        """Key metrics of a results document's COHORT; histograms kept encoded as they are."""
        metrics: dict[str, float | None] = {m: d.get(m) for m in _RATES}
        for column, summary, pct in _QUANTILES:
            metrics[column] = (d.get(summary) or {}).get(pct)
        hists = {k: v for k, v in (d.get("histograms") or {}).items() if isinstance(v, str) and v}
        return cls(
            name,
            int(d.get("sessions", 0)),
            int(d.get("attempts", d.get("sessions", 0))),
            metrics,
            {str(k): int(v) for k, v in (d.get("outcomes") or {}).items()},
            hists,
        )


class GeneratorFields(TypedDict, total=False):
    """A row's generator fields (none when the pass measured nothing or is older than them)."""

    generator_saturated: bool
    generator_error_ms: float | None


@dataclass
class PassRow:
    started: str
    duration_s: float
    verdict: str
    exit_code: int
    reasons: list[str]
    cohorts: list[CohortRow] = field(default_factory=list)
    results: str | None = None
    id: int | None = None
    generator_saturated: bool | None = None  # None: not known (no measurement, or an older pass)
    generator_error_ms: float | None = None

    @staticmethod
    def generator_of(block: GeneratorDoc | None) -> GeneratorFields:
        """The generator fields of a row, from a results document's ``generator`` block."""
        if not isinstance(block, Mapping) or not isinstance(block.get("saturated"), bool):
            return {}
        error = block.get("error_ms")
        ms = float(error) if isinstance(error, (int, float)) and not isinstance(error, bool) else None
        return {"generator_saturated": block["saturated"], "generator_error_ms": ms}


def deciding_reason(verdict: str, reasons: list[str]) -> str:
    """The reason that made the pass ``verdict``: a RED pass is explained by its RED part, not by a
    YELLOW one listed before it. Reasons read ``"<part> <LEVEL>: <detail>"``; a GREEN pass needs none."""
    if verdict == "GREEN":
        return ""
    return next((r for r in reasons if f" {verdict}: " in r), "") or next(
        (r for r in reasons if " GREEN: " not in r), ""
    )


def _explain(path: Path, exc: sqlite3.Error, timeout: float = BUSY_TIMEOUT_S) -> HistoryError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        why = f"locked by another process for more than {timeout:g} s ({text})"
    elif "not a database" in text or "malformed" in text or "corrupt" in text:
        why = f"corrupt or not an sseprobe history database ({text}); move it aside to start a new one"
    elif "unable to open" in text or "readonly" in text or "read-only" in text:
        why = f"cannot open ({text})"
    else:
        why = text
    return HistoryError(f"history {path}: {why}")


class History:
    """One history database. Use as a context manager; every method raises only HistoryError."""

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.readonly = readonly
        self._added: set[str] = set()  # which of _ADDED this file has
        if readonly and not self.path.exists():
            raise HistoryError(f"history {self.path}: no such file (no monitor pass has written it yet)")
        try:
            if readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self.db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"history {self.path}: cannot open: {exc}") from None
        try:
            self._prepare()
        except sqlite3.Error as exc:
            self.db.close()
            raise _explain(self.path, exc, self.timeout) from None
        except HistoryError:
            self.db.close()
            raise

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def _prepare(self) -> None:
        """Check the header and schema version; create the schema in a new file."""
        db = self.db
        db.execute("PRAGMA foreign_keys=ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]  # reads page 1: fails on a non-database
        self._refuse_foreign(version)  # before the first write: WAL mode changes the file
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"history {self.path}: schema version {version} is newer than this "
                f"sseprobe reads ({SCHEMA_VERSION}); upgrade sseprobe"
            )
        if self.readonly:
            if version == 0:
                raise HistoryError(f"history {self.path}: not an sseprobe history database (no schema)")
            self._added = self._present_added()
            return
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        if version == 0:
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("PRAGMA user_version").fetchone()[0] == 0:  # nobody created it meanwhile
                    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                    if tables:
                        raise HistoryError(
                            f"history {self.path}: a SQLite file that is not an sseprobe history database"
                        )
                    for statement in _SCHEMA.split(";"):  # not executescript: it would commit first
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        self._add_columns()
        self._added = self._present_added()

    def _refuse_foreign(self, version: int) -> None:
        """Only an empty file or one with sseprobe's ``passes`` table is ours to write: another
        program's SQLite file (whatever its ``user_version``) is refused before anything changes it."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
        if (version == 0 and tables) or (version > 0 and "passes" not in tables):
            raise HistoryError(f"history {self.path}: a SQLite file that is not an sseprobe history database")

    def _present_added(self) -> set[str]:
        """Which of the later columns this file has (a file from before them is read with NULLs)."""
        have = {r[1] for r in self.db.execute("PRAGMA table_info(passes)").fetchall()}
        return {name for name, _ in _ADDED if name in have}

    def _add_columns(self) -> None:
        """Bring a file from before the later columns up to date, in one transaction."""
        if len(self._present_added()) == len(_ADDED):
            return
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            have = self._present_added()  # another process may have added them meanwhile
            for name, kind in _ADDED:
                if name not in have:
                    db.execute(f"ALTER TABLE passes ADD COLUMN {name} {kind}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # --- writing ------------------------------------------------------------------------------

    def append(self, row: PassRow) -> int:
        """Write a pass with its cohorts and histograms in one transaction; return its id."""
        if self.readonly:
            raise HistoryError(f"history {self.path}: opened read-only")
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT INTO passes (started, duration_s, verdict, exit_code, reasons, results, "
                    "generator_saturated, generator_error_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row.started,
                        row.duration_s,
                        row.verdict,
                        row.exit_code,
                        orjson.dumps(row.reasons).decode(),
                        row.results,
                        None if row.generator_saturated is None else int(row.generator_saturated),
                        row.generator_error_ms,
                    ),
                )
                pass_id = int(cur.lastrowid)  # type: ignore[arg-type]
                cols = ", ".join(METRICS)
                marks = ", ".join("?" for _ in METRICS)
                for c in row.cohorts:
                    db.execute(
                        f"INSERT INTO cohorts (pass_id, cohort, sessions, attempts, {cols}, outcomes) "
                        f"VALUES (?, ?, ?, ?, {marks}, ?)",
                        (
                            pass_id,
                            c.cohort,
                            c.sessions,
                            c.attempts,
                            *(c.metrics.get(m) for m in METRICS),
                            orjson.dumps(c.outcomes).decode(),
                        ),
                    )
                    db.executemany(
                        "INSERT INTO histograms (pass_id, cohort, name, encoding, data) VALUES (?, ?, ?, ?, ?)",
                        [(pass_id, c.cohort, name, "hdr-base64", data) for name, data in c.histograms.items()],
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _explain(self.path, exc, self.timeout) from None
        row.id = pass_id
        return pass_id

    # --- reading ------------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _explain(self.path, exc, self.timeout) from None

    def recent(self, limit: int = 20, *, histograms: bool = False) -> list[PassRow]:
        """The last ``limit`` passes, oldest first, with their cohorts."""
        added = ", ".join(name if name in self._added else "NULL" for name, _ in _ADDED)
        rows = self._query(
            f"SELECT id, started, duration_s, verdict, exit_code, reasons, results, {added} "
            "FROM passes ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        passes = [
            PassRow(
                started=r[1],
                duration_s=r[2],
                verdict=r[3],
                exit_code=r[4],
                reasons=orjson.loads(r[5]),
                results=r[6],
                id=r[0],
                generator_saturated=None if r[7] is None else bool(r[7]),
                generator_error_ms=r[8],
            )
            for r in reversed(rows)
        ]
        by_id = {p.id: p for p in passes}
        if not passes:
            return passes
        marks = ", ".join("?" for _ in by_id)
        for r in self._query(
            f"SELECT pass_id, cohort, sessions, attempts, {', '.join(METRICS)}, outcomes "
            f"FROM cohorts WHERE pass_id IN ({marks}) ORDER BY pass_id, cohort",
            tuple(by_id),
        ):
            metrics = dict(zip(METRICS, r[4 : 4 + len(METRICS)], strict=True))
            by_id[r[0]].cohorts.append(CohortRow(r[1], r[2], r[3], metrics, orjson.loads(r[-1])))
        if histograms:
            cohorts = {(p.id, c.cohort): c for p in passes for c in p.cohorts}
            for pid, cohort, name, data in self._query(
                f"SELECT pass_id, cohort, name, data FROM histograms WHERE pass_id IN ({marks})", tuple(by_id)
            ):
                if (pid, cohort) in cohorts:
                    cohorts[(pid, cohort)].histograms[name] = data
        return passes

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM passes")[0][0])

    def last_time(self, verdict: str | None = None) -> str | None:
        """Start time of the newest pass (with this verdict, if given)."""
        if verdict is None:
            rows = self._query("SELECT started FROM passes ORDER BY id DESC LIMIT 1")
        else:
            rows = self._query("SELECT started FROM passes WHERE verdict = ? ORDER BY id DESC LIMIT 1", (verdict,))
        return rows[0][0] if rows else None

    def integrity(self) -> str:
        """SQLite's own check: 'ok' or the first problem."""
        return str(self._query("PRAGMA quick_check")[0][0])

    def series(self, cohort: str, metric: str, limit: int = 30) -> Iterator[tuple[str, float | None]]:
        """(started, value) of one cohort metric over the last passes, oldest first."""
        if metric not in METRICS:
            raise HistoryError(f"unknown metric {metric!r} (one of {', '.join(METRICS)})")
        rows = self._query(
            f"SELECT p.started, c.{metric} FROM passes p JOIN cohorts c ON c.pass_id = p.id "
            "WHERE c.cohort = ? ORDER BY p.id DESC LIMIT ?",
            (cohort, limit),
        )
        return iter(reversed(rows))
