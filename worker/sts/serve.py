"""Serving the STS app until SIGINT/SIGTERM, or until its engine fails to load its models."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from worker.sts.server import StsServer


async def serve(server: StsServer, host: str, port: int) -> str | None:
    """Serve; None after a stop signal, else why the engine cannot serve (the caller exits with it)."""
    runner = web.AppRunner(server.app())
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(server.load_failed.wait())}
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return server.engine.readiness() if server.load_failed.is_set() else None
    finally:
        await runner.cleanup()
