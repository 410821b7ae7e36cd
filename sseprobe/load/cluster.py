"""Several machines: each share of the load runs in a Ray actor, merged here as the fork runner merges.

Ray (an optional extra) owns placement, processes and failure detection; this module owns what is
ours: one actor per share (load/actor.py), a start at one common instant after measuring each node's
clock, progress and ~10 s checkpoints by polling, a lease every actor must have renewed each second
(the load never outlives this driver), rollback triggers judged on all actors' windows merged, the
same lossless bucket-by-bucket merge, and an honest account of any share that was lost.

The whole cluster runs the load asked for, as ``--workers`` does on one machine: the users (``-c``),
the in-flight cap and the sessions are split so the actors' shares add up to them exactly; never more
actors than sessions may be in flight; the rate is shared by arrival (each actor every Nth).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from .._config import Limits, Timeouts
from .._redact import redact_url
from ..verdict.schema import CheckpointDoc, NodeDoc, ShareDoc
from ..verdict.stats import new_histogram
from .actor import LEASE_RENEW_S, LateStart, Polled, Prepared, ShareActor
from .engine import CohortSpec, Load, RunInfo
from .merge import Measured, SharePayload, merge_results, share_load
from .metrics import FORWARD
from .progress import MergedWindow, Progress, merge_progress, print_progress
from .ray_session import INSTALL_HINT, ClusterError, Joined, first_line, hold_ray, import_ray, ray_connected
from .runner import RunOptions, merged_generator, nothing_measured, useful_workers

__all__ = [
    "ClusterError",
    "ClusterOptions",
    "INSTALL_HINT",
    "LateStart",
    "ShareActor",
    "clock_offset",
    "best_probe",
    "hold_ray",
    "import_ray",
    "measure_cluster",
    "parse_cluster",
]

START_LEAD_S = 1.0  # the common start is this far ahead of the last clock probe (plus the worst round trip)
PREPARE_TIMEOUT_S = 120.0  # actors not placed and prepared by then: say so rather than hang
CLOCK_PROBES = 5
NODE_LOSS = ("abort", "continue")


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


# --- clocks -----------------------------------------------------------------------------------


def clock_offset(t0: float, t1: float, t2: float, t3: float) -> tuple[float, float]:
    """NTP arithmetic: the driver sends at t0 and receives at t3 (its clock); the actor receives at
    t1 and replies at t2 (its clock). Returns (offset: actor clock minus driver clock, round trip
    without the actor's own time). Exact when the two legs of the trip take equally long."""
    return ((t1 - t0) + (t2 - t3)) / 2, (t3 - t0) - (t2 - t1)


def best_probe(probes: Sequence[tuple[float, float, float, float]]) -> tuple[float, float]:
    """Of several probes, the one with the shortest round trip bounds the offset's error best."""
    return min((clock_offset(*p) for p in probes), key=lambda off_rtt: off_rtt[1])


# --- the driver -------------------------------------------------------------------------------


@dataclass
class _Share:
    part: int
    actor: Any
    node_id: str
    node: str  # the node's address, ip:port of its raylet: two raylets on one host differ here
    load: Load  # this share's part of the load (what it really ran)
    offset_s: float = 0.0
    rtt_s: float = 0.0
    ref: Any = None
    result: SharePayload | None = None
    checkpoint: CheckpointDoc | None = None
    checkpoint_seq: int = 0
    polling: Any = None  # the poll asked and not answered yet (a Ray ObjectRef): waited for again, never asked anew
    progress: Progress | None = None
    skew_ms: float | None = None  # how late it reached the common start (ran or refused)
    lost: str | None = None  # why its share did not finish

    @property
    def live(self) -> bool:
        return self.lost is None and self.result is None


@dataclass
class _Follow:
    """The driver's view while the shares run."""

    shares: list[_Share] = field(default_factory=list)
    stop_reason: str | None = None
    stops: int = 0  # signals received (set by the handler)
    stops_sent: int = 0  # of those, passed on to the actors (by the loop: Ray calls never run in a handler)
    losses: list[_Share] = field(default_factory=list)


def _placement(ray: Any, per_node: int | None) -> list[tuple[str, str]]:
    """(node id, node address) for each actor slot: ``per_node`` on every live node with CPUs, the
    nodes taken in turn (so fewer actors than slots still spread over the nodes)."""
    by_node: list[list[tuple[str, str]]] = []
    for node in ray.nodes():
        cpus = int(node.get("Resources", {}).get("CPU", 0))
        if not node.get("Alive") or cpus < 1:
            continue
        n = per_node or cpus
        address = f"{node['NodeManagerAddress']}:{node.get('NodeManagerPort', 0)}"
        if n > cpus:
            raise ClusterError(f"--workers-per-node {n}: node {address} has only {cpus} CPUs")
        by_node.append([(node["NodeID"], address)] * n)
    if not by_node:
        raise ClusterError("the Ray cluster has no live node with a CPU")
    width = max(len(slots) for slots in by_node)
    return [slots[i] for i in range(width) for slots in by_node if i < len(slots)]


def _useful(load: Load, slots: int) -> int:
    """Never more actors than sessions may be in flight (each gets at least one) or sessions to run."""
    n = useful_workers(load, slots)
    return max(1, min(n, load.sessions)) if load.sessions is not None else n


def _start_actors(ray: Any, slots: list[tuple[str, str]], load: Load) -> list[_Share]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0, max_concurrency=8)(ShareActor)
    n = len(slots)
    return [
        _Share(
            i,
            remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(),
            node_id,
            address,
            share_load(load, i, n),
        )
        for i, (node_id, address) in enumerate(slots)
    ]


