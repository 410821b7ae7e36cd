"""Tests of the sans-IO SSE decoder against the WHATWG event-stream rules and against httpx-sse."""

from __future__ import annotations

import codecs
import itertools
import tracemalloc

import pytest
from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
from httpx_sse._decoders import SSELineDecoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sseprobe._outcomes import Outcome, ProtocolError
from sseprobe.wire.sse import Event, SSEDecoder

BOM = b"\xef\xbb\xbf"


def decode(pieces: list[bytes], **limits: int) -> list[Event]:
    dec = SSEDecoder(**limits)
    out = [ev for piece in pieces for ev in dec.feed(piece)]
    return out + dec.flush()


def splits(stream: bytes) -> list[list[bytes]]:
    """The stream whole, cut once at every byte, cut twice (short streams), and in 1-byte chunks."""
    n = len(stream)
    ways = [[stream], [bytes([b]) for b in stream], [b""] + [bytes([b]) for b in stream] + [b""]]
    ways += [[stream[:i], stream[i:]] for i in range(n + 1)]
    if n <= 64:
        ways += [[stream[:i], stream[i:j], stream[j:]] for i in range(n + 1) for j in range(i, n + 1)]
    return ways


def check(stream: bytes, expected: list[Event], **limits: int) -> None:
    """However the stream is chunked, it decodes to exactly ``expected``."""
    for pieces in splits(stream):
        assert decode(pieces, **limits) == expected, pieces


def ev(data: str, event: str = "message", id: str = "", retry: int | None = None) -> Event:
    return Event(event, data, id, retry)


# --- the examples of the WHATWG spec (section "Server-sent events", "Parsing an event stream") ---


def test_spec_stock_example() -> None:
    check(b"data: YHOO\ndata: +2\ndata: 10\n\n", [ev("YHOO\n+2\n10")])


def test_spec_first_second_third_event() -> None:
    stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"
    check(stream, [ev("first event", id="1"), ev("second event"), ev(" third event")])


def test_spec_empty_data_blocks() -> None:
    # "data" alone gives "", two of them "\n"; the last block has no blank line, so no event
    check(b"data\n\ndata\ndata\n\ndata:", [ev(""), ev("\n")])


def test_spec_space_after_colon_is_optional() -> None:
    check(b"data:test\n\ndata: test\n\n", [ev("test"), ev("test")])


def test_spec_event_types() -> None:
    stream = b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n"
    check(stream, [ev("73857293", "add"), ev("2153", "remove"), ev("113411", "add")])


# --- line ends ---


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_line_ends(eol: bytes) -> None:
    stream = b"event: a" + eol + b"data: 1" + eol + b"data: 2" + eol + eol + b"data: 3" + eol + eol
    check(stream, [ev("1\n2", "a"), ev("3")])


def test_mixed_line_ends() -> None:
    check(b"data: a\rdata: b\r\ndata: c\n\r\ndata: d\r\r", [ev("a\nb\nc"), ev("d")])


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # were the LF after a chunk-final CR taken for a blank line, this would be two events
    stream = b"data: a\r\ndata: b\r\n\r\n"
    for i in range(len(stream) + 1):
        assert decode([stream[:i], stream[i:]]) == [ev("a\nb")]
    assert decode([b"data: a\r", b"", b"\ndata: b\r", b"\n\r", b"\n"]) == [ev("a\nb")]


def test_cr_then_cr_is_a_blank_line() -> None:
    assert decode([b"data: a\r", b"\r"]) == [ev("a")]


def test_unicode_line_separators_are_not_line_ends() -> None:
    text = "a\u2028b\u2029c\u0085d\x0be\x0cf\x1cg"  # all line breaks for str.splitlines()
    check(f"data: {text}\n\n".encode(), [ev(text)])


# --- BOM ---


def test_bom_stripped_at_start() -> None:
    check(BOM + b"data: x\n\n", [ev("x")])


