"""Holding Ray: connect (or start it here) once, keep its noise off stdout and our secrets out of it.

Four rules, each from something Ray does on its own:
- ``ray.init`` installs a SIGTERM handler (``sys.exit(15)``) over ours: the handlers from before the
  call are put back after it, and a SIGTERM that hit during it is sent again to them, so SIGTERM
  stops a cluster run as it stops any other (exit 3, the document, ``interrupted: true``).
- Ray records the driver's command line as the job's entrypoint (the job table, the dashboard):
  the one it sees while connecting is :func:`redact_argv`'s, with header values, bodies and URL
  credentials gone.
- Ray prints to stdout from its threads (a dead worker's state dump): while Ray is connected, file
  descriptor 1 points at stderr, so ``--json`` stdout is the document and nothing else.
- Starting Ray takes 15-25 s on a busy 2-core machine: one line on stderr says so first, and
  :func:`hold_ray` keeps one Ray for several measurements (the looks of ``--until-decided``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO, TypedDict

from .._errors import SseprobeError
from .._redact import redact_argv, redact_url

__all__ = ["ClusterError", "INSTALL_HINT", "Joined", "hold_ray", "import_ray", "ray_connected", "first_line"]

INSTALL_HINT = "--cluster needs Ray, an optional extra: pip install 'sseprobe[ray]'"


class ClusterError(SseprobeError, RuntimeError):
    """The cluster could not be used (not installed, not reachable, too small): one line, exit 3."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(INSTALL_HINT) from None
    return ray


def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


@dataclass
class Joined:
    """The Ray this process is connected to: the address asked for, the one joined, who started it."""

    asked: str
    joined: str
    owned: bool  # this process started (local:N) or connected it, and ends it
    stdout: int | None = None  # the real stdout's descriptor while fd 1 points at stderr


_held: list[Joined | None] = []  # non-empty inside hold_ray(); its item: the Ray connected there, if yet


@contextlib.contextmanager
def hold_ray() -> Iterator[None]:
    """Measurements inside share one Ray: the first connects, the rest reuse it, the exit ends it."""
    _held.append(None)
    try:
        yield
    finally:
        joined = _held.pop()
        if joined is not None:
            _disconnect(joined)


@contextlib.contextmanager
def ray_connected(address: str, say: TextIO | None) -> Iterator[Joined | None]:
    """Ray, connected for the block (for the whole ``hold_ray`` when inside one). None: a SIGINT or
    SIGTERM came while Ray started (the caller's handlers have it)."""
    ray = import_ray()
    if _held and _held[-1] is not None:
        yield _held[-1]
        return
    if ray.is_initialized():  # connected by our caller (a test, a notebook): theirs to end
        yield Joined(address, _gcs(ray) or address, owned=False)
        return
    joined = _connect(ray, address, say)
    if joined is None:
        yield None
        return
    if _held:
        _held[-1] = joined
        yield joined
        return
    try:
        yield joined
    finally:
        _disconnect(joined)


class _InitArgs(TypedDict, total=False):
    """The ``ray.init`` arguments we pass: Ray's own log lines off, and for ``local:N`` a small private node."""

    log_to_driver: bool
    logging_level: str
    configure_logging: bool
    address: str
    num_cpus: int
    include_dashboard: bool
    _node_ip_address: str
    object_store_memory: int


def _connect(ray: Any, address: str, say: TextIO | None) -> Joined | None:
    local = address.startswith("local:")
    if say is not None:
        n = address.removeprefix("local:")
        what = f"starting Ray here with {n} CPUs (15-25 s" if local else f"joining Ray at {redact_url(address)} (5-10 s"
        print(f"sseprobe: {what} on a small, busy machine)...", file=say, flush=True)
    kwargs: _InitArgs = {"log_to_driver": False, "logging_level": "ERROR", "configure_logging": True}
    if local:
        kwargs |= {
            "address": "local",
            "num_cpus": int(address.removeprefix("local:")),
            "include_dashboard": False,
            "_node_ip_address": "127.0.0.1",
            "object_store_memory": 100 * 1024 * 1024,
        }
    else:
        kwargs["address"] = address
    stdout = _stdout_to_stderr()
    try:
        if not _init(ray, kwargs):
            _restore_stdout(stdout)
            return None
    except BaseException:
        _restore_stdout(stdout)
        raise
    return Joined(address, _gcs(ray) or address, owned=True, stdout=stdout)


def _init(ray: Any, kwargs: _InitArgs) -> bool:
    """``ray.init`` with our signal handlers kept and the entrypoint redacted. False: a SIGTERM
    (Ray's handler exits) came meanwhile; it is sent again, to the handlers put back."""
    main = threading.current_thread() is threading.main_thread()
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    utils = ray._private.utils
    entrypoint = utils.get_entrypoint_name
    utils.get_entrypoint_name = _redacted_entrypoint
    terminated = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray warns, then raises: the one line below says it all
            ray.init(**kwargs)
    except SystemExit as exc:  # Ray's own SIGTERM handler, installed first thing in ray.init
        if exc.code != signal.SIGTERM:
            raise
        terminated = True
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; all mean the same to the user
        _shutdown(ray)
        raise ClusterError(f"--cluster {redact_url(kwargs['address'])}: cannot connect: {first_line(exc)}") from None
    finally:
        utils.get_entrypoint_name = entrypoint
        for sig, handler in before.items():
            signal.signal(sig, handler)
    if terminated:
        _shutdown(ray)
        os.kill(os.getpid(), signal.SIGTERM)  # to the handlers put back: a stop, as at any other moment
        return False
    return True


def _redacted_entrypoint() -> str:
    """What Ray records as this driver's command line: ours, with every secret replaced."""
    return subprocess.list2cmdline(redact_argv(list(sys.orig_argv)))


def _gcs(ray: Any) -> str | None:
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - a Ray client connection does not say; the asked address stands
        return None


def _disconnect(joined: Joined) -> None:
    if joined.owned:
        _shutdown(import_ray())
    _restore_stdout(joined.stdout)


def _shutdown(ray: Any) -> None:
    with contextlib.suppress(Exception):
        ray.shutdown()


def _stdout_to_stderr() -> int | None:
    """Point descriptor 1 at stderr; returns a copy of the real stdout (None: there is no stdout)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
    except (OSError, ValueError, AttributeError):
        return None
    return saved


def _restore_stdout(saved: int | None) -> None:
    if saved is None:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stdout.flush()
    os.dup2(saved, 1)
    os.close(saved)