def _prepare(ray: Any, shares: list[_Share], cohorts: Sequence[CohortSpec]) -> None:
    hosts = sorted({urlsplit(c.options.url).hostname or "" for c in cohorts} - {""})
    try:
        answers: list[Prepared] = ray.get([s.actor.prepare.remote(hosts) for s in shares], timeout=PREPARE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - placement timeout or an actor that died starting
        raise ClusterError(f"actors could not be placed and prepared: {first_line(exc)}") from None
    for share, answer in zip(shares, answers, strict=True):
        bad = {h: v for h, v in answer["dns"].items() if v != "ok"}
        if bad:
            raise ClusterError(f"node {share.node}: {', '.join(f'{h}: {v}' for h, v in bad.items())}")
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


class _Lease(threading.Thread):
    """Renews every live actor's lease each LEASE_RENEW_S while this driver lives (load/actor.py)."""

    def __init__(self, ray: Any, follow: _Follow) -> None:
        super().__init__(daemon=True, name="sseprobe-lease")
        self.ray, self.follow, self.done = ray, follow, threading.Event()

    def run(self) -> None:
        while not self.done.wait(LEASE_RENEW_S):
            for s in self.follow.shares:
                if s.live:
                    try:
                        s.actor.renew.remote()
                    except Exception:  # noqa: BLE001 - a dead actor: the run call reports it
                        continue


def _pass_on_stops(follow: _Follow) -> None:
    """A signal since the last look: the first stops every share (the grace applies), a second aborts."""
    if follow.stops > follow.stops_sent:
        follow.stops_sent = follow.stops
        for s in follow.shares:
            if s.live:
                s.actor.stop.remote(follow.stop_reason, follow.stops > 1)


def _collect(ray: Any, follow: _Follow, done: list[Any], on_node_loss: str, judge: MergedWindow | None) -> None:
    by_ref = {s.ref: s for s in follow.shares}
    for ref in done:
        share = by_ref[ref]
        try:
            share.result = ray.get(ref)
            share.skew_ms = share.result["start_skew_ms"]
        except Exception as exc:  # noqa: BLE001 - actor death, late start, or a failure inside the share
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, LateStart) and cause.late_s is not None:
                share.skew_ms = cause.late_s * 1000.0
            died = isinstance(exc, ray.exceptions.RayActorError)
            share.lost = f"{'lost' if died else 'failed'} ({type(cause).__name__}: {first_line(cause)})"
            follow.losses.append(share)
            if judge is not None:
                judge.forget(share.part)
            then = "stopping the rest" if on_node_loss == "abort" else "the rest go on, below the target load"
            print(f"sseprobe: node {share.node}: actor {share.part} {share.lost}; {then}", file=sys.stderr)
            if on_node_loss == "abort":
                _stop_rest(follow, f"node {share.node}: actor {share.part} {share.lost}; stopped the rest")


def _stop_rest(follow: _Follow, reason: str) -> None:
    if follow.stop_reason is None:
        follow.stop_reason = reason
    for s in follow.shares:
        if s.live:
            s.actor.stop.remote(reason)


