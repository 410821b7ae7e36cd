"""Several machines: each share of the load runs in a Ray actor, merged here as the fork runner merges.

Ray (an optional extra) owns placement, processes and failure detection; this module owns what is
ours: one actor per share (no fork, no signal handlers; stop and abort arrive as actor calls), a
start at one common instant after measuring each node's clock, progress and ~10 s checkpoints by
polling, the same lossless bucket-by-bucket merge, and an honest account of any share that was lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import click

from .._config import Limits, Timeouts
from .._redact import redact_url
from ..verdict.stats import CohortStats, new_histogram
from .engine import CohortSpec, Load, RunControl, RunInfo
from .progress import Progress, merge_progress
from .runner import Measured, RunOptions, _merge_results, _print_progress, run_share

__all__ = [
    "ClusterError",
    "ClusterOptions",
    "INSTALL_HINT",
    "LateStart",
    "ShareActor",
    "clock_offset",
    "best_probe",
    "measure_cluster",
    "parse_cluster",
]

INSTALL_HINT = "--cluster needs Ray, an optional extra: pip install 'sseprobe[ray]'"
LATE_LIMIT_S = 1.0  # an actor this late to the common start refuses: its share never runs twice or skewed
CHECKPOINT_EVERY_S = 10.0  # cumulative histograms travel to the driver this often: what a lost actor leaves
START_LEAD_S = 1.0  # the common start is this far ahead of the last clock probe (plus the worst round trip)
PREPARE_TIMEOUT_S = 120.0  # actors not placed and prepared by then: say so rather than hang
CLOCK_PROBES = 5
NODE_LOSS = ("abort", "continue")


class ClusterError(click.ClickException):
    """The cluster could not be used (not installed, not reachable, too small): one line, exit 3."""

    exit_code = 3


class LateStart(RuntimeError):
    """An actor reached the common start too late and refused to run its share."""


@dataclass(frozen=True)
class ClusterOptions:
    address: str  # local:N | ray://HOST:PORT | auto
    workers_per_node: int | None = None  # None: each node's CPUs
    on_node_loss: str = "abort"


def parse_cluster(value: str) -> str:
    """Accept ``local:N``, ``ray://HOST:PORT`` or ``auto``; anything else is a one-line ValueError."""
    if value == "auto":
        return value
    if value.startswith("local:"):
        n = value.removeprefix("local:")
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--cluster local:N needs N >= 1 CPUs, got {value!r}")
        return value
    if value.startswith("ray://"):
        try:
            ok = bool(urlsplit(value).hostname) and urlsplit(value).port is not None
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"--cluster ray://HOST:PORT expected, got {redact_url(value)!r}")
        return value
    raise ValueError(f"--cluster: expected local:N, ray://HOST:PORT or auto, got {redact_url(value)!r}")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(INSTALL_HINT) from None
    return ray


# --- clocks -----------------------------------------------------------------------------------


def clock_offset(t0: float, t1: float, t2: float, t3: float) -> tuple[float, float]:
    """NTP arithmetic: the driver sends at t0 and receives at t3 (its clock); the actor receives at
    t1 and replies at t2 (its clock). Returns (offset: actor clock minus driver clock, round trip
    without the actor's own time). Exact when the two legs of the trip take equally long."""
    return ((t1 - t0) + (t2 - t3)) / 2, (t3 - t0) - (t2 - t1)


def best_probe(probes: Sequence[tuple[float, float, float, float]]) -> tuple[float, float]:
    """Of several probes, the one with the shortest round trip bounds the offset's error best."""
    return min((clock_offset(*p) for p in probes), key=lambda off_rtt: off_rtt[1])


# --- the actor --------------------------------------------------------------------------------


