"""A real uvicorn server on 127.0.0.1 serving the app, sharing the session's engine."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn

from app.main import create_app
from app.retrieval import Retrieval
from app.settings import Settings

API_KEY = "test-key"


async def start_server(app) -> tuple[uvicorn.Server, asyncio.Task, str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # surfaces a start-up error
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}"


async def stop_server(server: uvicorn.Server, task: asyncio.Task) -> None:
    server.should_exit = True
    await asyncio.wait_for(task, timeout=30)


@pytest.fixture(scope="session")
async def app_server(engine, embedder, reference_store):
    """Base URL of the app (tiny model, retrieval over the reference corpus, no API key)."""
    store, _ = reference_store
    settings = Settings(model="tiny", session_ttl_s=60, max_tokens_default=16)
    app = create_app(settings, engine=engine, retrieval=Retrieval(store, embedder))
    server, task, url = await start_server(app)
    yield url
    await stop_server(server, task)


@pytest.fixture(scope="session")
async def keyed_server(engine):
    """A second app on the same engine, with an API key and a short session TTL."""
    settings = Settings(model="tiny", api_key=API_KEY, retrieval=False, session_ttl_s=0.5)
    server, task, url = await start_server(create_app(settings, engine=engine))
    yield url
    await stop_server(server, task)


@pytest.fixture(scope="session")
async def capped_server(engine):
    """An app on the same engine that takes at most three open sessions."""
    settings = Settings(model="tiny", retrieval=False, max_sessions=3)
    server, task, url = await start_server(create_app(settings, engine=engine))
    yield url
    await stop_server(server, task)


@pytest.fixture(scope="session")
async def guarded_server(engine):
    """An app on the same engine with an API key that /metrics requires too."""
    settings = Settings(model="tiny", retrieval=False, api_key=API_KEY, metrics_auth=True)
    server, task, url = await start_server(create_app(settings, engine=engine))
    yield url
    await stop_server(server, task)
