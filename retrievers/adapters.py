"""Adapters: the retrievers users already have, run concurrently as one context stream.

Any LlamaIndex retrievers (`BaseRetriever.aretrieve(question) -> list[NodeWithScore]`) or LangChain
retrievers (`BaseRetriever.ainvoke(question) -> list[Document]`) are started together and
streamed like any other sources:

- mode="append" (default): each retriever's results are appended as it finishes;
- mode="update": each time one finishes, the reciprocal-rank fusion of all results so far is
  emitted as an `Update` (top `k`).

A retriever that raises or misses `timeout` becomes an `Error` event named after it. The
frameworks are only duck-typed here (their classes are imported for type checking alone), so
importing `retrievers` does not pay for importing LlamaIndex or LangChain.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from retrievers.chunking import content_id
from retrievers.events import Chunk, ContextStream, Mode
from retrievers.fusion import reciprocal_rank_fusion
from retrievers.sources import Merge, stream_sources

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever as LangChainRetriever
    from llama_index.core.base.base_retriever import (
        BaseRetriever as LlamaIndexRetriever,
    )
    from llama_index.core.schema import NodeWithScore

R = TypeVar("R")
# Metadata keys frameworks commonly use for a document's origin, most precise first.
_SOURCE_KEYS = ("source", "file_path", "url", "file_name")


class _Adapter(Generic[R]):
    def __init__(
        self,
        retrievers: Mapping[str, R] | Sequence[R],
        *,
        mode: Mode = "append",
        k: int = 5,
        rrf_k: int = 60,
        timeout: float | None = None,
    ) -> None:
        if not isinstance(retrievers, Mapping):
            # Unnamed retrievers are named by class and position, e.g. "VectorIndexRetriever#0".
            retrievers = {f"{type(r).__name__}#{index}": r for index, r in enumerate(retrievers)}
        if not retrievers:
            raise ValueError("retrievers is empty: give at least one retriever")
        if mode not in ("append", "update"):
            raise ValueError(f"mode must be 'append' or 'update', got {mode!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1 (chunks in an update), got {k}")
        self.retrievers = dict(retrievers)
        self.mode: Mode = mode
        self.merge: Merge | None = (
            functools.partial(reciprocal_rank_fusion, k=k, rrf_k=rrf_k) if mode == "update" else None
        )
        self.timeout = timeout

    async def stream(self, question: str) -> ContextStream:
        jobs = {name: self._job(name, retriever, question) for name, retriever in self.retrievers.items()}
        # aclosing: a consumer that stops early cancels the retrievers still running.
        async with aclosing(
            stream_sources(jobs, mode=self.mode, merge=self.merge, timeout=self.timeout)
        ) as events:
            async for event in events:
                yield event

    def _job(self, name: str, retriever: R, question: str) -> Callable[[], Awaitable[Sequence[Chunk]]]:
        raise NotImplementedError


class LlamaIndexAdapter(_Adapter["LlamaIndexRetriever"]):
    """LlamaIndex retrievers as one context stream; each node becomes a `Chunk`."""

    def _job(
        self, name: str, retriever: LlamaIndexRetriever, question: str
    ) -> Callable[[], Awaitable[Sequence[Chunk]]]:
        async def run() -> Sequence[Chunk]:
            return [node_chunk(node, name) for node in await retriever.aretrieve(question)]

        return run


class LangChainAdapter(_Adapter["LangChainRetriever"]):
    """LangChain retrievers as one context stream; each document becomes a `Chunk`."""

    def _job(
        self, name: str, retriever: LangChainRetriever, question: str
    ) -> Callable[[], Awaitable[Sequence[Chunk]]]:
        async def run() -> Sequence[Chunk]:
            return [document_chunk(document, name) for document in await retriever.ainvoke(question)]

        return run


def node_chunk(node: NodeWithScore, retriever: str) -> Chunk:
    """A LlamaIndex `NodeWithScore` as a chunk; the node id is kept, so fusion can merge it."""
    metadata = dict(node.node.metadata)
    return Chunk(
        node.node.node_id,
        node.node.get_content(),
        node.score,
        _source(metadata, retriever),
        {**metadata, "retriever": retriever},
    )


def document_chunk(document: Document, retriever: str) -> Chunk:
    """A LangChain `Document` as a chunk. Documents often carry no id: one is derived from the
    text, so the same passage from two retrievers is one chunk. A score is taken from the
    metadata when the retriever put one there (`score` or `relevance_score`)."""
    metadata = dict(document.metadata)
    score = metadata.get("score", metadata.get("relevance_score"))
    return Chunk(
        document.id or content_id(document.page_content),
        document.page_content,
        float(score) if isinstance(score, (int, float)) else None,
        _source(metadata, retriever),
        {**metadata, "retriever": retriever},
    )


def _source(metadata: Mapping[str, Any], retriever: str) -> str:
    for key in _SOURCE_KEYS:
        if metadata.get(key):
            return str(metadata[key])
    return retriever