def _poll(ray: Any, follow: _Follow, timeout: float) -> list[_Share]:
    """Ask every live share for its progress and any new checkpoint; returns those that answered. A poll
    not answered within ``timeout`` stays asked: on a busy machine an answer (a checkpoint is encoded in
    it) may take longer than one interval, and asking anew each interval would never receive one."""
    for s in follow.shares:
        if s.live and s.polling is None:
            s.polling = s.actor.poll.remote(s.checkpoint_seq)
    refs = {s.polling: s for s in follow.shares if s.live}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
    answered = []
    for ref in ready:
        share = refs[ref]
        share.polling = None
        try:
            answer: Polled = ray.get(ref)
        except Exception:  # noqa: BLE001 - the run call reports the death; a poll adds nothing
            continue
        share.progress = answer["progress"] or share.progress
        if answer["checkpoint"] is not None:
            share.checkpoint, share.checkpoint_seq = answer["checkpoint"], answer["checkpoint_seq"]
        answered.append(share)
    return answered


def _follow(ray: Any, follow: _Follow, opts: RunOptions, on_node_loss: str) -> None:
    """Until every share returned or was lost: collect, poll for progress and checkpoints, judge the
    rollback triggers on the merged windows (as the fork runner's parent does), show."""
    show = print_progress(opts.progress, opts.progress_every) if opts.progress else None
    judge = MergedWindow(opts.policy, opts.abort_on_trigger) if opts.abort_on_trigger is not None else None
    while pending := [s.ref for s in follow.shares if s.live]:
        _pass_on_stops(follow)
        done, _ = ray.wait(pending, num_returns=len(pending), timeout=opts.interval)
        _collect(ray, follow, done, on_node_loss, judge)
        for share in _poll(ray, follow, timeout=opts.interval):
            if judge is not None and follow.stop_reason is None and share.progress is not None:
                if held := judge.held(share.part, share.progress):
                    _stop_rest(follow, f"rollback trigger held {opts.abort_on_trigger:g}s: {held[0]}")
        snaps = [_shown(s, s.progress) for s in follow.shares if s.progress]
        for s in follow.shares:  # live metrics: the driver serves the merged view of the live shares
            if opts.metrics is not None and s.live and s.progress is not None and s.progress.metrics is not None:
                opts.metrics.publish(s.part, s.progress.metrics)
        if show and snaps:
            show(merge_progress(snaps))
    if opts.progress and opts.progress_every is None:
        opts.progress.write("\n")


def _shown(share: _Share, p: Progress) -> Progress:
    """A share's part of the live line: a lost one keeps the sessions it finished, but adds no rate,
    nothing in flight and no interval any more (its last snapshot is not what runs now)."""
    if share.lost is None:
        return p
    return replace(p, achieved_rate=0.0, in_flight=0, interval=None, fired=[], seconds_left=None, sessions_left=None)


def _checkpoint_payload(cp: CheckpointDoc) -> SharePayload:
    """What a lost actor left: its last cumulative histograms and its intervals up to then."""
    return {
        "info": RunInfo(cp["started"], cp["at_s"], True, "lost"),
        "cohorts": cp["cohorts"],
        "intervals": cp["intervals"],
        "generator": {"loop_lag_us": new_histogram().encode().decode("ascii")},
    }


def _loss_errors(losses: list[_Share]) -> list[str]:
    """One entry per node: which actors were lost, why, and what of theirs was kept."""
    by_node: dict[str, list[_Share]] = {}
    for s in losses:
        by_node.setdefault(s.node_id, []).append(s)
    return [
        f"node {lost[0].node} ({node_id[:12]}): " + "; ".join(f"actor {s.part} {s.lost}, {_kept(s)}" for s in lost)
        for node_id, lost in by_node.items()
    ]


def _kept(share: _Share) -> str:
    cp = share.checkpoint
    if cp is None:
        return "no checkpoint to keep"
    return f"last checkpoint kept: {cp['at_s']:.1f} s in, {cp['sessions']} sessions"


