"""Sans-IO Server-Sent Events decoder: bytes in, events out, by the WHATWG event-stream rules.

This is the hottest code of sseprobe, so it never loops per byte and never decodes a whole chunk.
A chunk's complete events are decoded a run at a time where they have the common shapes: one split
for a run of one-line ``data: ...`` events (the canonical stream), one regex split for ``id:``,
``event:``, ``data:`` frames (the legacy stream). Anything else goes through the per-line WHATWG
state machine, which is always right, only slower. CR and CRLF become LF only in chunks that hold a
CR. Only kept field values are decoded, each on its own: a multibyte character is never cut, and
invalid UTF-8 becomes U+FFFD. Memory is bounded: a partial line past ``max_line`` or event data past
``max_event`` raises :class:`ProtocolError` as soon as it shows, before it is buffered.
"""

from __future__ import annotations

import re
from itertools import repeat
from typing import NamedTuple

from .._outcomes import ProtocolError

__all__ = ["Event", "SSEDecoder"]

_BOM = b"\xef\xbb\xbf"
# A common event: optional id (without NUL), optional event, one data line, blank line, one space
# after each colon. Groups: "id" when the id line is there, id, event, data. Anchored to line
# starts (^), so a split over other lines tries only their starts, not every byte.
_COMMON = re.compile(rb"^(?:(id): ([^\0\n]*)\n)?(?:event: (.*)\n)?data: (.*)\n\n", re.MULTILINE)


class Event(NamedTuple):
    """One dispatched event; ``id`` is the stream's last event id (it persists across events)."""

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None  # set by a ``retry`` field of this event, else None


_new = tuple.__new__  # builds an Event without NamedTuple's Python-level __new__ (hot path)
# endless arguments for map(_new, ...): a run of events is built in C, no Python loop per event
_EVENTS, _MESSAGES, _NONES = repeat(Event), repeat("message"), repeat(None)


