"""`create_app(settings)`: the FastAPI app. Heavy objects live on `app.state`, made in lifespan.

    app.state.settings    Settings
    app.state.engine      StreamEngine (vLLM in-process)
    app.state.retrieval   Retrieval (embedder + Qdrant) or None when retrieval=false
    app.state.sessions    SessionRegistry of the session API (TTL reaper running)
    app.state.metrics     Metrics (its own Prometheus registry)
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request

from app import errors
from app.metrics import Metrics
from app.routes import chat, sessions, system
from app.session_registry import SessionRegistry
from app.settings import Settings
from engine import EngineConfig, StreamEngine


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        model=settings.model, max_model_len=settings.max_model_len, block_size=settings.block_size,
        kv_cache_gib=settings.kv_cache_gib, cache_dir=settings.cache_dir,
        record_steps=settings.record_steps,
    )


def create_app(settings: Settings | None = None, engine: StreamEngine | None = None,
               retrieval=None) -> FastAPI:
    """Build the app. `engine` / `retrieval` may be passed in already started (tests share one
    engine across servers); the app then uses them and leaves closing them to the caller."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.settings = settings
        app.state.metrics = Metrics()
        app.state.sessions = SessionRegistry(settings.session_ttl_s)
        async with AsyncExitStack() as owned:
            app.state.engine = engine or await owned.enter_async_context(StreamEngine(engine_config(settings)))
            app.state.retrieval = retrieval
            if retrieval is None and settings.retrieval:
                from app.retrieval import Retrieval

                app.state.retrieval = await Retrieval.open(
                    settings.qdrant_url, settings.data_dir, settings.embedding_model, settings.cache_dir
                )
                owned.push_async_callback(app.state.retrieval.close)
            reaper = asyncio.create_task(app.state.sessions.reap_forever())
            try:
                yield
            finally:
                reaper.cancel()
                await asyncio.gather(reaper, return_exceptions=True)
                await app.state.sessions.close()

    app = FastAPI(title="streamrag", version="0.1.0", lifespan=lifespan)
    errors.install(app)
    app.include_router(system.public)
    app.include_router(system.router)
    app.include_router(chat.router)
    app.include_router(sessions.router)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.requests.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    return app