def test_bom_alone_and_partial_bom() -> None:
    check(BOM, [])
    check(b"\xef\xbbdata: x\n\n", [])  # not a BOM: bytes kept (garbled field name: ignored)
    check(b"\xef\xbb\n\ndata: x\n\n", [ev("x")])


def test_second_bom_is_kept() -> None:
    check(BOM + BOM + b"data: x\n\n", [])  # field name "\ufeffdata": unknown, ignored
    check(BOM + b"data: a\n\n" + BOM + b"data: b\n\n", [ev("a")])
    check(b"data: " + BOM + b"b\n\n", [ev("\ufeffb")])


# --- fields ---


def test_comments_are_ignored() -> None:
    check(b": hello\n:\ndata: a\n: between\ndata: b\n:: x\n\n:only\n\n", [ev("a\nb")])


def test_multiline_data_and_colons_and_spaces() -> None:
    check(b"data: a:b\ndata:  c\ndata:\tt\ndata\ndata:\n\n", [ev("a:b\n c\n\tt\n\n")])


def test_event_type_resets_after_each_event() -> None:
    stream = b"event: a\ndata: 1\n\ndata: 2\n\nevent: b\n\ndata: 3\n\nevent:\ndata: 4\n\n"
    check(stream, [ev("1", "a"), ev("2"), ev("3"), ev("4")])


def test_field_without_colon() -> None:
    check(b"data\n\nevent\ndata: x\n\nid\ndata: y\n\n", [ev(""), ev("x"), ev("y")])


def test_field_names_are_exact() -> None:
    check(b"Data: a\ndata : b\n data: c\nDATA: d\ndatax: e\n\n", [])


def test_unknown_fields_ignored() -> None:
    check(b"foo: bar\ndata: x\nbaz\n\n", [ev("x")])


def test_id_persists_and_resets() -> None:
    stream = b"id: 7\ndata: a\n\ndata: b\n\nid: 8\n\ndata: c\n\nid\ndata: d\n\nid:\ndata: e\n\n"
    check(stream, [ev("a", id="7"), ev("b", id="7"), ev("c", id="8"), ev("d"), ev("e")])


def test_id_with_nul_is_ignored() -> None:
    check(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", [ev("a", id="1"), ev("b", id="1")])
    check(b"data: a\x00b\n\n", [ev("a\x00b")])  # NUL is fine in data


def test_retry() -> None:
    stream = b"retry: 1500\ndata: a\n\ndata: b\n\nretry:0\ndata: c\n\n"
    check(stream, [ev("a", retry=1500), ev("b"), ev("c", retry=0)])


@pytest.mark.parametrize("value", [b"", b"1.5", b"-1", b"+1", b" 15", b"15 ", b"1_000", b"1a", "\u0661\u0662".encode()])
def test_retry_not_only_ascii_digits_is_ignored(value: bytes) -> None:
    check(b"retry: 10\nretry: " + value + b"\ndata: a\n\n", [ev("a", retry=10)])
    check(b"retry: " + value + b"\ndata: a\n\n", [ev("a")])


def test_retry_past_python_int_digit_limit_is_ignored() -> None:
    assert decode([b"retry: " + b"9" * 5000 + b"\ndata: a\n\n"]) == [ev("a")]


def test_empty_data_buffer_not_dispatched() -> None:
    # ... but the id still updates the last event id, and event/retry are reset
    stream = b"event: x\n\nretry: 5\n\nid: 3\n\n\n\n\ndata: a\n\n"
    check(stream, [ev("a", id="3")])


def test_unterminated_event_dropped_at_eof() -> None:
    check(b"data: a\n\ndata: b", [ev("a")])
    check(b"data: a\n\ndata: b\n", [ev("a")])
    check(b"data: a\n\ndata: b\r", [ev("a")])
    check(b"data: a\n\ndata: b\r\n", [ev("a")])


def test_invalid_utf8_replaced() -> None:
    stream = b"event: \xff\ndata: \xfe\xffok\ndata: \xe2\x82\nid: \xc3\n\n"
    check(stream, [ev("\ufffd\ufffdok\n\ufffd", "\ufffd", id="\ufffd")])


def test_multibyte_chars_split_across_chunks() -> None:
    check("event: é\ndata: €𝄞 ok\nid: ✓\n\n".encode(), [ev("€𝄞 ok", "é", "✓")])


def test_flush_ends_the_stream_and_keeps_the_last_id() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"id: 5\ndata: a\n\ndata: b") == [ev("a", id="5")]
    assert dec.flush() == []
    assert dec.feed(BOM + b"data: c\n\n") == [ev("c", id="5")]


