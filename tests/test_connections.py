"""How new connections are made: TLS sessions resumed across connections to one origin (as browsers do),
and the addresses of a name taking turns. Real servers on loopback; each answers once and closes, so
every request opens a new connection."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from sseprobe._config import TLSOptions
from sseprobe.wire.http import LeanClient

from .servers import client_tls, raw_server

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
Seen = list[tuple[str | None, bool]]


async def _requests(http: LeanClient, url: str, n: int, tls: TLSOptions | None = None) -> Seen:
    """(address, TLS resumed) of each of ``n`` requests in turn, each on a new connection."""
    seen = []
    for _ in range(n):
        resp = await http.request("GET", url + "/x", tls=tls)
        assert await resp.read() == b"ok"
        resp.release()
        seen.append((resp.address, resp.tls_resumed))
    return seen


def test_a_new_connection_resumes_the_tls_session_of_an_earlier_one() -> None:
    async def go() -> tuple[Seen, Seen]:
        async with raw_server(OK, tls=True) as url, LeanClient(5, 5) as http:
            return await _requests(http, url, 4, client_tls()), await _requests(
                http, url, 3, replace(client_tls(), resume=False)
            )

    resumed, cold = asyncio.run(go())
    assert [r for _, r in resumed] == [False, True, True, True]  # the first handshake is a full one
    assert all(a is not None and a.startswith("127.0.0.1:") for a, _ in resumed)
    assert [r for _, r in cold] == [False, False, False]


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def _two_addresses() -> AsyncIterator[tuple[int, Counter[str]]]:
    """The same answer on 127.0.0.1:P and 127.0.0.2:P, counting connections per address."""
    hits: Counter[str] = Counter()

    def on(host: str) -> Handler:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hits[host] += 1
            try:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(OK)
                await writer.drain()
            finally:
                writer.close()

        return answer

    for _ in range(20):
        first = await asyncio.start_server(on("127.0.0.1"), "127.0.0.1", 0)
        port = first.sockets[0].getsockname()[1]
        try:
            second = await asyncio.start_server(on("127.0.0.2"), "127.0.0.2", port)
        except OSError:  # that port is taken on the second address: another pair
            first.close()
            continue
        try:
            yield port, hits
        finally:
            first.close()
            second.close()
        return
    pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")


def test_new_connections_take_turns_over_the_addresses_of_a_name() -> None:
    async def go(pin: bool) -> tuple[int, Seen, Counter[str]]:
        async with _two_addresses() as (port, hits), LeanClient(5, 5, pin_address=pin) as http:
            # the name's answer as a resolver with two A records gives it (no resolver is configured here)
            http._dns[("multi.test", port)] = (time.monotonic(), [("127.0.0.1", port), ("127.0.0.2", port)])
            return port, await _requests(http, f"http://multi.test:{port}", 6), hits

    port, seen, hits = asyncio.run(go(pin=False))
    assert hits == {"127.0.0.1": 3, "127.0.0.2": 3}
    assert Counter(a for a, _ in seen) == {f"127.0.0.1:{port}": 3, f"127.0.0.2:{port}": 3}
    port, pinned, hits = asyncio.run(go(pin=True))
    assert hits == {"127.0.0.1": 6}
    assert {a for a, _ in pinned} == {f"127.0.0.1:{port}"}


def test_the_plan_carries_the_connection_knobs_into_the_client_and_the_document() -> None:
    import sseprobe

    base = {"flow": "canonical", "url": "https://127.0.0.1:9/", "ca_file": client_tls().ca_file, "quiet": True}
    warm = sseprobe.plan_from(None, base, "run")
    assert warm.cohorts[0].options.tls.resume is True and warm.limits.pin_address is False
    assert warm.config["cohorts"]["canonical"]["tls"]["resume"] is True
    cold = sseprobe.plan_from(None, {**base, "tls_resume": False, "pin_address": True}, "run")
    assert cold.cohorts[0].options.tls.resume is False and cold.limits.pin_address is True
    assert cold.config["cohorts"]["canonical"]["tls"]["resume"] is False