def _nodes(follow: _Follow) -> list[NodeDoc]:
    by_node: dict[str, list[_Share]] = {}
    for s in follow.shares:
        by_node.setdefault(s.node_id, []).append(s)
    nodes: list[NodeDoc] = []
    for node_id, shares in by_node.items():
        best = min(shares, key=lambda s: s.rtt_s)
        skews = [s.skew_ms for s in shares if s.skew_ms is not None]
        nodes.append(
            {
                "node": shares[0].node,
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


def _merge(cohorts: Sequence[CohortSpec], follow: _Follow, copts: ClusterOptions, joined: Joined) -> Measured:
    payloads = {s.part: s.result for s in follow.shares if s.result is not None}
    payloads |= {s.part: _checkpoint_payload(s.checkpoint) for s in follow.losses if s.checkpoint}
    errors = _loss_errors(follow.losses)
    if not payloads and follow.stop_reason is None:
        raise ClusterError("every actor failed and none left a checkpoint: " + "; ".join(errors))
    measured = merge_results(cohorts, payloads, errors, merged_generator, follow.stop_reason)
    survivors = [r["info"] for r in payloads.values() if r["info"].stop_reason != "lost"]
    own_reason = next((i.stop_reason for i in survivors if i.stop_reason), None)
    if follow.stop_reason:  # a signal on the driver, a trigger, or a loss under --on-node-loss abort
        measured.info = replace(measured.info, interrupted=True, stop_reason=follow.stop_reason)
    elif errors:  # continue: flagged as measured under less load than asked for (and never a clean exit 0)
        measured.info = replace(
            measured.info, interrupted=any(i.interrupted for i in survivors), stop_reason=own_reason
        )
    if errors:
        measured.generator["below_target"] = (
            f"{len(follow.losses)} of {len(follow.shares)} actors lost: the load ran below its target"
        )
    skews = [s.skew_ms for s in follow.shares if s.skew_ms is not None]
    measured.generator["nodes"] = _nodes(follow)
    measured.generator["cluster"] = {
        "address": redact_url(copts.address),
        "joined": redact_url(joined.joined),
        "actors": len(follow.shares),
        "on_node_loss": copts.on_node_loss,
        "start_spread_ms": round(max(skews) - min(skews), 3) if skews else None,
        "shares": [_share_config(s) for s in follow.shares],
    }
    return measured


def _share_config(share: _Share) -> ShareDoc:
    """What one actor was asked to run: the shares add up to the load asked for."""
    load = share.load
    doc: ShareDoc = {"actor": share.part, "node": share.node, "sessions": load.sessions}
    if load.schedule is None:
        doc["concurrency"] = load.concurrency
    else:
        doc["max_in_flight"] = load.max_in_flight
    return doc


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
    try:
        with ray_connected(copts.address, sys.stderr) as joined:
            if joined is None or follow.stops:  # a signal while Ray started: nothing ran, a document says so
                return nothing_measured(cohorts, follow.stop_reason or "interrupted while Ray started")
            return _run_on(ray, joined, cohorts, load, timeouts, limits, opts, follow)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _run_on(
    ray: Any,
    joined: Joined,
    cohorts: Sequence[CohortSpec],
    load: Load,
    timeouts: Timeouts,
    limits: Limits,
    opts: RunOptions,
    follow: _Follow,
) -> Measured:
    copts = opts.cluster
    assert copts is not None
    slots = _placement(ray, copts.workers_per_node)
    follow.shares = _start_actors(ray, slots[: _useful(load, len(slots))], load)
    lease = _Lease(ray, follow)
    try:
        _prepare(ray, follow.shares, cohorts)
        if follow.stops:  # interrupted while placing or preparing: nothing has run
            return nothing_measured(cohorts, follow.stop_reason or "interrupted while starting")
        start_at = time.time() + START_LEAD_S + max(s.rtt_s for s in follow.shares)
        # each actor runs its share; the driver alone judges the triggers, on the merged windows
        watched = opts.progress is not None or opts.abort_on_trigger is not None
        metrics = FORWARD if opts.metrics is not None else None  # the driver serves the merged view
        ship = replace(
            opts, progress=None, cluster=None, workers=len(follow.shares), judge=False, window=watched, metrics=metrics
        )
        report = watched or metrics is not None
        n = len(follow.shares)
        lease.start()
        for s in follow.shares:
            s.ref = s.actor.run.remote(start_at + s.offset_s, s.part, n, cohorts, load, timeouts, limits, ship, report)
        _follow(ray, follow, opts, copts.on_node_loss)
        return _merge(cohorts, follow, copts, joined)
    finally:
        lease.done.set()
        for s in follow.shares:
            ray.kill(s.actor)