# --- the bulk path (runs of one-line `data: ` events) meets everything else ---


def test_canonical_runs_mixed_with_other_events() -> None:
    parts = [f'data: {{"id":"e{i}","text":"héllo {i}"}}\n\n' for i in range(300)]
    parts[100] = "event: done\ndata: x\n\n"
    parts[150] = ": keepalive\n\ndata: y\ndata: z\n\n\n"
    parts[200] = "id: 9\ndata: w\n\n"
    stream = "".join(parts).encode()
    whole = decode([stream])
    assert len(whole) == 300
    assert whole[100] == ev("x", "done") and whole[150] == ev("y\nz") and whole[200] == ev("w", id="9")
    assert whole[299] == ev('{"id":"e299","text":"héllo 299"}', id="9")
    for size in (1, 7, 64, 1000, 4093, 65536):
        assert decode([stream[i : i + size] for i in range(0, len(stream), size)]) == whole
    crlf = stream.replace(b"\n", b"\r\n")
    assert decode([crlf[i : i + 997] for i in range(0, len(crlf), 997)]) == whole


def test_legacy_runs_mixed_with_other_events() -> None:
    frames: list[bytes] = []
    expected: list[Event] = []
    last_id = ""
    for i in range(401):
        if i % 50 == 7:  # not the common shape: comment, retry, id without space, 2 data lines
            frames.append(b": ping\n\nretry: 3000\nid:x%d\nevent: agent_status\ndata: a\ndata: b\n\n" % i)
            last_id = f"x{i}"
            expected.append(ev("a\nb", "agent_status", last_id, 3000))
        elif i % 50 == 19:  # blocks of other shapes between common ones (ending in a blank line)
            frames.append(b": ping\n\nid:y%d\n\n\nevent: x\nretry: 1\n\ndata:no space\n\n" % i)
            last_id = f"y{i}"
            expected.append(ev("no space", id=last_id))
            frames.append(b"id: bad\x00id\nevent: research_update\ndata: {}\n\n\n")
            expected.append(ev("{}", "research_update", last_id))
        elif i % 10 == 3:  # keepalive: a named event without id
            frames.append(b'event: keepalive\ndata: {"timestamp": %d}\n\n' % i)
            expected.append(ev(f'{{"timestamp": {i}}}', "keepalive", last_id))
        else:
            last_id = f"research_update_1760000000.{i}"
            data = f'{{"content": "é {i}"}}'
            frames.append(f"id: {last_id}\nevent: research_update\ndata: {data}\n\n".encode())
            expected.append(ev(data, "research_update", last_id))
    frames.append(b"data:last\n\nid:end\n\n")  # ends in other shapes too
    expected.append(ev("last", id=last_id))
    stream = b"".join(frames)
    for size in (1, 7, 64, 1000, 4093, 65536, len(stream)):
        pieces = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert decode(pieces) == expected
        assert decode(pieces + [b"data: after\n\n"])[-1] == ev("after", id="end")
    crlf = stream.replace(b"\n", b"\r\n")
    assert decode([crlf[i : i + 997] for i in range(0, len(crlf), 997)]) == expected


# --- limits ---


