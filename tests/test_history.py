"""The monitor's history database: round trip, schema version, WAL readers, clear errors, no lost rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from sseprobe.cli import main
from sseprobe.report.history import SCHEMA_VERSION, CohortRow, History, HistoryError, PassRow

from .report_docs import results_doc


def _row(verdict: str = "GREEN", ttfe: float = 50.0) -> PassRow:
    doc = results_doc(ttfe_ms=ttfe)
    return PassRow(
        started="2026-01-01T03:00:00+00:00",
        duration_s=12.5,
        verdict=verdict,
        exit_code={"GREEN": 0, "RED": 2}.get(verdict, 3),
        reasons=[f"x {verdict}: because"],
        results="results/monitor-x.json",
        cohorts=[CohortRow.from_document(n, c) for n, c in doc["cohorts"].items()],
    )


def test_round_trip_keeps_metrics_and_histograms(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    with History(db) as h:
        assert h.append(_row()) == 1
        assert h.append(_row("RED", ttfe=200.0)) == 2
    with History(db, readonly=True) as h:
        assert h.count() == 2 and h.integrity() == "ok"
        passes = h.recent(10, histograms=True)
        assert [p.verdict for p in passes] == ["GREEN", "RED"]  # oldest first
        canon = next(c for c in passes[1].cohorts if c.cohort == "canonical")
        assert canon.metrics["ttfe_p50_ms"] == pytest.approx(200.0, rel=0.01)
        assert canon.outcomes["ok"] > 0
        decoded = HdrHistogram.decode(canon.histograms["ttfe_us"])  # histograms stored, not only percentiles
        assert decoded.get_total_count() == canon.sessions
        assert h.last_time("GREEN") == "2026-01-01T03:00:00+00:00"
        assert [v for _, v in h.series("canonical", "ttfe_p50_ms")][0] == pytest.approx(50.0, rel=0.01)
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_corrupt_file_is_a_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    junk = b"this is not a database at all\n" * 200
    db.write_bytes(junk)
    with pytest.raises(HistoryError, match="corrupt or not an sseprobe history database"):
        History(db)
    with pytest.raises(HistoryError, match="corrupt"):
        History(db, readonly=True)
    assert db.read_bytes() == junk  # never "repaired" by overwriting


def test_history_command_on_corrupt_file_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite"
    db.write_bytes(b"\x00garbage" * 600)
    assert main(["history", "--db", str(db)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("sseprobe: error: history ") and "corrupt" in err and err.count("\n") == 1


def test_missing_file_for_reading(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no such file"):
        History(tmp_path / "none.sqlite", readonly=True)
    assert not (tmp_path / "none.sqlite").exists()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    with History(db) as h:
        h.append(_row())
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(HistoryError, match="newer than this sseprobe reads"):
        History(db)


@pytest.mark.parametrize("user_version", [0, 1, 7])
def test_foreign_sqlite_file_is_refused_unchanged(tmp_path: Path, user_version: int) -> None:
    """#24.6: another program's file is refused before any write: not even switched to WAL."""
    db = tmp_path / "other.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE mine (x)")
    con.execute(f"PRAGMA user_version={user_version}")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(HistoryError, match="not an sseprobe history database"):
        History(db)
    assert db.read_bytes() == before
    assert not (tmp_path / "other.sqlite-wal").exists()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


def test_locked_writer_gives_clear_error_and_loses_no_row(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    with History(db) as h:
        h.append(_row())
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        with History(db, timeout=0.2) as h:
            with pytest.raises(HistoryError, match="locked by another process"):
                h.append(_row("RED"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    with History(db, readonly=True) as h:
        assert h.count() == 1 and h.integrity() == "ok"


def test_readers_see_committed_rows_while_a_writer_is_open(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    writer = History(db)
    writer.append(_row())
    reader = History(db, readonly=True)
    try:
        hold = sqlite3.connect(db, isolation_level=None)
        hold.execute("BEGIN IMMEDIATE")  # a pass in the middle of writing its row
        hold.execute(
            "INSERT INTO passes (started, duration_s, verdict, exit_code, reasons) VALUES ('x', 0, 'RED', 2, '[]')"
        )
        assert reader.count() == 1  # WAL: the reader is not blocked and sees only committed rows
        hold.execute("COMMIT")
        hold.close()
        assert reader.count() == 2
    finally:
        reader.close()
        writer.close()


def test_history_why_column_gives_the_reason_the_pass_was_red(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A RED pass whose check part was only YELLOW: the row says why it was RED, not the YELLOW detail."""
    db = tmp_path / "h.sqlite"
    red = _row("RED")
    red.reasons = [
        "check YELLOW: health.dependencies not true: cloud_logging",
        "canonical vs legacy GREEN: no metric differs",
        "canonical targets RED: rollback trigger: completion_rate (41.00 % < 95 %)",
    ]
    yellow = _row("YELLOW")
    yellow.exit_code = 1
    yellow.reasons = ["check GREEN: all OK", "legacy targets YELLOW: ttfe_p95_ms misses the target"]
    with History(db) as h:
        h.append(red)
        h.append(yellow)
    assert main(["history", "--db", str(db)]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()[:1].isdigit()]
    assert len(rows) == 2
    assert " RED " in rows[0] and rows[0].endswith(
        "canonical targets RED: rollback trigger: completion_rate (41.00 % < 95 %)"
    )
    assert "check YELLOW" not in rows[0]
    assert rows[1].endswith("legacy targets YELLOW: ttfe_p95_ms misses the target")