class ShareActor:
    """One share of the load in one Ray actor process. A threaded actor: ``run`` holds one thread
    (the engine's own event loop) while ``poll``, ``stop`` and ``clock`` answer on others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control = RunControl()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: tuple[str, bool] | None = None  # (reason, abort) not yet handed to the loop
        self._stopped = threading.Event()
        self._progress: Progress | None = None
        self._checkpoint: dict[str, Any] | None = None
        self._checkpoint_seq = 0
        self._next_checkpoint = CHECKPOINT_EVERY_S
        self._started = ""
        self._ran = False

    def prepare(self, hosts: Sequence[str]) -> dict[str, Any]:
        """Everything slow before the start: imports are done by now; resolve the targets' names."""
        import ray

        dns = {}
        for host in hosts:
            try:
                socket.getaddrinfo(host, None)
                dns[host] = "ok"
            except OSError as exc:
                dns[host] = f"unresolved: {exc}"
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "dns": dns}

    def clock(self) -> tuple[float, float]:
        t1 = time.time()
        return t1, time.time()

    def run(
        self,
        local_start: float,
        part: int,
        parts: int,
        cohorts: Sequence[CohortSpec],
        load: Load,
        timeouts: Timeouts,
        limits: Limits,
        opts: RunOptions,
        progress: bool,
    ) -> dict[str, Any]:
        """Wait for the common instant (in this node's clock), refuse if more than a second late, run."""
        if self._ran:
            raise LateStart("this actor already ran its share: refused, so no share ever runs twice")
        self._ran = True
        self._stopped.wait(max(0.0, local_start - time.time()))
        late = time.time() - local_start
        if late > LATE_LIMIT_S:
            raise LateStart(f"reached the common start {late:.2f} s late: refused, out of step with the others")
        self._started = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._apply_pending()  # a stop before the start: the engine starts stopped (no loop exists yet)
        cpu0 = time.process_time()
        payload = run_share(
            part,
            parts,
            cohorts,
            load,
            timeouts,
            limits,
            opts,
            ((), ()),
            self._on_progress if progress else None,
            control=self._control,
            checkpoint=self._on_tick,
        )
        payload["start_skew_ms"] = late * 1000.0
        payload["cpu_s"] = time.process_time() - cpu0  # the whole actor process: was the node the bottleneck?
        return payload

    def poll(self, known_checkpoint: int) -> dict[str, Any]:
        """Latest progress; the latest checkpoint too when the driver has not seen it yet. The
        checkpoint is encoded here, on this call's thread: the engine's loop only copied it."""
        with self._lock:
            progress, seq, copy = self._progress, self._checkpoint_seq, self._checkpoint
        if seq <= known_checkpoint or copy is None:
            return {"progress": progress, "checkpoint_seq": seq, "checkpoint": None}
        checkpoint = {**copy, "cohorts": {k: v.to_dict() for k, v in copy["cohorts"].items()}}
        return {"progress": progress, "checkpoint_seq": seq, "checkpoint": checkpoint}

    def stop(self, reason: str, abort: bool = False) -> None:
        with self._lock:
            if self._pending is None or abort:
                self._pending = (reason, abort)
            loop = self._loop
        self._stopped.set()
        if loop is not None:
            loop.call_soon_threadsafe(self._apply_pending)

    # on the engine's loop

    def _apply_pending(self) -> None:
        with self._lock:
            pending = self._pending
        if pending is not None:
            reason, abort = pending
            (self._control.abort if abort else self._control.stop)(reason)

    def _on_progress(self, progress: Progress) -> None:
        with self._lock:
            self._progress = progress

    def _on_tick(self, now: float, stats: dict[str, CohortStats]) -> None:
        """Each interval: learn the loop (stop calls need it), hand over pending stops, checkpoint."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
        self._apply_pending()
        if now < self._next_checkpoint:
            return
        self._next_checkpoint = now + CHECKPOINT_EVERY_S
        copies = {k: _copy(v) for k, v in stats.items()}  # ~1 ms here; encoding (~50 ms) waits for a poll
        sessions = sum(c.sessions for c in stats.values())
        with self._lock:
            self._checkpoint = {"at_s": now, "started": self._started, "cohorts": copies, "sessions": sessions}
            self._checkpoint_seq += 1


def _copy(stats: CohortStats) -> CohortStats:
    """A snapshot the loop can go on adding to the original of: merged into an empty one, losslessly."""
    snapshot = CohortStats(flow=stats.flow, url=stats.url)
    snapshot.merge(stats)
    return snapshot


# --- the driver -------------------------------------------------------------------------------


@dataclass
class _Share:
    part: int
    actor: Any
    node_id: str
    node_ip: str
    offset_s: float = 0.0
    rtt_s: float = 0.0
    ref: Any = None
    result: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_seq: int = 0
    progress: Progress | None = None
    lost: str | None = None  # why its share did not finish


@dataclass
class _Follow:
    """The driver's view while the shares run."""

    shares: list[_Share] = field(default_factory=list)
    stop_reason: str | None = None
    stops: int = 0  # signals received (set by the handler)
    stops_sent: int = 0  # of those, passed on to the actors (by the loop: Ray calls never run in a handler)
    losses: list[_Share] = field(default_factory=list)


