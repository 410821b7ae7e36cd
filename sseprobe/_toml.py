"""One strict TOML reader for every file sseprobe reads (scenario, policy, monitor configuration): every key
known, every value typed, and each error one line naming the file, the key and what was expected."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

__all__ = ["read_toml", "StrictReader"]

Error = Callable[[str], Exception]


def read_toml(path: str | Path, error: Error, kind: str | None = None) -> dict[str, Any]:
    """The file's tables; one that cannot be read or parsed is one ``error`` naming it (and the ``kind`` of
    file it should have been). A BOM is fine."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise error(f"{path}: cannot read{f' {kind} file' if kind else ''}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: {f'not a {kind} file: invalid' if kind else 'not valid'} TOML: {exc}") from None


class StrictReader:
    """Checks one file's values; each check returns the value or raises ``error`` with file, key and expectation."""

    def __init__(self, path: str | Path, error: Error) -> None:
        self.path, self.error = path, error

    def fail(self, key: str, expected: str, got: Any = None) -> Exception:
        shown = "" if got is None else f", got {got!r}"[:80]
        return self.error(f"{self.path}: {key}: expected {expected}{shown}")

    def known(self, prefix: str, d: dict[str, Any], allowed: Collection[str]) -> None:
        for k in d:
            if k not in allowed:
                raise self.fail(f"{prefix}{k}", f"a known key ({', '.join(sorted(allowed))})")

    def table(self, key: str, v: Any) -> dict[str, Any]:
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
