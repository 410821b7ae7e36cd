"""One strict TOML reader for every file sseprobe reads (scenario, policy, monitor configuration): every key
known, every value typed, and each error one line naming the file, the key and what was expected."""

from __future__ import annotations

import math
import os
import stat
import tomllib
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from .verdict.schema import JSONObject

__all__ = ["read_toml", "StrictReader"]

Error = Callable[[str], Exception]


MAX_TOML_BYTES = 1 << 20  # a scenario, policy or monitor file is a few KB


def read_toml(path: str | Path, error: Error, kind: str | None = None) -> JSONObject:
    """The file's tables; one that cannot be read or parsed is one ``error`` naming it (and the ``kind`` of
    file it should have been). A BOM is fine. Only a regular file of at most 1 MiB is opened (a FIFO
    would block, /dev/zero never end); nesting deep enough to exhaust the parser's stack is refused."""
    what = f" {kind} file" if kind else ""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: cannot read{what}: not a regular file")
        if st.st_size > MAX_TOML_BYTES:
            raise error(f"{path}: cannot read{what}: {st.st_size:,} bytes, more than {MAX_TOML_BYTES:,}")
        with open(path, "rb") as f:
            data = f.read(MAX_TOML_BYTES + 1)
        return tomllib.loads(data.decode("utf-8-sig"))
    except OSError as exc:
        raise error(f"{path}: cannot read{what}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: {f'not a {kind} file: invalid' if kind else 'not valid'} TOML: {exc}") from None
    except RecursionError:
        raise error(f"{path}: {f'not a {kind} file: ' if kind else ''}tables or arrays nested too deeply") from None


class StrictReader:
    """Checks one file's values; each check returns the value or raises ``error`` with file, key and expectation."""

    def __init__(self, path: str | Path, error: Error) -> None:
        self.path, self.error = path, error

    def fail(self, key: str, expected: str, got: Any = None) -> Exception:
        shown = "" if got is None else f", got {got!r}"[:80]
        key = key if len(key) <= 80 else key[:77] + "..."  # a key can be megabytes long
        return self.error(f"{self.path}: {key}: expected {expected}{shown}")

    def known(self, prefix: str, keys: Collection[str], allowed: Collection[str]) -> None:
        for k in keys:
            if k not in allowed:
                raise self.fail(f"{prefix}{k[:80]}", f"a known key ({', '.join(sorted(allowed))})")

    def table(self, key: str, v: Any) -> JSONObject:
        if not isinstance(v, dict):
            raise self.fail(key, "a table", v)
        return v

    def typed(self, key: str, v: Any, spec: tuple[tuple[type, ...], str]) -> Any:
        """``v`` of one of the types (a bool only where bool is one of them)."""
        types, expected = spec
        if isinstance(v, bool) and bool not in types or not isinstance(v, types):
            raise self.fail(key, expected, v)
        return v

    def flag(self, key: str, v: Any) -> bool:
        if not isinstance(v, bool):
            raise self.fail(key, "true or false", v)
        return v

    def text(self, key: str, v: Any, choices: list[str] | None = None) -> str:
        if not isinstance(v, str) or (choices is not None and v not in choices):
            raise self.fail(key, f"one of {choices}" if choices else "a string", v)
        return v

    def number(self, key: str, v: Any, lo: float, hi: float, what: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise self.fail(key, what, v)
        return float(v)