def test_line_limit() -> None:
    ok = b"data: " + b"x" * 94 + b"\n\n"  # a 100-byte line
    check(ok, [ev("x" * 94)], max_line=100)
    for pieces in splits(b"data: " + b"x" * 95 + b"\n\n")[:40]:
        with pytest.raises(ProtocolError, match="line longer than 100 bytes") as info:
            decode(pieces, max_line=100)
        assert info.value.outcome is Outcome.PROTOCOL_ERROR
    with pytest.raises(ProtocolError):  # a comment line counts too
        decode([b": " + b"x" * 200 + b"\n"], max_line=100)
    with pytest.raises(ProtocolError):  # in a chunk of whole lines, after one
        decode([b"data: ok\n\n", b"data: a\n\n: " + b"x" * 200 + b"\n\n"], max_line=100)


def test_huge_line_raises_before_it_is_buffered() -> None:
    max_line, chunk_size = 1 << 20, 1 << 16
    dec = SSEDecoder(max_line=max_line)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            for n in range(50 * 16):  # noqa: B007 - n is read after the loop; a 50 MiB line, fresh 64 KiB chunks, no newline
                dec.feed(b"x" * chunk_size)
                assert sum(map(len, dec._parts)) <= max_line
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == max_line // chunk_size  # raised on the first chunk past the limit
    assert peak < max_line + 4 * chunk_size


def test_line_limit_when_the_line_ends_in_a_later_chunk() -> None:
    dec = SSEDecoder(max_line=1000)
    dec.feed(b"data: " + b"x" * 600)
    with pytest.raises(ProtocolError):
        dec.feed(b"x" * 600 + b"\n\n")


def test_event_limit() -> None:
    check(b"data: 01234\ndata: 5678\n\n", [ev("01234\n5678")], max_event=10)  # exactly 10
    check(b"data: 0123456789\n\n", [ev("0123456789")], max_event=10)
    for stream in (b"data: 01234\ndata: 56789\n\n", b"data: 0123456789a\n\n"):
        for pieces in splits(stream)[:40]:
            with pytest.raises(ProtocolError, match="event data longer than 10 bytes"):
                decode(pieces, max_event=10)


def test_event_limit_many_lines_raises_before_the_blank_line() -> None:
    dec = SSEDecoder(max_event=1000)
    with pytest.raises(ProtocolError):
        for _ in range(1000):
            dec.feed(b"data: 0123456789\n")
    assert sum(map(len, dec._data)) <= 1000


def test_event_limit_in_a_run_of_one_line_events() -> None:
    stream = b"data: ok\n\n" * 50 + b"data: " + b"x" * 11 + b"\n\n" + b"data: ok\n\n" * 50
    with pytest.raises(ProtocolError):
        decode([stream], max_event=10)


# --- random streams against httpx-sse, an independent decoder ---


def httpx_sse_events(pieces: list[bytes]) -> list[Event]:
    """What httpx-sse makes of the stream, normalised to where it should agree with WHATWG.

    Differences from WHATWG, and how the comparison handles each:
    - httpx-sse dispatches on a blank line whenever event, id (even the persisting last id) or
      retry is set, with data "": WHATWG only when a data line came, so such events are dropped here;
    - it reports a missing event type as "" where WHATWG says "message": mapped;
    - it parses retry with int(), which takes signs, spaces, "_" and non-ASCII digits: the streams
      only use retry values made of [0-9a-z], where int() and "ASCII digits only" agree;
    - it works on text and leaves a BOM to whoever decodes the bytes: the harness strips a leading BOM.
    """
    text = codecs.getincrementaldecoder("utf-8")("replace")
    lines, dec = SSELineDecoder(), HttpxSSEDecoder()
    out: list[Event] = []
    has_data = False

    def line(s: str) -> None:
        nonlocal has_data
        sse = dec.decode(s)
        if s:
            has_data |= s.partition(":")[0] == "data"
        else:
            if sse is not None and has_data:
                out.append(Event(sse.event or "message", sse.data, sse.id, sse.retry))
            has_data = False

    stream = b"".join(pieces)
    pos = 3 if stream.startswith(BOM) else 0
    for end in itertools.accumulate(map(len, pieces)):  # the same cuts
        for s in lines.decode(text.decode(stream[pos:end])) if end > pos else ():
            line(s)
        pos = max(pos, end)
    for s in lines.decode(text.decode(b"", final=True)) + lines.flush():
        line(s)
    return out


