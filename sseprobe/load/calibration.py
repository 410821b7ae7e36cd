"""The stored calibration: where it lives, what machine it is valid for, and the warning a plan gives
when it asks one worker for more than the calibration found (``sseprobe calibrate`` measures it)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TypedDict

import orjson

from ..report.document import write_atomic
from ..verdict.schema import LatencySummary
from .engine import Load
from .runner import default_workers

__all__ = [
    "CALIBRATION_ENV",
    "CalibrationDoc",
    "CriteriaDoc",
    "FloorsDoc",
    "LimitsDoc",
    "MachineDoc",
    "RecommendedDoc",
    "SearchDoc",
    "StepRecord",
    "StoredCalibration",
    "MAX_CALIBRATION_BYTES",
    "SCHEMA",
    "calibration_path",
    "load_calibration",
    "machine_identity",
    "over_calibration",
    "store_calibration",
]

SCHEMA = "sseprobe.calibration/1"
CALIBRATION_ENV = "SSEPROBE_CALIBRATION"  # a file to use instead of the default; "off" (or empty): none
MAX_CALIBRATION_BYTES = 1 << 20  # a calibration is about 2 KB


class MachineDoc(TypedDict):
    """What a calibration is valid for."""

    hostname: str
    cores: int
    python: str
    sseprobe: str


class LimitsDoc(TypedDict):
    """The highest load one worker timed truly: sessions/s, and streams open at once."""

    rate_per_worker: float
    in_flight_per_worker: float


class StoredCalibration(TypedDict):
    """The part of a calibration a plan reads (and ``load_calibration`` checks) to warn before a load."""

    schema: str
    date: str  # ISO 8601, to the second
    machine: MachineDoc
    limits: LimitsDoc


class RecommendedDoc(TypedDict):
    workers: int
    rate_per_worker: int
    in_flight_per_worker: int
    headroom: float
    why: str


class FloorsDoc(TypedDict):
    """How late an idle loop wakes (ms summaries): ``asyncio.sleep``'s timer and the run's loop-lag probe."""

    timer_ms: LatencySummary
    loop_lag_ms: LatencySummary


class StepRecord(TypedDict):
    """One step of a search: its figures (``StepFigures``), whether it passed and why not."""

    value: float
    sessions: int
    failed: int
    judged: int
    ttfe_error_p99_ms: float | None
    generator_error_ms: float
    saturated: bool
    cpu_share: float
    target_cpu_share: float | None
    passed: bool
    reason: str | None


class SearchDoc(TypedDict):
    found: float
    stopped_by: str  # "search" (bracketed), "time" (budget ran out), "cap" (never failed)
    how: str
    target: dict[str, float]  # the built-in target's canonical knobs for the search's sessions
    steps: list[StepRecord]


class CriteriaDoc(TypedDict):
    generator_saturated: bool
    ttfe_error_p99_ms_below: float


class CalibrationDoc(StoredCalibration):
    """``sseprobe.calibration/1``, as ``sseprobe calibrate`` writes it."""

    load_average: list[float]
    budget_s: float
    elapsed_s: float
    recommended: RecommendedDoc
    floors: FloorsDoc
    rate: SearchDoc
    in_flight: SearchDoc
    criteria: CriteriaDoc


def machine_identity() -> MachineDoc:
    """What a calibration is valid for: another host or core count makes it stale."""
    return {
        "hostname": socket.gethostname(),
        "cores": default_workers(),
        "python": platform.python_version(),
        "sseprobe": _version(),
    }


def _version() -> str:
    try:
        return importlib.metadata.version("sseprobe")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def calibration_path(env: Mapping[str, str] | None = None) -> Path | None:
    """Where the calibration lives: ``$SSEPROBE_CALIBRATION`` (``off`` or empty: nowhere), else
    ``$XDG_CACHE_HOME/sseprobe/calibration.json`` (default ``~/.cache``)."""
    env = os.environ if env is None else env
    if CALIBRATION_ENV in env:
        chosen = env[CALIBRATION_ENV].strip()
        if chosen.lower() in ("", "off", "none", "0"):
            return None
        try:
            return Path(chosen).expanduser()
        except RuntimeError:  # "~nouser/x": no such user
            raise ValueError(f"{CALIBRATION_ENV}={chosen[:80]!r}: no such user's home folder") from None
    cache = env.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(cache) / "sseprobe" / "calibration.json"


def store_calibration(doc: StoredCalibration, path: Path) -> Path:
    """Atomically (never half a file), replacing only a regular file (OSError otherwise)."""
    return write_atomic(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def load_calibration(path: Path | None) -> tuple[StoredCalibration | None, str | None]:
    """(the calibration for this machine, or None; why a file that is there was not used, or None).

    Missing: (None, None). Another machine or core count (stale): (None, None), silently ignored.
    Unreadable or not a calibration: (None, one line saying so). Only a regular file of at most
    :data:`MAX_CALIBRATION_BYTES` is opened (a FIFO would block the run's start, /dev/zero never end)."""
    if path is None:
        return None, None
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return None, f"calibration {path} ignored: not a regular file"
        if st.st_size > MAX_CALIBRATION_BYTES:
            return None, f"calibration {path} ignored: larger than {MAX_CALIBRATION_BYTES:,} bytes"
        with path.open("rb") as f:
            doc = orjson.loads(f.read(MAX_CALIBRATION_BYTES + 1))
        limits = doc["limits"]
        rate, in_flight = float(limits["rate_per_worker"]), float(limits["in_flight_per_worker"])
        machine = doc["machine"]
        if doc.get("schema") != SCHEMA or not (rate > 0 and in_flight >= 1) or not isinstance(machine, dict):
            raise ValueError("not a calibration")
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not a calibration sseprobe wrote"
        return None, f"calibration {path} ignored: {why}"
    here = machine_identity()
    if machine.get("hostname") != here["hostname"] or machine.get("cores") != here["cores"]:
        return None, None
    return doc, None


def over_calibration(doc: StoredCalibration, load: Load, workers: int) -> str | None:
    """One line when ``load`` asks each worker for more than the calibration found, else None."""
    limits, when = doc["limits"], str(doc.get("date", ""))[:10]
    workers = max(1, workers)
    if load.schedule is not None:
        peak = max(max(p.start_rate, p.end_rate) for p in load.schedule.phases) / workers
        found, what, unit = float(limits["rate_per_worker"]), "sessions/s", "rate"
    else:
        peak = load.concurrency / workers
        found, what, unit = float(limits["in_flight_per_worker"]), "sessions in flight", "in-flight count"
    if peak <= found:
        return None
    return (
        f"WARNING: {peak:,.0f} {what} per worker is above the {found:,.0f} this machine sustained unsaturated "
        f"(sseprobe calibrate, {when}): expect a saturated generator; add --workers or lower the {unit}"
    )
