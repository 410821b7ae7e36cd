"""Memory stays bounded whatever a server sends: every body has a stated cap (``sseprobe.wire.body``),
past it the session is a ``protocol_error`` naming the cap, and compressed bodies inflate piece by piece.

The memory bound is measured, not assumed: the process's peak RSS is reset (``/proc/self/clear_refs``)
before each case and read after (``VmHWM``); a growth under 64 MB is a property of the code (measured
3-12 MB; the uncapped client grew by 0.9-2.4 GB on the same answers, and inflating a read's worth at once
130 MB), not of the machine's speed.
"""

from __future__ import annotations

import json
import socket
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from sseprobe.wire.body import MAX_READ_BODY, MAX_STREAM_BODY

from .conftest import in_process
from .servers import Answer, thread_server

MB = 1 << 20
HEALTHY = b'{"status": "healthy", "service": "vana"}'


def _gzip_of_newlines(size: int) -> bytes:
    """``size`` bytes of newlines, gzip-compressed (about 1/1000 of it on the wire)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\n" * MB
    return b"".join(z.compress(block) for _ in range(size // MB)) + z.flush()


BOMB = _gzip_of_newlines(512 * MB)  # 512 MB inflated, about 0.5 MB on the wire


def _send_huge(sock: socket.socket, head: bytes, size: int) -> None:
    sock.sendall(head + f"Content-Length: {size}\r\n\r\n".encode())
    block = b" " * MB
    for _ in range(size // MB):
        sock.sendall(block)


def _send_gzip(sock: socket.socket, ctype: str) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Encoding: gzip\r\n"
    sock.sendall(head.encode() + f"Content-Length: {len(BOMB)}\r\n\r\n".encode() + BOMB)


def _line(head: bytes) -> str:
    return head.split(b"\r\n", 1)[0].decode("latin-1")


def _huge_session_create(sock: socket.socket, head: bytes) -> None:
    line = _line(head)
    if line.startswith("POST") and line.split()[1].endswith("/sessions"):
        _send_huge(sock, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", 300 * MB)
    else:
        sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


def _bomb_stream(sock: socket.socket, head: bytes) -> None:
    if "/run_sse" in _line(head):
        _send_gzip(sock, "text/event-stream")
    else:
        body = b'{"success": true, "session_id": "session_0123456789abcdef"}'
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n")
        sock.sendall(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def _peak_growth(action: Callable[[], None]) -> float:
    """MB the process's peak resident set grew by while ``action`` ran."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("needs Linux /proc")

    def field(name: str) -> float:
        line = next(x for x in status.read_text().splitlines() if x.startswith(name + ":"))
        return int(line.split()[1]) / 1024

    try:
        Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from now
    except OSError:
        pytest.skip("cannot reset the peak RSS here (/proc/self/clear_refs)")
    before = field("VmRSS")
    action()
    return field("VmHWM") - before


@pytest.mark.parametrize(
    ("answer", "cap"),
    [(_huge_session_create, MAX_READ_BODY), (_bomb_stream, MAX_STREAM_BODY)],
    ids=["300 MB session-create answer", "gzip stream of 512 MB of newlines"],
)
def test_a_huge_body_is_a_protocol_error_and_memory_stays_bounded(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], answer: Answer, cap: int
) -> None:
    out = tmp_path / "r.json"
    codes: list[int] = []
    with thread_server(answer) as url:
        argv = ["run", "--flow", "canonical", "--url", url, "-n", "3", "-c", "3", "-w", "1", "-o", str(out)]
        grew = _peak_growth(lambda: codes.append(in_process(capfd, *argv)[0]))
    doc = json.loads(out.read_text())
    cohort = doc["cohorts"]["canonical"]
    assert cohort["outcomes"] == {"protocol_error": 3}, cohort["outcomes"]
    (reason,) = cohort["failure_reasons"]  # the cap is named where the failure is reported
    assert reason.startswith("protocol_error: response body longer than") and f"{cap >> 20} MiB" in reason
    assert codes == [2]  # judged: the service failed every session (never a crash, never 3)
    assert grew < 64, f"peak RSS grew by {grew:.0f} MB"


def test_check_refuses_a_huge_or_bombed_health_answer(capfd: pytest.CaptureFixture[str]) -> None:
    def huge(sock: socket.socket, _head: bytes) -> None:
        _send_huge(sock, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", 300 * MB)

    def bomb(sock: socket.socket, _head: bytes) -> None:
        _send_gzip(sock, "application/json")

    for answer in (huge, bomb):
        results: list[tuple[int, str, str]] = []
        with thread_server(answer) as url:
            grew = _peak_growth(lambda: results.append(in_process(capfd, "check", url)))  # noqa: B023
        code, out, err = results[0]
        assert "Traceback" not in err
        assert "1 MiB" in out + err, out + err  # the health check names the cap it hit
        assert code != 0
        assert grew < 64, f"peak RSS grew by {grew:.0f} MB"


def test_a_body_under_its_cap_still_inflates_whole(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Inflating piece by piece changes nothing for an honest body: 3 MB of SSE text in one gzip read."""
    event = b'data: {"content": {"parts": [{"text": "' + b"x" * 1000 + b'"}]}}\n\n'
    body = zlib.compress(event * 3000)  # zlib-wrapped: "deflate"

    def answer(sock: socket.socket, head: bytes) -> None:
        if "/run_sse" in _line(head):
            sent = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: deflate\r\n"
            sock.sendall(sent + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        else:
            _bomb_stream(sock, head)

    out = tmp_path / "r.json"
    with thread_server(answer) as url:
        _, _, err = in_process(capfd, "run", "--flow", "canonical", "--url", url, "-n", "2", "-w", "1", "-o", str(out))
    assert json.loads(out.read_text())["cohorts"]["canonical"]["outcomes"] == {"ok": 2}, err
