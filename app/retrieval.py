"""`Retrieval`: the app's embedder and Qdrant store, and the context streams built on them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.errors import APIError, not_found
from app.schemas import RetrievalSpec
from retrievers import (
    ContextStream,
    CrossEncoder,
    Document,
    Embedder,
    EmbedderConfig,
    QdrantStore,
    StagedRetriever,
    data_dir,
    distinct,
    ingest_documents,
    qdrant_path,
    stream_sources,
)


class Retrieval:
    """Opened in the app's lifespan; `stream()` turns a request's spec into a context stream."""

    def __init__(self, store: QdrantStore, embedder: Embedder, reranker: CrossEncoder | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.reranker = reranker

    @classmethod
    async def open(cls, qdrant_url: str | None, data: str | None, embedding_model: str | None,
                   cache: str | None, reranker_model: str | None = None) -> Retrieval:
        config = EmbedderConfig(cache_dir=Path(cache) if cache else None)
        if embedding_model:
            config = EmbedderConfig(model=embedding_model, cache_dir=config.cache_dir)
        embedder = await asyncio.to_thread(Embedder.load, config)
        reranker = await asyncio.to_thread(CrossEncoder.load, reranker_model) if reranker_model else None
        location = qdrant_url or qdrant_path(Path(data) if data else data_dir())
        return cls(await QdrantStore.open(location), embedder, reranker)

    async def close(self) -> None:
        await self.store.close()

    async def check_collection(self, name: str, param: str) -> None:
        if name not in await self.store.collection_names():
            raise not_found("collection", name, param)

    async def stream(self, spec: RetrievalSpec, question: str) -> ContextStream:
        """Update mode: staged rankings (dense as each query's search returns, then hybrid with
        BM25, then reranked when a reranker is loaded) over a pool of 4 x `top_k` candidates.
        Append mode: each query's hits appended as its search returns. Either way without
        repeated text: `distinct` drops near-equal passages and keeps `top_k`."""
        await self.check_collection(spec.collection, "retrieval.collection")
        if spec.mode == "update":
            retriever = StagedRetriever(self.store, self.embedder, spec.collection, pool=4 * spec.top_k,
                                        reranker=self.reranker)
            return distinct(retriever.stream(question, spec.queries), spec.top_k)
        candidates = 2 * spec.top_k
        queries = list(dict.fromkeys([question, *spec.queries]))
        vectors = await self.embedder.aembed(queries)

        def search(vector):
            return lambda: self.store.search(spec.collection, vector, candidates)

        jobs = {f"{spec.collection}: {q}": search(v) for q, v in zip(queries, vectors)}
        return distinct(stream_sources(jobs, mode="append"), spec.top_k)

    async def add_documents(self, collection: str, documents: list[Document]) -> dict:
        if not documents:
            raise APIError(400, "documents: empty", param="documents")
        report = await ingest_documents(documents, collection=collection, store=self.store,
                                        embedder=self.embedder, progress=False)
        return {"collection": collection, "documents": report.documents, "chunks": report.chunks,
                "embedded": report.embedded, "unchanged": report.unchanged}
