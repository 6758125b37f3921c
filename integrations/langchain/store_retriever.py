"""`StoreRetriever`: a LangChain retriever over a streamrag Qdrant collection.

The question is embedded with the collection's own model; the nearest chunks come back as
`Document`s whose ids are the store's chunk ids and whose metadata carries the similarity
(`score`), so the context feed and the gate's `min_score` see it.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from integrations.blocking import call_blocking


class StoreRetriever(BaseRetriever):
    """Fields: store (an open `retrievers.QdrantStore`), embedder (`retrievers.Embedder`), collection, k."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: Any = Field(exclude=True)
    embedder: Any = Field(exclude=True)
    collection: str
    k: int = Field(default=4, ge=1)

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        [vector] = await self.embedder.aembed([query])
        chunks = await self.store.search(self.collection, vector, self.k)
        return [Document(page_content=c.text, id=c.id, metadata={**c.metadata, "source": c.source, "score": c.score})
                for c in chunks]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        # The store is async (its own worker thread); a sync caller gets a private loop.
        return call_blocking(lambda: self._aget_relevant_documents(query, run_manager=run_manager))
