"""The store: Qdrant collections of chunks, embedded by default, a server when a URL is given.

A location picks the mode:

    ":memory:"           embedded, in this process's memory (tests)
    "http(s)://host:port" a Qdrant server
    any other string     embedded, persisted in that folder (default: <data dir>/qdrant)

qdrant-client's embedded ("local") mode is plain synchronous Python over numpy and SQLite, and
SQLite may refuse a connection used from a thread other than its creator's. So the store owns
one worker thread per embedded client: the client is created on it and every call runs on it.
The event loop only awaits; calls to one embedded store are serialized (they are short: a
brute-force search over a few thousand vectors). A server client is thread-safe, so its calls
run on a small pool and overlap for real.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from qdrant_client import QdrantClient, models

from retrievers.embedder import Distance
from retrievers.errors import RetrievalError
from retrievers.events import Chunk

T = TypeVar("T")
MEMORY = ":memory:"
# Payload keys the store itself reads; every other key is metadata handed through.
TEXT, SOURCE, DOC_ID = "text", "source", "doc_id"
_SERVER_THREADS = 8


class StoreError(RetrievalError):
    """A collection name that is invalid, missing, or made for another embedder."""


@dataclass(frozen=True)
class Point:
    """A chunk as stored: its id (a UUID string), its vector and its payload (text, source, ...)."""

    id: str
    vector: list[float]
    payload: Mapping[str, Any]


class Searcher(Protocol):
    """What the update-mode retrievers need from a store: nearest chunks, best first."""

    async def search(self, name: str, vector: Sequence[float], limit: int) -> list[Chunk]: ...


class QdrantStore:
    """Chunks in Qdrant collections. Open with `await QdrantStore.open(location)`, then `close()`."""

    def __init__(self, client: QdrantClient, executor: ThreadPoolExecutor, location: str) -> None:
        self._client = client
        self._executor = executor
        self.location = location
        self.embedded = not is_url(location)

    @classmethod
    async def open(cls, location: str | Path, *, api_key: str | None = None) -> QdrantStore:
        """Open (and for a folder, create or load) the store at `location`."""
        location = str(location)
        server = is_url(location)
        executor = ThreadPoolExecutor(
            max_workers=_SERVER_THREADS if server else 1, thread_name_prefix="qdrant"
        )
        if server:
            make = functools.partial(QdrantClient, url=location, api_key=api_key)
        elif location == MEMORY:
            make = functools.partial(QdrantClient, location=MEMORY)
        else:  # qdrant-client creates the folder
            make = functools.partial(QdrantClient, path=location)
        try:
            client = await asyncio.get_running_loop().run_in_executor(executor, make)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(client, executor, location)

    async def close(self) -> None:
        """Flush and release the store (an embedded folder is unlocked for the next client)."""
        try:
            await self._call(self._client.close)
        finally:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> QdrantStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def ensure_collection(self, name: str, dim: int, distance: Distance) -> bool:
        """Create `name` for vectors of `dim` and `distance` unless it exists; True if created.

        An existing collection must match, else its vectors and the new ones could not be
        compared: that is an error, not a silent second space.
        """
        return await self._call(self._ensure_collection, name, dim, distance)

    async def collection_names(self) -> list[str]:
        response = await self._call(self._client.get_collections)
        return sorted(collection.name for collection in response.collections)

    async def count(self, name: str) -> int:
        self._check_name(name)
        return (await self._call(self._client.count, name, exact=True)).count

    async def upsert(self, name: str, points: Sequence[Point]) -> None:
        structs = [models.PointStruct(id=p.id, vector=p.vector, payload=dict(p.payload)) for p in points]
        await self._call(self._client.upsert, name, structs, wait=True)

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            selector = models.PointIdsList(points=list(ids))
            await self._call(self._client.delete, name, selector, wait=True)

    async def get(self, name: str, point_id: str) -> Chunk | None:
        """The chunk stored under `point_id` in collection `name`, or None (no such id or collection)."""
        return await self._call(self._get, name, point_id)

    async def drop_collection(self, name: str) -> bool:
        """Delete collection `name` and its chunks; False when there was none."""
        self._check_name(name)
        return await self._call(self._drop, name)

    async def delete_document(self, name: str, doc_id: str) -> int:
        """Delete every chunk of document `doc_id` from collection `name`; how many there were."""
        ids = list(await self.payloads(name, DOC_ID, [doc_id], []))
        await self.delete(name, ids)
        return len(ids)

    async def search(self, name: str, vector: Sequence[float], limit: int) -> list[Chunk]:
        """The `limit` nearest chunks to `vector`, best first, scored by similarity."""
        return await self._call(self._search, name, list(vector), limit)

    async def payloads(
        self, name: str, field: str, values: Iterable[str], keys: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Point id -> the payload `keys` of every point whose payload `field` is one of `values`."""
        return await self._call(self._payloads, name, field, list(values), list(keys))

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # The methods below run on the store's thread.

    def _ensure_collection(self, name: str, dim: int, distance: Distance) -> bool:
        self._check_name(name)
        if self._client.collection_exists(name):
            vectors = self._client.get_collection(name).config.params.vectors
            if not isinstance(vectors, models.VectorParams) or (vectors.size, vectors.distance.value) != (
                dim,
                distance,
            ):
                raise StoreError(
                    f"collection {name!r} holds vectors {vectors!r}, but the embedder makes {dim} "
                    f"dims compared by {distance}: use another --collection or the embedder it was "
                    "built with"
                )
            return False
        params = models.VectorParams(size=dim, distance=models.Distance(distance))
        self._client.create_collection(name, vectors_config=params)
        if not self.embedded:
            # The ingest filters by document; embedded mode scans anyway and ignores indexes.
            self._client.create_payload_index(name, DOC_ID, models.PayloadSchemaType.KEYWORD)
        return True

    def _search(self, name: str, vector: list[float], limit: int) -> list[Chunk]:
        try:
            response = self._client.query_points(name, query=vector, limit=limit, with_payload=True)
        except Exception:
            if not self._client.collection_exists(name):
                raise StoreError(
                    f"collection {name!r} does not exist in {self.location}: create it with "
                    f"`streamrag ingest PATH... --collection {name}`"
                ) from None
            raise
        return [_chunk(point, name) for point in response.points]

    def _get(self, name: str, point_id: str) -> Chunk | None:
        if not self._client.collection_exists(name):
            return None
        try:
            records = self._client.retrieve(name, [point_id], with_payload=True)
        except ValueError:  # not a UUID or an unsigned integer: no point can have it
            return None
        return _chunk(records[0], name) if records else None

    def _drop(self, name: str) -> bool:
        return self._client.collection_exists(name) and self._client.delete_collection(name)

    def _payloads(
        self, name: str, field: str, values: list[str], keys: list[str]
    ) -> dict[str, dict[str, Any]]:
        if not values or not self._client.collection_exists(name):
            return {}
        match = models.Filter(must=[models.FieldCondition(key=field, match=models.MatchAny(any=values))])
        found: dict[str, dict[str, Any]] = {}
        offset = None
        while True:
            records, offset = self._client.scroll(
                name, scroll_filter=match, limit=1024, offset=offset, with_payload=keys
            )
            found.update((str(record.id), dict(record.payload or {})) for record in records)
            if offset is None:
                return found

    @staticmethod
    def _check_name(name: str) -> None:
        if not name or "/" in name:
            raise StoreError(f"collection name {name!r} is invalid: use a non-empty name without '/'")


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def _chunk(point: models.ScoredPoint | models.Record, collection: str) -> Chunk:
    payload = dict(point.payload or {})
    text = str(payload.pop(TEXT, ""))
    source = str(payload.pop(SOURCE, ""))
    payload["collection"] = collection
    score = getattr(point, "score", None)  # a search scores; a lookup by id does not
    return Chunk(str(point.id), text, None if score is None else float(score), source, payload)