_unicode = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=8)
_raw = st.binary(max_size=6).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_value = st.one_of(_unicode.map(str.encode), _raw, st.sampled_from([b"", b" ", b":", b": x", b"\x00"]))
_long = _unicode.map(lambda s: (s * 10).encode())  # long enough streams take the regex path


@st.composite
def _line(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from([b"data", b"data", b"data", b"event", b"id", b"retry", b"junk", b""]))
    if name == b"retry":
        value = draw(st.from_regex(rb"\A[0-9a-z]{0,6}\Z"))
    else:
        value = draw(_value)
    forms = [b": ", b":", b""] if name == b"retry" else [b": ", b":", b"", b":  "]  # int(" 1") == 1
    form = draw(st.sampled_from(forms))
    return name if (form == b"" and name) else name + form + value


@st.composite
def _stream(draw: st.DrawFn) -> bytes:
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 2))
        if kind == 0:  # a run of one-line data events (the canonical fast path)
            lines += [b"data: " + draw(_value), b""] * draw(st.integers(1, 4))
        elif kind == 1:  # id / event / data frames (the legacy fast path)
            for _ in range(draw(st.integers(1, 6))):
                lines += [b"id: " + draw(_value)] if draw(st.booleans()) else []
                lines += [b"event: " + draw(_value)] if draw(st.booleans()) else []
                lines += [b"data: " + draw(st.one_of(_value, _long)), b""]
        else:
            lines += draw(st.lists(_line(), max_size=4)) + [b""] * draw(st.integers(0, 2))
    eols = draw(st.lists(st.sampled_from([b"\n", b"\r", b"\r\n"]), min_size=len(lines), max_size=len(lines)))
    if draw(st.booleans()):  # one line end for the whole stream, as real servers do
        eols = [eols[0] if eols else b"\n"] * len(lines)
    body = b"".join(line + eol for line, eol in zip(lines, eols, strict=False))
    if draw(st.booleans()):
        body += draw(_line())  # unterminated last line
    return (BOM if draw(st.booleans()) else b"") + body


@st.composite
def _chunked(draw: st.DrawFn) -> list[bytes]:
    stream = draw(_stream())
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=False)]


@settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_chunked())
def test_random_streams_match_httpx_sse(pieces: list[bytes]) -> None:
    expected = httpx_sse_events(pieces)
    assert decode(pieces) == expected
    assert decode([b"".join(pieces)]) == expected


def over_limits(stream: bytes, max_line: int, max_event: int) -> bool:
    """Independent oracle: has the stream a line (the unterminated last one too) or an event's data
    (dispatched or not) longer than the limits?"""
    stream = stream[3:] if stream.startswith(BOM) else stream
    lines = stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if max(map(len, lines)) > max_line:
        return True
    size = -1  # the data as dispatched: values joined by LF
    for line in lines[:-1]:
        name, _, value = line.partition(b":")
        if not line:
            size = -1
        elif name == b"data":
            size += len(value[1:] if value[:1] == b" " else value) + 1
            if size > max_event:
                return True
    return False


@settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_chunked(), st.integers(3, 40), st.integers(3, 60))
def test_random_streams_limits(pieces: list[bytes], max_line: int, max_event: int) -> None:
    stream = b"".join(pieces)
    if over_limits(stream, max_line, max_event):
        with pytest.raises(ProtocolError):
            decode(pieces, max_line=max_line, max_event=max_event)
    else:
        assert decode(pieces, max_line=max_line, max_event=max_event) == decode([stream])