def _connect(ray: Any, address: str) -> bool:
    """Connect (or start Ray in this process for local:N). True when this call started or joined it."""
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray warns, then raises: the one line below says it all
            if address.startswith("local:"):
                ray.init(
                    address="local",
                    num_cpus=int(address.removeprefix("local:")),
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    object_store_memory=100 * 1024 * 1024,
                    **quiet,
                )
            else:
                ray.init(address=address, **quiet)
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; all mean the same to the user
        raise ClusterError(f"--cluster {redact_url(address)}: cannot connect: {_first_line(exc)}") from None
    return True


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _placement(ray: Any, per_node: int | None) -> list[tuple[str, str]]:
    """(node id, node address) for each actor: ``per_node`` on every live node with CPUs."""
    slots: list[tuple[str, str]] = []
    for node in ray.nodes():
        cpus = int(node.get("Resources", {}).get("CPU", 0))
        if not node.get("Alive") or cpus < 1:
            continue
        n = per_node or cpus
        if n > cpus:
            raise ClusterError(f"--workers-per-node {n}: node {node['NodeManagerAddress']} has only {cpus} CPUs")
        slots += [(node["NodeID"], node["NodeManagerAddress"])] * n
    if not slots:
        raise ClusterError("the Ray cluster has no live node with a CPU")
    return slots


def _start_actors(ray: Any, slots: list[tuple[str, str]]) -> list[_Share]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0, max_concurrency=4)(ShareActor)
    return [
        _Share(
            i,
            remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(),
            node_id,
            ip,
        )
        for i, (node_id, ip) in enumerate(slots)
    ]


def _prepare(ray: Any, shares: list[_Share], cohorts: Sequence[CohortSpec]) -> None:
    hosts = sorted({urlsplit(c.options.url).hostname or "" for c in cohorts} - {""})
    try:
        answers = ray.get([s.actor.prepare.remote(hosts) for s in shares], timeout=PREPARE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - placement timeout or an actor that died starting
        raise ClusterError(f"actors could not be placed and prepared: {_first_line(exc)}") from None
    for share, answer in zip(shares, answers, strict=True):
        bad = {h: v for h, v in answer["dns"].items() if v != "ok"}
        if bad:
            raise ClusterError(f"node {share.node_ip}: {', '.join(f'{h}: {v}' for h, v in bad.items())}")
    for share in shares:
        probes = []
        for _ in range(CLOCK_PROBES):
            t0 = time.time()
            t1, t2 = ray.get(share.actor.clock.remote())
            probes.append((t0, t1, t2, time.time()))
        share.offset_s, share.rtt_s = best_probe(probes)


def _install_signals(follow: _Follow) -> dict[int, Any]:
    """Ctrl-C or SIGTERM on the driver: stop every share (the grace applies); again: abort them."""

    def on_signal(signum: int, _frame: Any) -> None:
        follow.stops += 1
        follow.stop_reason = follow.stop_reason or f"interrupted by {signal.Signals(signum).name}"

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}


