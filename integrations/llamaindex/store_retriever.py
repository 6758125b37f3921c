"""`StoreRetriever`: a LlamaIndex retriever over a streamrag Qdrant collection.

For pipelines that keep their documents in streamrag's store (`streamrag ingest ...`): the
question is embedded with the same model the collection was built with, and the nearest
chunks come back as `NodeWithScore`s whose node ids are the store's chunk ids, so fusion and
the context feed recognise the same passage found by two retrievers.
"""

from __future__ import annotations

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from integrations.blocking import call_blocking
from retrievers.embedder import Embedder
from retrievers.store import QdrantStore


class StoreRetriever(BaseRetriever):
    """Args: store (an open `QdrantStore`), embedder, collection, top_k (nodes per query)."""

    def __init__(self, store: QdrantStore, embedder: Embedder, collection: str, top_k: int = 4,
                 callback_manager: CallbackManager | None = None) -> None:
        if top_k < 1:
            raise ValueError(f"top_k: {top_k} must be >= 1")
        self.store, self.embedder, self.collection, self.top_k = store, embedder, collection, top_k
        super().__init__(callback_manager=callback_manager)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        [vector] = await self.embedder.aembed([query_bundle.query_str])
        chunks = await self.store.search(self.collection, vector, self.top_k)
        return [
            NodeWithScore(node=TextNode(id_=c.id, text=c.text, metadata={**c.metadata, "source": c.source}), score=c.score)
            for c in chunks
        ]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # The store is async (its own worker thread); a sync caller gets a private loop.
        return call_blocking(lambda: self._aretrieve(query_bundle))
