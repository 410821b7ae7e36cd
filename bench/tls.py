"""Benchmark 6: https next to http, on kept-alive connections; and one long stream over each.

A raw asyncio stream server (its own process, so the clients are what is measured) listens twice: plain
http and https, with a certificate for 127.0.0.1 signed by a throwaway CA the bench makes with trustme.
Every request gets one chunked ``text/event-stream`` response: 4 events, the last ``event: done``, then
the terminating chunk (keep-alive); ``/bulk`` gets the decoder benchmark's canonical stream instead.

Per-session figure: client CPU (user + system of the client's process) per session, ``concurrency``
sessions in flight, each client in a fresh process. Every client first runs one session per slot, so its
connections (and TLS handshakes) are made before the clock starts; the figure is the kept-alive cost:

- ``sseprobe``: ``run_session`` (generic flow, complete on ``done``) through ``make_client``, the engine's
  client, ``concurrency`` tasks each running sessions back to back;
- ``aiohttp``: the same sessions, the same code, on an aiohttp ClientSession behind sseprobe's transport
  protocol (an adapter of ~40 lines here): what sseprobe's https sessions ran on before its own client
  spoke TLS, so the difference is the transport alone;
- ``locust``: Locust 2.47 FastHttpUser (geventhttpclient), ``iter_lines`` over the stream, ``-u 20``
  (``LOCUST_USERS``: more https users stall it), CPU from its test start to stop (its connections are made
  in the first sessions and kept).

Stream figure: one session reading the ``/bulk`` stream to its end; events per CPU second of the client.

Workers: python -m bench.tls server CERT_DIR EVENTS | session TOOL URL CONCURRENCY SESSIONS CA_FILE
         | stream URL EVENTS CA_FILE
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._util import PY, ROOT, emit, event_loop_run

EVENTS_PER_SESSION = 4
# Locust's users: at 50 or more https users on this bench its streams stall (2-7 sessions in 4 s, each
# ~5 s, http unaffected); at 20 they flow. Its CPU per session is measured there, for http and https alike.
LOCUST_USERS = 20
_SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"


def _session_body() -> bytes:
    events = [b'data: {"text": "token %d", "partial": true}\n\n' % i for i in range(EVENTS_PER_SESSION - 1)]
    events.append(b'event: done\ndata: {"status": "completed"}\n\n')
    return b"".join(b"%x\r\n" % len(e) + e + b"\r\n" for e in events) + b"0\r\n\r\n"


# --- the server --------------------------------------------------------------------------------------


class _Stream(asyncio.Protocol):
    session = _SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _session_body()
    bulk = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:  # requests carry no body here
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            bulk = b" /bulk" in head[:64]
            self.t.write(_SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + self.bulk if bulk else self.session)


async def _serve(cert_dir: str, events: int) -> None:
    from .bulk_server import build

    _Stream.bulk, _ = build("canonical", events)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(cert_dir, "server.pem"))
    loop = asyncio.get_running_loop()
    plain = await loop.create_server(_Stream, "127.0.0.1", 0, backlog=1024)
    tls = await loop.create_server(_Stream, "127.0.0.1", 0, backlog=1024, ssl=ctx)
    ports = [s.sockets[0].getsockname()[1] for s in (plain, tls)]
    sys.stderr.write(f"bench tls server listening on http://127.0.0.1:{ports[0]} https://127.0.0.1:{ports[1]}\n")
    sys.stderr.flush()
    await asyncio.gather(plain.serve_forever(), tls.serve_forever())


@contextmanager
def server(events: int) -> Iterator[tuple[str, str, str]]:
    """The stream server in its own process: yields (http URL, https URL, CA file)."""
    import trustme

    with tempfile.TemporaryDirectory() as tmp:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(os.path.join(tmp, "ca.pem"))
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(os.path.join(tmp, "server.pem"))
        proc = subprocess.Popen(
            [PY, "-m", "bench.tls", "server", tmp, str(events)], stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            if "listening on" not in line:
                raise RuntimeError(f"tls server did not start: {line}{proc.stderr.read()[:2000]}")
            http_url, https_url = line.split()[-2:]
            yield http_url, https_url, os.path.join(tmp, "ca.pem")
        finally:
            proc.terminate()
            proc.wait(10)


# --- the clients ---------------------------------------------------------------------------------------


async def _slots(one: Any, concurrency: int, sessions: int) -> tuple[int, float]:
    """A warm-up session per slot (connections made), then ``sessions`` sessions: (ok, CPU seconds)."""
    await asyncio.gather(*(one() for _ in range(concurrency)))
    left = [sessions]
    ok = [0]

    async def slot() -> None:
        while left[0] > 0:
            left[0] -= 1
            good = await one()  # awaited first: `ok[0] += await ...` would read ok[0] before the await
            ok[0] += good

    c0 = time.process_time()
    await asyncio.gather(*(slot() for _ in range(concurrency)))
    return ok[0], time.process_time() - c0


class _AiohttpResponse:
    """aiohttp's response behind sseprobe's Response protocol."""

    tcp_ms = tls_ms = None
    head_arrival = 0.0  # no kernel stamps: the head is stamped when read

    def __init__(self, resp: Any, ready_at: float) -> None:
        self._resp, self.status, self.headers, self.ready_at = resp, resp.status, resp.headers, ready_at

    @property
    def content_type(self) -> str:
        return str(self._resp.content_type)

    @property
    def cookies(self) -> Any:
        return self._resp.cookies

    async def consume(self, sink: Any) -> bool:
        while chunk := await self._resp.content.readany():
            if sink(chunk):
                return True
        return False

    async def read(self) -> bytes:
        return bytes(await self._resp.read())

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        self._resp.close()

    async def __aenter__(self) -> _AiohttpResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class _AiohttpTransport:
    """aiohttp's ClientSession behind sseprobe's Transport protocol: the same session code on aiohttp's
    client, as sseprobe's https sessions ran before its own client spoke TLS (head deadline by
    asyncio.timeout, as that path had it)."""

    receive_lag = 0.0  # aiohttp gives no kernel stamps: bytes are stamped when read

    def __init__(self, http: Any) -> None:
        self._http = http
        self.loop = asyncio.get_running_loop()

    async def request(self, method: str, url: str, *, data: Any = None, headers: Any = None, **kw: Any) -> Any:
        async with asyncio.timeout(kw.get("head_timeout")):
            resp = await self._http.request(method, url, data=data, headers=headers)
        return _AiohttpResponse(resp, time.perf_counter())

    async def close(self) -> None:
        await self._http.close()


async def _session_loop(transport: Any, url: str, ca_file: str, concurrency: int, sessions: int) -> tuple[int, float]:
    from sseprobe._config import FlowOptions, Limits, Timeouts, TLSOptions
    from sseprobe._outcomes import Outcome
    from sseprobe._record import SessionRecord
    from sseprobe.wire.session import run_session

    timeouts, limits = Timeouts(connect=10, idle=30, session=60), Limits()
    opts = FlowOptions(flow="generic", url=url + "/sse", complete_on="done", tls=TLSOptions(ca_file=ca_file))

    async def one() -> int:
        rec = SessionRecord("bench", 0, scheduled=time.perf_counter())
        await run_session(transport, opts, timeouts, limits, rec)
        return int(rec.outcome == Outcome.OK and rec.events == EVENTS_PER_SESSION)

    return await _slots(one, concurrency, sessions)


async def _sseprobe(url: str, concurrency: int, sessions: int, ca_file: str) -> tuple[int, float]:
    from sseprobe._config import Limits, Timeouts
    from sseprobe.load.engine import make_client

    async with make_client(Timeouts(connect=10, idle=30, session=60), Limits(), time.perf_counter) as http:
        return await _session_loop(http, url, ca_file, concurrency, sessions)


async def _aiohttp(url: str, concurrency: int, sessions: int, ca_file: str) -> tuple[int, float]:
    import aiohttp

    ctx = ssl.create_default_context(cafile=ca_file)
    connector = aiohttp.TCPConnector(limit=0, ssl=ctx if url.startswith("https") else False, ttl_dns_cache=300)
    http = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30),
    )
    transport = _AiohttpTransport(http)
    try:
        return await _session_loop(transport, url, ca_file, concurrency, sessions)
    finally:
        await transport.close()


def _locust(url: str, concurrency: int, sessions: int) -> tuple[int, float]:
    """Locust runs for a time, not a count: long enough for about ``sessions`` at its own pace."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "locust.json")
        seconds = max(5.0, sessions / 2500.0)
        cmd = [PY, "-m", "locust", "-f", os.path.join(ROOT, "bench", "locustfile_stream.py"), "--headless"]
        cmd += ["--only-summary", "-u", str(concurrency), "-r", str(concurrency), "-t", f"{seconds:g}s"]
        cmd += ["--host", url, "--loglevel", "WARNING", "--stop-timeout", "0"]
        r = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 120, cwd=tmp, env={**os.environ, "BENCH_OUT": out}
        )
        if not os.path.exists(out):
            raise RuntimeError(f"locust wrote no result ({r.returncode}): {r.stderr[-2000:]}")
        with open(out) as f:
            doc = json.load(f)
    return int(doc["ok"]), float(doc["cpu_s"])