def _pass_on_stops(follow: _Follow) -> None:
    """A signal since the last look: the first stops every share (the grace applies), a second aborts."""
    if follow.stops > follow.stops_sent:
        follow.stops_sent = follow.stops
        for s in follow.shares:
            if s.lost is None and s.result is None:
                s.actor.stop.remote(follow.stop_reason, follow.stops > 1)


def _collect(ray: Any, follow: _Follow, done: list[Any], on_node_loss: str) -> None:
    by_ref = {s.ref: s for s in follow.shares}
    for ref in done:
        share = by_ref[ref]
        try:
            share.result = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - actor death, late start, or a failure inside the share
            cause = getattr(exc, "cause", None) or exc
            died = isinstance(exc, ray.exceptions.RayActorError)
            share.lost = f"{'lost' if died else 'failed'} ({type(cause).__name__}: {_first_line(cause)})"
            follow.losses.append(share)
            then = "stopping the rest" if on_node_loss == "abort" else "the rest go on, below the target load"
            print(f"sseprobe: node {share.node_ip}: actor {share.part} {share.lost}; {then}", file=sys.stderr)
            if on_node_loss == "abort":
                _stop_rest(follow, f"node {share.node_ip}: actor {share.part} {share.lost}; stopped the rest")


def _stop_rest(follow: _Follow, reason: str) -> None:
    if follow.stop_reason is None:
        follow.stop_reason = reason
    for s in follow.shares:
        if s.lost is None and s.result is None:
            s.actor.stop.remote(reason)


def _poll(ray: Any, follow: _Follow, timeout: float) -> None:
    live = [s for s in follow.shares if s.lost is None and s.result is None]
    refs = {s.actor.poll.remote(s.checkpoint_seq): s for s in live}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
    for ref in ready:
        share = refs[ref]
        try:
            answer = ray.get(ref)
        except Exception:  # noqa: BLE001 - the run call reports the death; a poll adds nothing
            continue
        share.progress = answer["progress"] or share.progress
        if answer["checkpoint"] is not None:
            share.checkpoint, share.checkpoint_seq = answer["checkpoint"], answer["checkpoint_seq"]


def _follow(ray: Any, follow: _Follow, opts: RunOptions, on_node_loss: str) -> None:
    """Until every share returned or was lost: collect, poll for progress and checkpoints, show."""
    show = _print_progress(opts.progress, opts.progress_every) if opts.progress else None
    while pending := [s.ref for s in follow.shares if s.lost is None and s.result is None]:
        _pass_on_stops(follow)
        done, _ = ray.wait(pending, num_returns=len(pending), timeout=opts.interval)
        _collect(ray, follow, done, on_node_loss)
        _poll(ray, follow, timeout=opts.interval)
        snaps = [s.progress for s in follow.shares if s.progress]
        if show and snaps:
            show(merge_progress(snaps))
    if opts.progress and opts.progress_every is None:
        opts.progress.write("\n")


def _checkpoint_payload(share: _Share) -> dict[str, Any]:
    """What a lost actor left: its last cumulative histograms, as a payload the merge takes."""
    cp = share.checkpoint or {}
    return {
        "info": RunInfo(cp.get("started", ""), cp.get("at_s", 0.0), True, "lost"),
        "cohorts": cp.get("cohorts", {}),
        "intervals": [],
        "generator": {"loop_lag_us": new_histogram().encode().decode("ascii")},
    }


def _loss_errors(losses: list[_Share]) -> list[str]:
    """One entry per node: which actors were lost, why, and what of theirs was kept."""
    by_node: dict[str, list[_Share]] = {}
    for s in losses:
        by_node.setdefault(s.node_id, []).append(s)
    return [
        f"node {lost[0].node_ip} ({node_id[:12]}): " + "; ".join(f"actor {s.part} {s.lost}, {_kept(s)}" for s in lost)
        for node_id, lost in by_node.items()
    ]


def _kept(share: _Share) -> str:
    cp = share.checkpoint
    if cp is None:
        return "no checkpoint to keep"
    return f"last checkpoint kept: {cp['at_s']:.1f} s in, {cp['sessions']} sessions"


