"""The results document (``sseprobe.result/1``): build, write atomically, read back."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import orjson

from .._errors import SseprobeError
from ..verdict.schema import JSONObject, ResultsDocument, ResultsParts, VerdictDoc
from ..verdict.stats import CohortStats

__all__ = [
    "SCHEMA",
    "ResultsError",
    "build_document",
    "cohort_from_document",
    "default_out_path",
    "dumps",
    "read_document",
    "read_documents",
    "check_output",
    "write_atomic",
    "write_with_fallback",
]

SCHEMA = "sseprobe.result/1"


class ResultsError(SseprobeError, ValueError):
    """A results file that cannot be read or is not a results document."""


def build_document(
    *,
    started: str,
    duration_s: float,
    config: JSONObject,
    cohorts: Mapping[str, CohortStats],
    verdict: VerdictDoc | None = None,
    interrupted: bool = False,
    extra: ResultsParts | None = None,
) -> ResultsDocument:
    """The document: its head in this key order, the verdict, then the ``extra`` parts in their order."""
    doc: ResultsDocument = {
        "schema": SCHEMA,
        "started": started,
        "duration_s": duration_s,
        "interrupted": interrupted,
        "config": dict(config),
        "cohorts": {name: stats.to_dict() for name, stats in cohorts.items()},
    }
    if verdict is not None:
        doc["verdict"] = verdict
    return {**doc, **extra} if extra else doc


def dumps(doc: Mapping[str, object]) -> bytes:
    """Any JSON object as sseprobe writes it (a results document, a calibration, a monitor record)."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"


def check_output(path: str | Path, what: str = "output") -> Path:
    """Before any load: the path can be written, and only a regular file would be replaced there.

    Raises ResultsError (one line). Missing folders are not created here (writing does that); the
    nearest existing folder must be a writable folder."""
    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        _refuse_non_regular(path)
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{folder} is not a folder")
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ResultsError(f"{what} {path}: cannot write there: {exc.strerror or exc}") from None
    return path


def _refuse_non_regular(path: Path) -> None:
    """OSError unless ``path`` is absent or a regular file (a symbolic link is never followed to replace)."""
    if path.is_symlink():
        raise FileExistsError(errno.EEXIST, "a symbolic link is there: not replaced", str(path))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise FileExistsError(
            errno.EEXIST, "it is not a regular file (a device, fifo or folder): not replaced", str(path)
        )


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, rename: readers never see half a file.

    Only a regular file is ever replaced (never a device, fifo, folder or symbolic link): OSError."""
    path = Path(path)
    _refuse_non_regular(path)
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


def write_with_fallback(path: str | Path, data: bytes) -> tuple[Path, str | None]:
    """Measured results are never lost: when ``path`` cannot be written, they go to a new file in the
    temporary folder. Returns (where they are, why the intended path failed or None)."""
    try:
        return write_atomic(path, data), None
    except OSError as exc:
        why = f"cannot write {path}: {exc.strerror or exc}"
    fd, spare = tempfile.mkstemp(prefix="sseprobe-results-", suffix=".json")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return Path(spare), why


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_document(path: str | Path) -> ResultsDocument:
    """A results document, every cohort checked (ResultsError names the file and what is wrong).
    Only the schema name and the cohorts are checked: the other parts are read with ``.get`` by every
    consumer, since a document may be of an earlier version or cut by hand."""
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
    checked = cast(ResultsDocument, doc)
    for name in checked["cohorts"]:
        cohort_from_document(checked, name, str(path))
    return checked


def read_documents(paths: Sequence[str]) -> list[ResultsDocument]:
    """Several documents to be judged against each other: the same file twice is a mistake, said so."""
    seen: dict[tuple[int, int], str] = {}
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as exc:
            raise ResultsError(f"cannot read {p}: {exc.strerror or exc}") from None
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise ResultsError(f"{p} and {seen[key]} are the same file: give two different results documents")
        seen[key] = p
    return [read_document(p) for p in paths]


def cohort_from_document(doc: ResultsDocument, name: str | None, path: str) -> tuple[str, CohortStats]:
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