def session_worker(tool: str, url: str, concurrency: int, sessions: int, ca_file: str) -> dict[str, Any]:
    if tool == "locust":
        ok, cpu = _locust(url, LOCUST_USERS, sessions)
    else:
        fn = {"sseprobe": _sseprobe, "aiohttp": _aiohttp}[tool]
        ok, cpu = event_loop_run(fn(url, concurrency, sessions, ca_file))
        if ok != sessions:
            raise SystemExit(f"{tool}: {ok} good sessions of {sessions}")
    return {"tool": tool, "ok": ok, "cpu_s": cpu, "cpu_ms_per_session": cpu / ok * 1000.0}


def stream_worker(url: str, events: int, ca_file: str) -> dict[str, Any]:
    """One sseprobe session over the whole /bulk stream: events per CPU second."""
    from sseprobe._config import FlowOptions, Limits, Timeouts, TLSOptions
    from sseprobe._record import SessionRecord
    from sseprobe.load.engine import make_client
    from sseprobe.wire.session import run_session

    async def go() -> tuple[int, float]:
        timeouts, limits = Timeouts(connect=10, idle=60, session=600), Limits()
        opts = FlowOptions(flow="generic", url=url + "/bulk", tls=TLSOptions(ca_file=ca_file))
        async with make_client(timeouts, limits, time.perf_counter) as http:
            rec = SessionRecord("bulk", 0, scheduled=time.perf_counter())
            c0 = time.process_time()
            await run_session(http, opts, timeouts, limits, rec)
            return rec.events, time.process_time() - c0

    n, cpu = event_loop_run(go())
    if n != events:
        raise SystemExit(f"stream: {n} events of {events}")
    return {"events": n, "cpu_s": cpu, "ev_per_cpu_s": n / cpu}


if __name__ == "__main__":
    if sys.argv[1] == "server":
        try:
            asyncio.run(_serve(sys.argv[2], int(sys.argv[3])))
        except KeyboardInterrupt:
            pass
    elif sys.argv[1] == "session":
        emit(session_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]))
    elif sys.argv[1] == "stream":
        emit(stream_worker(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
