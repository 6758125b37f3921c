"""`StreamRAGCallbackHandler`: LangChain retriever callbacks -> the active query's context feed.

LangChain reports every retriever run (`on_retriever_start` / `on_retriever_end`), nested ones
included: an `EnsembleRetriever`'s sub-retrievers each report as they finish, with the ensemble
as their parent run. This handler forwards those reports to the `ContextFeed` found in the
current context (set by `StreamingRAG`, see integrations/context_feed.py), which prefills the
leaves' documents as they come; outside a streaming query it does nothing.

Async callbacks run as tasks started from the retriever's own task, so they inherit its context
and find the feed of their own query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.documents import Document

from integrations.context_feed import active_feed
from retrievers.adapters import document_chunk


class StreamRAGCallbackHandler(AsyncCallbackHandler):
    async def on_retriever_start(self, serialized: dict[str, Any] | None, query: str, *, run_id: UUID,
                                 parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        if (feed := active_feed()) is None:
            return
        name = kwargs.get("name") or (serialized or {}).get("name") or "retriever"
        feed.started(str(run_id), source=f"{name}#{feed.runs}", parent=str(parent_run_id) if parent_run_id else None)

    async def on_retriever_end(self, documents: Sequence[Document], *, run_id: UUID,
                               parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        if (feed := active_feed()) is None:
            return
        source = feed.source_of(str(run_id))
        feed.ended(str(run_id), [document_chunk(document, source) for document in documents])

    async def on_retriever_error(self, error: BaseException, *, run_id: UUID,
                                 parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        if (feed := active_feed()) is not None:
            feed.failed(str(run_id))
