"""What first-answer detection and answer accounting cost per event, before/after in one run.

The same bulk payloads as ``bench/decode.py`` (``bench/bulk_server.payload``), in 64 KiB pieces, in
memory (no socket), through what a session does per chunk:

- ``scan``: ``SSEDecoder.feed`` + ``StreamRules.scan`` (the per-event work before answers were tracked);
- ``scan+answers``: the same plus ``Answers.feed`` (first-answer detection, answer counting).

Both run in one process, interleaved, ``--repeats`` times each; the figures are the median events
per CPU-second of each and the median of the pairwise ratios (each pair ran back to back, so a busy
machine slows both alike). Rules: ``canonical`` (ADK answers: the first text, then counted by a substring test),
``legacy``, and ``generic`` (the decode benchmark's own session: every data event is an answer).

Usage: python -m bench.first_answer [--events N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time

from sseprobe.wire.flows import CANONICAL_RULES, LEGACY_RULES, StreamRules
from sseprobe.wire.sse import SSEDecoder

from .bulk_server import payload

RULES = {"canonical": CANONICAL_RULES, "legacy": LEGACY_RULES, "generic": StreamRules(complete_on=None, close_ok=True)}
SHAPE = {"canonical": "canonical", "legacy": "legacy", "generic": "canonical"}


def once(rules: StreamRules, pieces: list[bytes], events: int, answers: bool) -> float:
    dec, scan, n = SSEDecoder(), rules.scan, 0
    tracker = rules.answers()
    c0 = time.process_time()
    for piece in pieces:
        evs = dec.feed(piece)
        if evs:
            n += len(evs)
            progress, done, _ = scan(evs)
            if answers:
                tracker.feed(evs, progress - done)
    cpu = time.process_time() - c0
    assert n == events, n
    assert not answers or tracker.events, "no answer found: the benchmark measured nothing"
    return n / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"{'rules':<10} {'scan ev/s':>12} {'scan+answers ev/s':>18} {'change':>8}   spread (min-max, M/s)")
    ratio = "median of pairwise ratios"
    for name, rules in RULES.items():
        data = payload(SHAPE[name], args.events)
        pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        before: list[float] = []
        after: list[float] = []
        for _ in range(args.repeats):  # interleaved: machine noise hits both alike
            before.append(once(rules, pieces, args.events, False))
            after.append(once(rules, pieces, args.events, True))
        b, a = statistics.median(before), statistics.median(after)
        pairs = statistics.median(x / y - 1 for x, y in zip(after, before, strict=True))
        print(
            f"{name:<10} {b / 1e6:>10.3f} M {a / 1e6:>16.3f} M {pairs:>+8.1%}   "
            f"{min(before) / 1e6:.2f}-{max(before) / 1e6:.2f} / {min(after) / 1e6:.2f}-{max(after) / 1e6:.2f}"
        )
    print(f"change: {ratio}")


if __name__ == "__main__":
    main()
