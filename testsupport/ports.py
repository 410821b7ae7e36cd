"""A port for a server that must be told its port before it listens (Prometheus scrape targets, ``adk
api_server``, ``--metrics-port``).

A port taken with bind(port 0) and released comes from the kernel's ephemeral range, the same range every
other process's bind(0) and outgoing connection draws from: under 3 test workers another one took it in the
gap before the server bound it. A port chosen below that range is never handed out that way; one free now,
picked at random among 12,000, is taken in the gap only by another test picking the same one.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["unclaimed_port"]

_SPAN = 12_000


def unclaimed_port() -> int:
    """A port on 127.0.0.1 that is free now and below the ephemeral range (its lower end, 32768 by default)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    first = max(1024, low - _SPAN)
    for _ in range(200):
        port = random.randrange(first, low)  # noqa: S311 - a port, not a secret
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {first}-{low - 1}")
