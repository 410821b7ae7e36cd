"""Running the built-in target: in this event loop (tests, demo) or until a signal (``sseprobe target``)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from ._app import app_state, make_app
from ._config import Target, TargetConfig

__all__ = ["running_target", "serve"]


@asynccontextmanager
async def running_target(
    config: TargetConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    access_log: str | Path | None = None,
) -> AsyncIterator[Target]:
    """Run the target in this event loop (port 0: an ephemeral port); stop it on exit.

    Handlers are cancelled when their client leaves, so stalls and open legacy streams free at once.
    """
    app = make_app(config or TargetConfig(), access_log)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=4096).start()
        bound = runner.addresses[0][1]
        vana = app_state(app)
        yield Target(f"http://{f'[{host}]' if ':' in host else host}:{bound}", bound, vana.config, vana.stats)
    finally:
        await runner.cleanup()


def serve(
    config: TargetConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    ready: Callable[[str], None] | None = None,
    access_log: str | Path | None = None,
) -> None:
    """Blocking entry point for ``sseprobe target``: serves until SIGINT/SIGTERM."""
    asyncio.run(_serve_until_signal(config, host, port, ready, access_log))


async def _serve_until_signal(
    config: TargetConfig,
    host: str,
    port: int,
    ready: Callable[[str], None] | None,
    access_log: str | Path | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_target(config, host, port, access_log) as target:
            if ready is not None:
                ready(target.url)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
