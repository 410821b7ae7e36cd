"""A connection's socket, read and written by sseprobe's client itself (not the event loop's transport),
so that each read carries the kernel's receive timestamp (``SO_TIMESTAMPNS`` on Linux)."""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .conn import Conn

__all__ = ["SocketIO", "Reader", "READ_SIZE"]

READ_SIZE = 256 * 1024  # bytes per socket read (as the event loop's own transport reads)
# Linux's SO_TIMESTAMPNS (the socket module does not name it): each read says when its bytes reached the
# socket. Elsewhere no kernel stamps: bytes are stamped when read.
_SO_TIMESTAMPNS = 35 if sys.platform == "linux" else None
_STAMP_SPACE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0  # one struct timespec


class Reader(Protocol):
    """The client a socket reads for: one shared read buffer (one loop, one read at a time) and the
    receive lag of the bytes being handed on (see ``Transport.receive_lag``)."""

    read_buf: bytearray
    receive_lag: float


class SocketIO(asyncio.Transport):
    """A connection's socket, read and written by this client rather than by the event loop's
    transport: each read comes with the kernel's receive timestamp (``SO_TIMESTAMPNS``), so bytes are
    stamped when they reached the socket, not when a busy loop got round to them (bench/README.md,
    benchmark 9: at 5,000 open streams on a loaded machine, TTFE error p50 from 0.3-13 ms to 0.015 ms)."""

    def __init__(self, client: Reader, sock: socket.socket, conn: Conn) -> None:
        super().__init__()
        self.client, self.sock, self.conn, self.loop = client, sock, conn, conn.loop
        self.fd = sock.fileno()
        self.reading = self.closed = False
        self.unsent = b""
        if sock.family in (socket.AF_INET, socket.AF_INET6):  # as the loop's transports do: no Nagle delay
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stamp_space = 0  # no kernel stamps: bytes are stamped when read
        if _SO_TIMESTAMPNS is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self.stamp_space = _STAMP_SPACE
            except OSError:
                pass
        conn.connection_made(self)
        self.resume_reading()

    def _readable(self) -> None:
        client, buf = self.client, self.client.read_buf
        try:
            n, ancillary, _, _ = self.sock.recvmsg_into((buf,), self.stamp_space)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not n:
            self._lost(None)
            return
        now = time.time()
        arrival = now
        if ancillary and len(ancillary[0][2]) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(ancillary[0][2])
            arrival = min(sec + nsec * 1e-9, now)  # both CLOCK_REALTIME: no offset
        client.receive_lag = now - arrival
        self.conn.arrival = arrival
        try:
            self.conn.data_received(bytes(memoryview(buf)[:n]))
        finally:
            client.receive_lag = 0.0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            return
        if self.unsent:
            self.unsent += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lost(exc)
            return
        if sent < len(data):
            self.unsent = bytes(data[sent:])
            self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        self.unsent = self.unsent[sent:]
        if not self.unsent:
            self.loop.remove_writer(self.fd)

    def pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    def resume_reading(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self.loop.add_reader(self.fd, self._readable)

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self._lost(None)

    def abort(self) -> None:
        self._lost(None)

    def _lost(self, exc: Exception | None) -> None:
        """Closed, by either side or by an error: the connection hears it once, on the next turn of the
        loop (as from the loop's own transports)."""
        if self.closed:
            return
        self.closed = True
        self.pause_reading()
        if self.unsent:
            self.loop.remove_writer(self.fd)
            self.unsent = b""
        self.sock.close()
        self.loop.call_soon(self.conn.connection_lost, exc)


_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux: seconds, nanoseconds
