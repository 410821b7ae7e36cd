"""sseprobe: SSE streaming health prober and load generator."""

from __future__ import annotations

from typing import Any

__all__ = ["Outcome", "SessionRecord", "CohortStats"]
__version__ = "0.1.0"

_LAZY = {"Outcome": "._outcomes", "SessionRecord": "._record", "CohortStats": "._stats"}


def __getattr__(name: str) -> Any:
    """Imported when first asked for: the command line starts (and can take a Ctrl-C) before numpy loads."""
    if name not in _LAZY:
        raise AttributeError(name)
    from importlib import import_module

    return getattr(import_module(_LAZY[name], __name__), name)
