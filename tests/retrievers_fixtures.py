"""Fixtures of the retrievers tests: the real embedding model, real corpora, embedded Qdrant.

The model loads once per session; each corpus is embedded once per session and store kind, so
the suite pays for embedding about 150 chunks in all. Corpora are real topics of the Python
reference written by `write_python_docs`, never hand-made text.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from retrievers.corpus import write_python_docs
from retrievers.embedder import Embedder
from retrievers.events import Chunk
from retrievers.ingest import IngestReport, ingest
from retrievers.store import MEMORY, QdrantStore

# Statements and their close neighbours: a question about one must beat the others.
REFERENCE_TOPICS = [
    *("assert", "async", "await", "break", "class", "context-managers", "continue", "del", "exceptions"),
    *("for", "function", "global", "if", "import", "lambda", "nonlocal", "pass", "raise", "return"),
    *("try", "while", "with", "yield"),
]
SMALL_TOPICS = ("for", "try", "with")
COLLECTION = "python-docs"
# Set to a Qdrant server's URL to run the store tests against it as well.
SERVER_ENV = "STREAMRAG_TEST_QDRANT_URL"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder.load()


@pytest.fixture(scope="session")
def reference_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus") / "python-docs"
    write_python_docs(folder, REFERENCE_TOPICS)
    return folder


@pytest.fixture(scope="session")
def small_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("small") / "python-docs"
    write_python_docs(folder, SMALL_TOPICS)
    return folder


@pytest.fixture(scope="session")
async def reference_store(
    embedder: Embedder, reference_docs: Path
) -> AsyncIterator[tuple[QdrantStore, IngestReport]]:
    """The reference topics ingested into an in-memory store, collection `python-docs`."""
    store = await QdrantStore.open(MEMORY)
    report = await ingest(
        [reference_docs], collection=COLLECTION, store=store, embedder=embedder, progress=False
    )
    yield store, report
    await store.close()


def store_locations() -> list[str]:
    """The kinds of store every store test runs on: memory, a folder, a server if one is given."""
    locations = [MEMORY, "path"]
    if os.environ.get(SERVER_ENV):
        locations.append(os.environ[SERVER_ENV])
    return locations


@pytest.fixture(params=store_locations())
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QdrantStore]:
    location = str(tmp_path / "qdrant") if request.param == "path" else request.param
    store = await QdrantStore.open(location)
    yield store
    await store.close()


class DelayedStore:
    """A real store whose searches take a chosen extra time per collection name.

    The only way to make one shard or collection reliably slower than another on one machine.
    `aliases` lets two names search the same real collection at different speeds.
    """

    def __init__(
        self, store: QdrantStore, delays: dict[str, float], aliases: dict[str, str] | None = None
    ) -> None:
        self.store = store
        self.delays = delays
        self.aliases = aliases or {}
        self.finished: dict[str, float] = {}

    async def search(self, name: str, vector: Sequence[float], limit: int) -> list[Chunk]:
        await asyncio.sleep(self.delays.get(name, 0.0))
        result = await self.store.search(self.aliases.get(name, name), vector, limit)
        self.finished[name] = time.monotonic()
        return result


class _Pages(BaseHTTPRequestHandler):
    """/text?delay=S: plain text; /html?delay=S: an HTML page; anything else: 404."""

    def do_GET(self) -> None:  # the name http.server calls
        path, _, query = self.path.partition("?")
        params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        time.sleep(float(params.get("delay", "0")))
        if path == "/text":
            body, kind = f"Plain text page for {params.get('q', '')}.\n\nA second paragraph.", "text/plain"
        elif path == "/html":
            body = (
                "<html><head><title>t</title><script>var x;</script></head>"
                "<body><h1>Heading</h1><p>Body text.</p></body></html>"
            )
            kind = "text/html; charset=utf-8"
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: pytest would show every request


@pytest.fixture(scope="session")
def http_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving `_Pages`; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
