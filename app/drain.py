"""Graceful shutdown: live streams get a final event, then the engine stops, then the process exits.

    first SIGTERM / SIGINT   `app.state.draining` is set: new requests get 503; every running
                             generation ends now with a final `error` event (code
                             "server_shutting_down") and `[DONE]`, or a 503 if its headers were
                             not sent yet (app/responses.py). Once no request is in flight, or
                             `drain_s` has passed, uvicorn stops: connections close, the lifespan
                             aborts the sessions left and stops the engine.
    second SIGTERM / SIGINT  exit at once (vLLM's engine process dies with us: engine/local/lifeline.py)

Why our own: uvicorn waits for open connections before the app hears of the shutdown, and
sse-starlette's own drain cuts streams without a final event; clients should learn why.
"""

from __future__ import annotations

import asyncio
import logging
import os

import uvicorn
from fastapi import FastAPI

log = logging.getLogger("streamrag.drain")


class DrainingServer(uvicorn.Server):
    def __init__(self, app: FastAPI, host: str, port: int, drain_s: float) -> None:
        super().__init__(uvicorn.Config(app, host=host, port=port, log_level="info"))
        self.app = app
        self.drain_s = drain_s
        self._drain: asyncio.Task | bool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        app.state.stop_server = self.stop  # the supervisor's --no-restart exit goes through here too

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def stop(self) -> None:
        """Begin a graceful shutdown (as a first SIGTERM does); safe from a signal handler."""
        if self._drain is None and self._loop is not None:
            self._drain = True  # placeholder until the task exists: a second call is a second signal
            self._loop.call_soon_threadsafe(self._begin)

    def _begin(self) -> None:
        self._drain = self._loop.create_task(self._drain_then_exit())

    def handle_exit(self, sig: int, frame) -> None:
        if self._drain is not None:  # the second signal: no more waiting
            log.warning("second signal: exiting now")
            os._exit(128 + int(sig))
        log.info("shutting down: draining live streams (at most %.0f s)", self.drain_s)
        self.stop()

    async def _drain_then_exit(self) -> None:
        state = self.app.state
        state.draining.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_s
        while state.inflight.count > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self.should_exit = True