def _nodes(follow: _Follow) -> list[dict[str, Any]]:
    by_node: dict[str, list[_Share]] = {}
    for s in follow.shares:
        by_node.setdefault(s.node_id, []).append(s)
    nodes = []
    for node_id, shares in by_node.items():
        best = min(shares, key=lambda s: s.rtt_s)
        skews = [s.result["start_skew_ms"] for s in shares if s.result]
        nodes.append(
            {
                "node": shares[0].node_ip,
                "node_id": node_id[:12],
                "actors": [s.part for s in shares],
                "clock_offset_ms": round(best.offset_s * 1000, 3),
                "round_trip_ms": round(best.rtt_s * 1000, 3),
                "start_skew_ms": round(max(skews), 3) if skews else None,
                "cpu_s": round(sum(s.result["cpu_s"] for s in shares if s.result), 3),
                "lost": [s.part for s in shares if s.lost],
            }
        )
    return nodes


def _merge(cohorts: Sequence[CohortSpec], follow: _Follow, copts: ClusterOptions) -> Measured:
    payloads = {s.part: s.result for s in follow.shares if s.result is not None}
    payloads |= {s.part: _checkpoint_payload(s) for s in follow.losses if s.checkpoint}
    if not payloads:
        raise ClusterError("every actor failed and none left a checkpoint: " + "; ".join(_loss_errors(follow.losses)))
    errors = _loss_errors(follow.losses)
    measured = _merge_results(cohorts, payloads, errors)
    survivors = [r["info"] for r in payloads.values() if r["info"].stop_reason != "lost"]
    own_reason = next((i.stop_reason for i in survivors if i.stop_reason), None)
    if follow.stop_reason:  # a signal on the driver, or a loss under --on-node-loss abort
        measured.info = replace(measured.info, interrupted=True, stop_reason=follow.stop_reason)
    elif errors:  # continue: the verdict stands, flagged as measured under less load than asked for
        measured.info = replace(
            measured.info, interrupted=any(i.interrupted for i in survivors), stop_reason=own_reason
        )
        measured.generator["below_target"] = (
            f"{len(follow.losses)} of {len(follow.shares)} actors lost: the load ran below its target"
        )
    starts = [s.result["start_skew_ms"] for s in follow.shares if s.result]
    measured.generator["nodes"] = _nodes(follow)
    measured.generator["cluster"] = {
        "address": redact_url(copts.address),
        "actors": len(follow.shares),
        "on_node_loss": copts.on_node_loss,
        "start_spread_ms": round(max(starts) - min(starts), 3) if starts else None,
    }
    return measured


def measure_cluster(
    cohorts: Sequence[CohortSpec], load: Load, timeouts: Timeouts, limits: Limits, opts: RunOptions
) -> Measured:
    """The load split over actors on every node of the cluster, started at one instant, merged losslessly."""
    copts = opts.cluster
    if copts is None:
        raise ValueError("measure_cluster needs RunOptions.cluster")
    ray = import_ray()
    follow = _Follow()
    old = _install_signals(follow)  # from here on a Ctrl-C is noted, and acted on once Ray has answered
    owned = False
    try:
        owned = _connect(ray, copts.address)
        follow.shares = _start_actors(ray, _placement(ray, copts.workers_per_node))
        _prepare(ray, follow.shares, cohorts)
        if follow.stops:  # interrupted while starting, placing or preparing: nothing has run, nothing to keep
            raise click.exceptions.Abort()
        start_at = time.time() + START_LEAD_S + max(s.rtt_s for s in follow.shares)
        ship = replace(opts, progress=None, cluster=None, workers=len(follow.shares))
        for s in follow.shares:
            s.ref = s.actor.run.remote(
                start_at + s.offset_s,
                s.part,
                len(follow.shares),
                cohorts,
                load,
                timeouts,
                limits,
                ship,
                bool(opts.progress),
            )
        _follow(ray, follow, opts, copts.on_node_loss)
        return _merge(cohorts, follow, copts)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for s in follow.shares:
            ray.kill(s.actor)
        if owned:
            ray.shutdown()
