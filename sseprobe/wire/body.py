"""Response bodies, bounded: the caps on a body's decoded size and the incremental inflater.

The rule: no server can make sseprobe hold or handle more than a stated number of body bytes, however
it frames or compresses them. A body read whole (session create, the legacy run start, ``/health``,
``/list-apps``) is at most :data:`MAX_READ_BODY` (1 MiB; their real answers are under 1 KiB); a
streamed body at most :data:`MAX_STREAM_BODY` (64 MiB decoded; a 300 s research stream with
cumulative updates stays in the low MiB). Past a cap the response is a ``protocol_error`` that names
the cap. A gzip or deflate body is inflated in pieces of at most :data:`INFLATE_PIECE` (256 KiB)
whatever the compressed chunk holds (zlib reaches 1,032:1, so one 256 KiB socket read could inflate to
264 MB at once), so memory stays at a piece and a bomb is stopped at the cap: on a busy 2-core machine
64 MiB of inflated newlines cost the SSE decoder about 2 s, where 1 GB used to hold the loop for 30 s.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from .._outcomes import ProtocolError

__all__ = ["MAX_READ_BODY", "MAX_STREAM_BODY", "INFLATE_PIECE", "Inflater", "inflater", "too_long"]

MAX_READ_BODY = 1 << 20
MAX_STREAM_BODY = 64 << 20
INFLATE_PIECE = 256 << 10


def too_long(cap: int) -> ProtocolError:
    """The error for a body past ``cap`` decoded bytes, naming the cap."""
    if cap == MAX_READ_BODY:
        return ProtocolError(f"response body longer than {_size(cap)}, sseprobe's cap on a body read whole")
    return ProtocolError(f"response body longer than {_size(cap)} decoded, sseprobe's cap on a stream")


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n & ((1 << 20) - 1) else f"{n:,} bytes"


class Inflater:
    """A gzip or deflate body inflated piece by piece: ``feed`` and ``flush`` hand each piece of at
    most :data:`INFLATE_PIECE` bytes to ``out`` as soon as it is inflated (never the whole)."""

    __slots__ = ("_z",)

    def __init__(self, wbits: int) -> None:
        self._z = zlib.decompressobj(wbits)

    def feed(self, data: bytes, out: Callable[[bytes], None]) -> None:
        z = self._z
        try:
            while True:
                piece = z.decompress(data, INFLATE_PIECE)
                if piece:
                    out(piece)
                data = z.unconsumed_tail
                if not data and len(piece) < INFLATE_PIECE:
                    return
        except zlib.error as exc:
            raise ProtocolError(f"compressed body does not inflate: {exc}") from None

    def flush(self, out: Callable[[bytes], None]) -> None:
        self.feed(b"", out)
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
