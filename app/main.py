"""`create_app(settings)`: the FastAPI app. Heavy objects live on `app.state`, made in lifespan.

    app.state.settings    Settings
    app.state.supervisor  EngineSupervisor: `.engine` is a StreamEngine (vLLM in-process), or a
                          VLLMServersEngine when `settings.vllm_url` is set; restarted if it dies
    app.state.retrieval   Retrieval (embedder + Qdrant) or None when retrieval=false
    app.state.sessions    SessionRegistry of the session API (TTL reaper running)
    app.state.metrics     Metrics (its own Prometheus registry)
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from app import __version__, errors
from app.gatekeeper import Gatekeeper, InFlight
from app.metrics import Metrics
from app.openapi import openapi_document
from app.routes import chat, collections, page, sessions, system, tokens
from app.session_registry import SessionRegistry
from app.settings import Settings
from app.supervisor import EngineSupervisor
from engine import Engine, EngineConfig
from engine.models import generation_defaults


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        model=settings.model, max_model_len=settings.max_model_len, block_size=settings.block_size,
        kv_cache_gib=settings.kv_cache_gib, cache_dir=settings.cache_dir,
        record_steps=settings.record_steps, policy=settings.policy, cpu_cores=settings.cpu_cores,
        busy_poll=settings.busy_poll,
    )


def make_engine(settings: Settings) -> Engine:
    """The engine the settings ask for: vLLM servers when URLs are given, else in-process."""
    if settings.vllm_url:
        from engine.remote import VLLMServersEngine

        # The servers' own flags decide block size and max_model_len; the model folder is
        # still needed here, for the tokenizer and chat template.
        return VLLMServersEngine(settings.vllm_url, model=settings.model, cache_dir=settings.cache_dir)
    from engine.local import StreamEngine

    return StreamEngine(engine_config(settings))


def create_app(settings: Settings | None = None, engine: Engine | None = None,
               retrieval=None) -> FastAPI:
    """Build the app. `engine` / `retrieval` may be passed in already started (tests share one
    engine across servers); the app then uses them and leaves closing them to the caller."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.sessions = SessionRegistry(settings.session_ttl_s, settings.max_sessions)
        async with AsyncExitStack() as owned:
            stop = getattr(app.state, "stop_server", None)  # set by `streamrag serve`
            supervisor = EngineSupervisor(lambda: make_engine(settings), engine, restart=settings.restart,
                                          stop_server=stop)
            await supervisor.start()
            owned.push_async_callback(supervisor.close)
            app.state.supervisor = supervisor
            app.state.generation_defaults = generation_defaults(getattr(supervisor.engine, "model_path", None))
            metrics.watch(lambda: supervisor.engine)
            app.state.retrieval = retrieval
            if retrieval is None and settings.retrieval:
                from app.retrieval import Retrieval

                app.state.retrieval = await Retrieval.open(
                    settings.qdrant_url, settings.data_dir, settings.embedding_model, settings.cache_dir,
                    settings.reranker_model
                )
                owned.push_async_callback(app.state.retrieval.close)
            reaper = asyncio.create_task(app.state.sessions.reap_forever())
            try:
                yield
            finally:
                reaper.cancel()
                await asyncio.gather(reaper, return_exceptions=True)
                await app.state.sessions.close()

    app = FastAPI(title="streamrag", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.draining = asyncio.Event()
    app.state.inflight = InFlight()
    app.state.metrics = metrics = Metrics(app)
    errors.install(app)
    app.include_router(page.router)
    app.include_router(system.public)
    app.include_router(system.router)
    app.include_router(collections.router)
    app.include_router(chat.router)
    app.include_router(sessions.router)
    app.include_router(tokens.router)
    app.include_router(tokens.public)

    app.add_middleware(Gatekeeper, max_body_bytes=settings.max_body_bytes)
    app.openapi = lambda: openapi_document(app)
    return app
