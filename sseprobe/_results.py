"""The results document (``sseprobe.result/1``): build, write atomically, read back."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ._stats import CohortStats

__all__ = [
    "SCHEMA",
    "ResultsError",
    "build_document",
    "cohort_from_document",
    "default_out_path",
    "dumps",
    "read_document",
    "write_atomic",
]

SCHEMA = "sseprobe.result/1"


class ResultsError(ValueError):
    """A results file that cannot be read or is not a results document."""


def build_document(
    *,
    started: str,
    duration_s: float,
    config: Mapping[str, Any],
    cohorts: Mapping[str, CohortStats],
    verdict: Mapping[str, Any] | None = None,
    interrupted: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "started": started,
        "duration_s": duration_s,
        "interrupted": interrupted,
        "config": dict(config),
        "cohorts": {name: stats.to_dict() for name, stats in cohorts.items()},
    }
    if verdict is not None:
        doc["verdict"] = dict(verdict)
    if extra:
        doc.update(extra)
    return doc


def dumps(doc: Mapping[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; readers (node_exporter) need the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_document(path: str | Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ResultsError(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ResultsError(f"{path} is not an sseprobe results document (schema {SCHEMA})")
    if not isinstance(doc.get("cohorts"), dict) or not doc["cohorts"]:
        raise ResultsError(f"{path} holds no cohorts")
    return doc


def cohort_from_document(doc: Mapping[str, Any], name: str | None, path: str) -> tuple[str, CohortStats]:
    """The named cohort of a document (default: the only, else the first), rebuilt exactly."""
    cohorts = doc["cohorts"]
    if name is None:
        name = next(iter(cohorts))
    if name not in cohorts:
        raise ResultsError(f"{path} has no cohort {name!r} (it has: {', '.join(cohorts)})")
    try:
        return name, CohortStats.from_dict(cohorts[name])
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultsError(f"{path}: cohort {name!r} is malformed: {exc}") from None


def default_out_path(kind: str, folder: str | Path = "results") -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + "Z"
    return Path(folder) / f"{kind}-{stamp}.json"
