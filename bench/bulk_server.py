"""A bulk SSE server for the decoder benchmark: one prebuilt stream, written as fast as the socket takes it.

Raw asyncio (no framework), so the server costs next to nothing per event and the client is what is
measured. Each connection gets one HTTP/1.1 chunked ``text/event-stream`` response of ``--events``
events, in HTTP chunks of about 64 KiB that end wherever they end (events straddle chunk and read
boundaries, as on a real wire), then the terminating chunk; keep-alive.

Shapes (``--shape``):
  canonical  the target's ADK event for the canonical stream (~390 bytes, one ``data:`` JSON line)
  token      an LLM token delta, ``data: {"text": ...}`` (~40 bytes)
  legacy     the legacy stream's ``id:``/``event:``/``data:`` frame (~180 bytes)

Usage: python -m bench.bulk_server --events N --shape S   (prints "listening on URL" on stderr)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

CHUNK = 64 * 1024


def event(shape: str, i: int) -> bytes:
    if shape == "token":
        return b'data: {"text": "tok%06d", "index": %d}\n\n' % (i % 1000000, i)
    if shape == "legacy":
        return (
            b"id: research_update_1764000000.%06d\nevent: research_update\n"
            b'data: {"content": "Finding %d: simulated research result. ", '
            b'"timestamp": "2026-11-25T18:00:00.000000"}\n\n' % (i % 1000000, i)
        )
    return (
        b'data: {"content":{"parts":[{"text":"Finding %d: simulated research result. "}],"role":"model"},'
        b'"partial":true,"invocationId":"e-5a1f0c2e-7b3d-4e8a-9c6f-0d2b4a6e8c1f","author":"research_agent",'
        b'"actions":{"stateDelta":{},"artifactDelta":{},"requestedAuthConfigs":{}},'
        b'"id":"5a1f0c2e-7b3d-4e8a-9c6f-0d2b4a6e%04x","timestamp":1764093600.123456}\n\n' % (i, i % 65536)
    )


def final(shape: str) -> bytes:
    """The last event: not partial (a canonical stream that ends on a partial event is cut off)."""
    if shape == "canonical":
        return (
            b'data: {"content":{"parts":[{"text":"done"}],"role":"model"},"usageMetadata":{"totalTokenCount":9},'
            b'"invocationId":"e-5a1f0c2e","author":"research_agent","id":"final","timestamp":1764093600.5}\n\n'
        )
    return event(shape, 0)


def payload(shape: str, events: int) -> bytes:
    """``events`` events, the last a final one."""
    # a block of distinct events, repeated: the payload is built once, never per connection
    block = b"".join(event(shape, i) for i in range(2048))
    reps, extra = divmod(events - 1, 2048)
    tail = b"".join(event(shape, i) for i in range(extra))
    return block * reps + tail + final(shape)


def build(shape: str, events: int) -> tuple[bytes, int]:
    """The whole chunked body (HTTP chunks of ~64 KiB) and its payload size."""
    payload_ = payload(shape, events)
    return _chunked(payload_), len(payload_)


def _chunked(payload: bytes) -> bytes:
    out = bytearray()
    for pos in range(0, len(payload), CHUNK):
        piece = payload[pos : pos + CHUNK]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


class Bulk(asyncio.Protocol):
    body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").lower()
            length = 0
            for line in head.split("\r\n"):
                if line.startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            self.t.write(  # type: ignore[attr-defined]
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + self.body
            )


async def main(events: int, shape: str, port: int) -> None:
    Bulk.body, _ = build(shape, events)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Bulk, "127.0.0.1", port, backlog=1024)
    sys.stderr.write(f"bench bulk server listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}\n")
    sys.stderr.flush()
    await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--shape", default="canonical", choices=("canonical", "token", "legacy"))
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    try:
        asyncio.run(main(a.events, a.shape, a.port))
    except KeyboardInterrupt:
        pass
