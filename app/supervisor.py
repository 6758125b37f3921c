"""`EngineSupervisor`: the app's engine, watched, restarted when it dies.

    app.state.supervisor.engine     the engine requests use now (replaced on a restart)
    app.state.supervisor.health()   ok, or why not (a dead engine, a restart in progress)

When the engine reports its death (engine/local/engine.py's watchdog), its live sessions have
already ended with `EngineDeadError` (SSE `error` events, 503s). The supervisor then either
restarts it with backoff (1 s, 2 s, 4 s ... 30 s between attempts) or, with `restart=False`
(`streamrag serve --no-restart`), asks the server to stop with exit status 3 so that a process
supervisor restarts the whole server, as vLLM's own server does. An engine handed in by the
caller (tests share one) is never restarted: its owner decides.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
from collections.abc import Callable

from engine import Engine, Health

log = logging.getLogger("streamrag.supervisor")
EXIT_ENGINE_DEAD = 3
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


class EngineSupervisor:
    def __init__(self, make_engine: Callable[[], Engine] | None, engine: Engine | None = None,
                 restart: bool = True, stop_server: Callable[[], None] | None = None) -> None:
        """`make_engine` builds a fresh engine (owned: started, restarted and closed here);
        or `engine`, already started and owned by the caller. `stop_server` asks the server to
        shut down gracefully (default: SIGTERM to this process)."""
        self._stop_server = stop_server or (lambda: os.kill(os.getpid(), signal.SIGTERM))
        self._make = make_engine
        self.engine: Engine | None = engine
        self._owned = engine is None
        self._restart = restart
        self._restarting: asyncio.Task | None = None
        self.restarts = 0
        self.exit_code = 0

    async def start(self) -> None:
        if self._owned:
            self.engine = self._make()
            await self.engine.start()
        self._watch(self.engine)

    async def close(self) -> None:
        if self._restarting is not None:
            self._restarting.cancel()
            await asyncio.gather(self._restarting, return_exceptions=True)
        if self._owned and self.engine is not None:
            await self.engine.close()

    def health(self) -> Health:
        if self._restarting is not None:
            return Health(False, f"restarting the engine: {self.engine.health().reason}")
        return self.engine.health()

    def _watch(self, engine: Engine) -> None:
        on_death = getattr(engine, "on_death", None)
        if on_death is not None:
            on_death(self._died)

    def _died(self, reason: str) -> None:
        log.error("engine died: %s", reason)
        if not self._owned:
            return
        if not self._restart:
            self.exit_code = EXIT_ENGINE_DEAD
            self._stop_server()  # a graceful shutdown; `streamrag serve` then exits with 3
            return
        if self._restarting is None:
            self._restarting = asyncio.get_running_loop().create_task(self._restart_loop())

    async def _restart_loop(self) -> None:
        dead = self.engine
        await dead.close()  # frees what is left of the dead engine (its processes, its ledger)
        for attempt in itertools.count():
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            fresh = self._make()
            try:
                await fresh.start()
            except Exception:
                log.exception("engine restart %d failed", attempt + 1)
                await fresh.close()
                continue
            self.engine = fresh
            self.restarts += 1
            self._watch(fresh)
            log.warning("engine restarted (restart %d)", self.restarts)
            self._restarting = None
            return