class SSEDecoder:
    """Incremental decoder of one event stream; chunks may be split anywhere, even inside a CRLF."""

    __slots__ = (
        "_bom", "_cr", "_data", "_event", "_id", "_max_event",
        "_max_line", "_parts", "_plen", "_retry", "_size",
    )  # fmt: skip

    def __init__(self, max_line: int = 1 << 20, max_event: int = 1 << 20) -> None:
        self._max_line = max_line
        self._max_event = max_event
        self._id = ""  # the last event id buffer: survives events and flush(), as in WHATWG
        self._reset()

    def _reset(self) -> None:
        self._parts: list[bytes] = []  # the partial line, in the pieces it arrived in
        self._plen = 0
        self._bom = True  # at stream start, where a UTF-8 BOM (maybe split) is dropped
        self._cr = False  # last chunk ended in CR: an LF opening the next one ends no line
        self._data: list[bytes] = []  # data lines of the pending event
        self._size = 0  # their bytes, one LF each included
        self._event = b""
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """Take the next bytes of the stream; return the events they complete."""
        # A chunk of whole LF-ended lines (often one event) needs no preparing; others do.
        if self._parts or self._bom or self._cr or chunk[-1:] != b"\n" or b"\r" in chunk:
            chunk, stop = self._whole_lines(chunk)  # chunk[:stop]: whole lines (no copy made)
        else:
            stop = len(chunk)
            if stop > self._max_line:
                self._check_lines(chunk)
        out: list[Event] = []
        pos = 0
        if self._data or self._event or self._retry is not None:  # finish the event begun earlier
            pos = chunk.find(b"\n\n", 0, stop) + 2
            if pos < 2:
                pos = 0  # no blank line: all goes to the line machine below
            else:
                self._lines(chunk[:pos], out)
        last = chunk.rfind(b"\n\n", 0, stop)  # [pos, last + 2): whole events, from an event boundary
        if last >= pos and self._runs(chunk, pos, last + 2, out):
            pos = last + 2
        if pos < stop:
            self._lines(chunk[pos:stop] if pos or stop < len(chunk) else chunk, out)
        return out

    def _whole_lines(self, chunk: bytes) -> tuple[bytes, int]:
        """(bytes, n): the stream's whole lines are bytes[:n] (BOM dropped, CR and CRLF made LF);
        the partial line after them is kept."""
        if self._cr and chunk:
            self._cr = False
            if chunk[0] == 10:
                chunk = chunk[1:]
        if self._bom:
            chunk = b"".join(self._parts) + chunk
            self._parts, self._plen = [], 0
            if len(chunk) < 3 and _BOM.startswith(chunk):
                self._parts, self._plen = [chunk], len(chunk)
                return b"", 0
            self._bom = False
            if chunk[:3] == _BOM:
                chunk = chunk[3:]
        if chunk.find(b"\n") < 0 and chunk.find(b"\r") < 0:  # no line end: the partial line grows
            self._plen += len(chunk)
            if self._plen > self._max_line:
                raise ProtocolError(f"sse line longer than {self._max_line} bytes")
            self._parts.append(chunk)
            return b"", 0
        if self._parts:
            self._parts.append(chunk)
            chunk = b"".join(self._parts)
        if b"\r" in chunk:
            self._cr = chunk[-1] == 13
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if len(chunk) > self._max_line:
            self._check_lines(chunk)
        stop = chunk.rfind(b"\n") + 1
        self._parts, self._plen = ([chunk[stop:]] if stop < len(chunk) else []), len(chunk) - stop
        return chunk, stop

    def _check_lines(self, chunk: bytes) -> None:
        """Raise if a line is past max_line; only worth calling when the chunk itself is."""
        if max(map(len, chunk.split(b"\n"))) > self._max_line:
            raise ProtocolError(f"sse line longer than {self._max_line} bytes")

    def flush(self) -> list[Event]:
        """End of stream: an unterminated event is dropped (WHATWG), so this returns [].

        The decoder is then ready for a new (reconnected) stream, keeping the last event id.
        """
        self._reset()
        return []

    def _runs(self, chunk: bytes, pos: int, end: int, out: list[Event]) -> bool:
        """Decode the events of chunk[pos:end] a run at a time; False (nothing done) if they don't fit."""
        last_id, max_event = self._id, self._max_event
        if chunk.startswith(b"data: ", pos):  # one split, if no other line end (the count) is there
            # decoded as one text, then split: the separators are ASCII and UTF-8 resynchronises on
            # them, so each value decodes (and replaces bad bytes) exactly as it would on its own
            values = str(memoryview(chunk)[pos + 6 : end - 2], "utf-8", "replace").split("\n\ndata: ")
            if chunk.count(b"\n", pos, end) == 2 * len(values) and (
                end - pos <= max_event or max(map(len, chunk[pos + 6 : end - 2].split(b"\n\ndata: "))) <= max_event
            ):
                out += map(_new, _EVENTS, zip(_MESSAGES, values, repeat(last_id), _NONES))
                return True
        if end - pos < 256 or _COMMON.match(chunk, pos, end) is None:
            return False  # a few events: the line machine is as fast; not common ones: don't scan
        # [gap, "id"?, id, event, data] per common event, then a last gap. A gap (lines of other
        # shapes) must end in a blank line, else the next match would not be on an event boundary.
        parts = _COMMON.split(chunk[pos:end])
        gaps = parts[::5]
        if not all(g == b"\n" or g[-2:] == b"\n\n" for g in filter(None, gaps)):
            return False
        if end - pos > max_event and max(map(len, parts[4::5]), default=0) > max_event:
            return False  # the line machine raises at the right place
        append = out.append
        for gap, has_id, id_, event, data in zip(
            gaps, parts[1::5], parts[2::5], parts[3::5], parts[4::5], strict=False
        ):
            if gap:
                self._id = last_id
                self._lines(gap, out)
                last_id = self._id
            if has_id:
                last_id = id_.decode("utf-8", "replace")
            append(_new(Event, (
                event.decode("utf-8", "replace") if event else "message",
                data.decode("utf-8", "replace"), last_id, None,
            )))  # fmt: skip
        self._id = last_id
        if gaps[-1]:
            self._lines(gaps[-1], out)
        return True

    def _lines(self, text: bytes, out: list[Event]) -> None:
        """The WHATWG per-line state machine over complete lines; a blank line dispatches."""
        data, size, limit = self._data, self._size, self._max_event + 1
        event, retry, last_id = self._event, self._retry, self._id
        append = out.append
        lines = text.split(b"\n")
        lines.pop()  # text ends with a line end
        for line in lines:
            if not line:  # dispatch, if there is data; reset all but the last event id
                if data:
                    append(_new(Event, (
                        event.decode("utf-8", "replace") if event else "message",
                        b"\n".join(data).decode("utf-8", "replace"), last_id, retry,
                    )))  # fmt: skip
                    data, size = [], 0
                event, retry = b"", None
                continue
            name, _, value = line.partition(b":")  # no colon: the whole line names the field
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                size += len(value) + 1
                if size > limit:
                    raise ProtocolError(f"sse event data longer than {self._max_event} bytes")
                data.append(value)
            elif name == b"event":
                event = value
            elif name == b"id":
                if b"\0" not in value:
                    last_id = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit():  # ASCII digits only, else ignored
                try:
                    retry = int(value)
                except ValueError:  # past Python's int digit limit: ignored like any bad value
                    pass
            # comments (empty name) and unknown fields are ignored
        self._data, self._size, self._event, self._retry, self._id = data, size, event, retry, last_id
