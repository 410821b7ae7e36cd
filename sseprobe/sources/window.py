"""The time window of a real-traffic comparison: ``--since``, ``--until``, ``--window 24h``.

``--window D`` is the D before ``--until`` (default: now), as "the last 24 hours" reads; ``--since``
and ``--window`` together are refused (one window, said one way). Times are ISO 8601 (naive: UTC) or
epoch seconds; durations a number and a unit: s, m, h, d (``90m``, ``24h``, ``7d``).
"""

from __future__ import annotations

import re
import time

from .logmap import SourceError
from .logs import LineError, Window, parse_time

__all__ = ["parse_duration", "window_from"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``24h``; SourceError otherwise."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise SourceError(f"window {text!r}: expected a duration > 0 such as 30m, 24h or 7d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _time(option: str, text: str) -> float:
    try:
        return parse_time(float(text) if re.fullmatch(r"\d+(\.\d+)?", text) else text)
    except LineError:
        raise SourceError(f"{option} {text!r}: expected ISO 8601 (2026-12-06T00:00:00Z) or epoch seconds") from None


def window_from(since: str | None, until: str | None, window: str | None, now: float | None = None) -> Window:
    if since and window:
        raise SourceError("give --since or --window, not both (--window counts back from --until, default now)")
    end = _time("--until", until) if until else None
    start = _time("--since", since) if since else None
    if window:
        end = end if end is not None else (time.time() if now is None else now)
        start = end - parse_duration(window)
    if start is not None and end is not None and start >= end:
        raise SourceError("--since must be before --until")
    return Window(start, end)
