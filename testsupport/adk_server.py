"""A real ``adk api_server`` (google-adk) serving the scripted agent in testsupport/adk_agents, and a
blocking raw-socket client to hold sseprobe's latencies against.

The server runs in its own process on 127.0.0.1, with in-memory session and artifact services by
default (no files written next to the agent), and is stopped when the ``with`` block ends. The raw client
sends the same two requests sseprobe's canonical flow sends (ADK-style session create, then
``POST /run_sse``) and stamps ``perf_counter()`` around ``sendall``/``recv``: the oracle.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .ports import unclaimed_port

AGENTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "adk_agents")
APP = "scripted"  # the agent package in AGENTS_DIR


def adk_command() -> list[str] | None:
    """The ``adk`` CLI of this interpreter's environment, or None when google-adk is not installed."""
    exe = os.path.join(os.path.dirname(sys.executable), "adk")
    if os.path.exists(exe):
        return [exe]
    found = shutil.which("adk")
    return [found] if found else None


def _prctl() -> object:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # libc, looked up once, in the parent
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl() if sys.platform == "linux" else None


def die_with_parent() -> None:
    """In a child process between fork and exec: SIGTERM when the test process dies, even by SIGKILL,
    so a killed test run leaves no server or load behind (Linux; elsewhere the ``with`` block's end).
    Only a C call here: nothing that takes a lock or starts a process in the forked child."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # type: ignore[operator]  # 1: PR_SET_PDEATHSIG


def _wait_ready(url: str, proc: subprocess.Popen[bytes], within: float) -> None:
    """Until ``/list-apps`` names the scripted agent; raises if the server died or never came up."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"adk api_server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/list-apps", timeout=2) as resp:
                if APP in json.loads(resp.read()):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"adk api_server did not answer /list-apps within {within:g}s")


@contextmanager
def adk_api_server(local_storage: bool = False, startup_s: float = 90.0) -> Iterator[str]:
    """``adk api_server`` on a free 127.0.0.1 port; yields its base URL; stopped on exit.

    ``local_storage``: ADK's default session storage (a SQLite file per agent, written next to it,
    so the agents are served from a temporary copy) instead of in-memory sessions."""
    cmd = adk_command()
    if cmd is None:
        raise RuntimeError("google-adk is not installed (pip install -e '.[test]')")
    with tempfile.TemporaryDirectory(prefix="sseprobe-adk-") as tmp:
        if local_storage:
            agents = shutil.copytree(AGENTS_DIR, os.path.join(tmp, "agents"))
            storage = ["--use_local_storage"]
        else:
            agents = AGENTS_DIR
            storage = ["--session_service_uri", "memory://", "--artifact_service_uri", "memory://"]
        port = unclaimed_port()
        args = ["api_server", "--host", "127.0.0.1", "--port", str(port), *storage, "--log_level", "warning", agents]
        proc = subprocess.Popen(
            [*cmd, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc, startup_s)
            yield url
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``grace_s``: a server started by a test always ends."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# --- the raw-socket oracle ---------------------------------------------------------------------


@dataclass(frozen=True)
class RawTimes:
    """Milliseconds from the ``/run_sse`` request's ``sendall`` to its response head, and to the
    first byte of its first ``data:`` line; ``events``: ``data:`` lines in the whole stream;
    ``last_text``: the first text part of the last event."""

    headers_ms: float
    first_data_ms: float
    events: int
    last_text: str


def _request(method: str, path: str, host: str, body: bytes, accept: str) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _read_head(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """(head, the bytes after it) once the blank line after the headers has come."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the response head")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("no Content-Length on the session create response")


def raw_session(url: str, message: str, app: str = APP, reuse: bool = True) -> RawTimes:
    """One canonical session with a blocking socket: ``POST .../sessions/{id}`` then ``POST /run_sse``
    (on the same kept-alive connection when ``reuse``, as sseprobe does, else on a new one)."""
    authority = url.removeprefix("http://").rstrip("/")
    host, _, port = authority.rpartition(":")
    user, session = f"raw-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    create = _request("POST", f"/apps/{app}/users/{user}/sessions/{session}", authority, b"{}", "application/json")
    run_body = json.dumps(
        {
            "appName": app,
            "userId": user,
            "sessionId": session,
            "newMessage": {"role": "user", "parts": [{"text": message}]},
            "streaming": True,
        },
        separators=(",", ":"),
    ).encode()
    run = _request("POST", "/run_sse", authority, run_body, "text/event-stream")
    first = socket.create_connection((host, int(port)))
    try:
        first.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first.sendall(create)
        head, rest = _read_head(first, b"")
        need = _content_length(head) - len(rest)
        while need > 0:
            data = first.recv(65536)
            if not data:
                raise ConnectionError("closed mid-body")
            need -= len(data)
        sock = first if reuse else socket.create_connection((host, int(port)))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _stream(sock, run)
        finally:
            if sock is not first:
                sock.close()
    finally:
        first.close()


def _stream(sock: socket.socket, request: bytes) -> RawTimes:
    """Send ``/run_sse`` and read its chunked stream to the last chunk, stamping head and first data."""
    t0 = time.perf_counter()
    sock.sendall(request)
    head, body = _read_head(sock, b"")
    headers_at = time.perf_counter()
    if not head.startswith(b"HTTP/1.1 200"):
        status_line = head.split(b"\r\n", 1)[0]
        raise RuntimeError(f"run_sse answered {status_line!r}")
    first_at = time.perf_counter() if b"data:" in body else None
    while not body.endswith(b"0\r\n\r\n"):
        data = sock.recv(65536)
        if not data:
            break
        if first_at is None and b"data:" in body[-5:] + data:
            first_at = time.perf_counter()
        body += data
    if first_at is None:
        raise RuntimeError("run_sse sent no data: line")
    return RawTimes((headers_at - t0) * 1000.0, (first_at - t0) * 1000.0, body.count(b"data:"), _last_text(body))


def _last_text(body: bytes) -> str:
    """The first text part of the stream's last ``data:`` JSON with content (framing lines skipped)."""
    for line in reversed(body.split(b"\n")):
        if line.startswith(b"data: "):
            try:
                parts = json.loads(line[6:])["content"]["parts"]
            except (ValueError, KeyError, TypeError):
                continue
            return str(parts[0].get("text", "")) if parts else ""
    return ""
