"""The open-file limit: how many connections one process can hold, and raising it for one measurement.

Each stream holds one socket, so a run of 15,000 sessions in flight needs 15,000 open files, well past
the usual soft limit of 1,024. The soft limit is raised to the hard one only while a measurement runs
(:func:`raised_open_files`) and put back after it: a library call leaves the caller's process as it was.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator

__all__ = ["open_file_room", "raised_open_files"]

_FD_SPARE = 64  # files a process holds besides its connections (interpreter, pipes, log, results)
_UNLIMITED = 1 << 20  # what an unlimited hard limit is taken as (Linux's default nr_open)


def _reachable() -> int:
    """The highest soft limit this process may set: the hard limit (a try that is undone at once when
    the hard limit is unlimited and the kernel's own cap is lower)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        return max(soft, hard)
    target = max(soft, _UNLIMITED) if soft != resource.RLIM_INFINITY else _UNLIMITED
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft if soft != resource.RLIM_INFINITY else _UNLIMITED
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return target


def open_file_room() -> int:
    """Connections one process can hold during a measurement (the limit it raises itself to, less the
    files it holds besides). Changes nothing."""
    return max(0, _reachable() - _FD_SPARE)


@contextlib.contextmanager
def raised_open_files() -> Iterator[None]:
    """The soft open-file limit raised as far as it goes for the block, and put back after it
    (processes forked inside the block inherit the raised limit)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _reachable()
    raised = target > before[0] != resource.RLIM_INFINITY
    if raised:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, before[1]))
        except (ValueError, OSError):
            raised = False
    try:
        yield
    finally:
        if raised:
            resource.setrlimit(resource.RLIMIT_NOFILE, before)
