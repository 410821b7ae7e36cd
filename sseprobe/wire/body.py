"""Response bodies, bounded: the caps on a body's decoded size and the incremental inflater.

The rule: no server can make sseprobe hold or handle more than a stated number of body bytes, however
it frames or compresses them. A body read whole (session create, the legacy run start, ``/health``,
``/list-apps``) is at most :data:`MAX_READ_BODY` (1 MiB; their real answers are under 1 KiB); a
streamed body at most :data:`MAX_STREAM_BODY` (64 MiB decoded; a 300 s research stream with
cumulative updates stays in the low MiB). Past a cap the response is a ``protocol_error`` that names
the cap. A gzip or deflate body is inflated on demand, never more than its reader takes (zlib reaches
1,032:1, so one 256 KiB socket read could inflate to 264 MB at once): at most :data:`HELD_INFLATED`
held for a reader that reads later, at most :data:`PUMP_INFLATED` per turn of the event loop into a
stream's sink, in pieces of at most :data:`INFLATE_PIECE`; the socket is not read while compressed
bytes wait. Memory stays at a few hundred KiB per response, and a bomb is stopped at the cap without
holding the loop (64 MiB of newlines cost the SSE decoder about 2 s of CPU on a busy 2-core machine,
spread over 64 turns).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable

from .._outcomes import ProtocolError

__all__ = [
    "MAX_READ_BODY",
    "MAX_STREAM_BODY",
    "INFLATE_PIECE",
    "HELD_INFLATED",
    "PUMP_INFLATED",
    "Inflater",
    "inflater",
    "too_long",
]

MAX_READ_BODY = 1 << 20
MAX_STREAM_BODY = 64 << 20
INFLATE_PIECE = 256 << 10
HELD_INFLATED = 256 << 10  # inflated and held for a reader that has not read yet
PUMP_INFLATED = 1 << 20  # inflated into a stream's sink per turn of the event loop


def too_long(cap: int) -> ProtocolError:
    """The error for a body past ``cap`` decoded bytes, naming the cap."""
    if cap == MAX_READ_BODY:
        return ProtocolError(f"response body longer than {_size(cap)}, sseprobe's cap on a body read whole")
    return ProtocolError(f"response body longer than {_size(cap)} decoded, sseprobe's cap on a stream")


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n & ((1 << 20) - 1) else f"{n:,} bytes"


class Inflater:
    """A gzip or deflate body, inflated on demand: ``push`` keeps the compressed bytes as they come,
    ``pull`` inflates at most ``budget`` bytes of them (in pieces of at most :data:`INFLATE_PIECE`)
    and hands each piece to ``out``; the rest waits, compressed (a few hundred KiB at most, as the
    socket is not read while any waits). So a bomb costs at most what its reader takes, never its
    whole inflated size at once."""

    __slots__ = ("_z", "_queue", "_more")

    def __init__(self, wbits: int) -> None:
        self._z = zlib.decompressobj(wbits)
        self._queue: deque[bytes] = deque()
        self._more = False  # the last piece filled its budget: zlib may hold more output

    def push(self, data: bytes) -> None:
        if data:
            self._queue.append(data)

    @property
    def pending(self) -> bool:
        """Compressed input (or inflated output) not handed on yet."""
        return bool(self._queue or self._z.unconsumed_tail or self._more)

    def pull(self, budget: int, out: Callable[[bytes], None]) -> None:
        z = self._z
        try:
            while budget > 0:
                if z.unconsumed_tail:
                    data = z.unconsumed_tail
                elif self._more:
                    data = b""
                elif self._queue:
                    data = self._queue.popleft()
                else:
                    return
                want = min(INFLATE_PIECE, budget)
                piece = z.decompress(data, want)
                self._more = len(piece) == want
                if piece:
                    budget -= len(piece)
                    out(piece)
        except zlib.error as exc:
            raise ProtocolError(f"compressed body does not inflate: {exc}") from None

    def finish(self, out: Callable[[bytes], None]) -> None:
        """Everything left (the body's cap bounds it), then zlib's last bytes."""
        self.pull(1 << 62, out)
        try:
            tail = self._z.flush()
        except zlib.error as exc:
            raise ProtocolError(f"compressed body does not inflate: {exc}") from None
        if tail:
            out(tail)


def inflater(fields: list[tuple[str, str]]) -> Inflater | None:
    """An inflater for a gzip or deflate body, None for an identity one; other codings are refused
    (sseprobe asks for ``identity``, so a server sending them ignored the request)."""
    codings = [v.strip().lower() for k, value in fields if k == "content-encoding" for v in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if codings == ["gzip"] or codings == ["x-gzip"]:
        return Inflater(16 + zlib.MAX_WBITS)
    if codings == ["deflate"]:
        return Inflater(32 + zlib.MAX_WBITS)  # zlib-wrapped, as the standard says
    raise ProtocolError(f"unsupported Content-Encoding {', '.join(codings)!r} (sseprobe asked for identity)")
