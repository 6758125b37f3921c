"""`StreamRAGEventHandler`: LlamaIndex retrieval events -> the active query's context feed.

LlamaIndex emits `RetrievalStartEvent` / `RetrievalEndEvent` around every retriever's
`retrieve`/`aretrieve`, including each sub-retriever of a `QueryFusionRetriever`, as it
finishes. This handler forwards them to the `ContextFeed` found in the current context (set by
`StreamingQueryEngine`, see integrations/context_feed.py); outside a streaming query it does
nothing, so installing it on the root dispatcher costs other pipelines nothing.

Both events of one retrieval carry the same `span_id` (that of its `aretrieve` span), which
keys the retrieval. The events do not name a parent retrieval, so the feed infers it: a
retrieval that starts while the query's outermost one is open is its child.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.retrieval import (
    RetrievalEndEvent,
    RetrievalStartEvent,
)

from integrations.context_feed import active_feed
from retrievers.adapters import node_chunk


class StreamRAGEventHandler(BaseEventHandler):
    @classmethod
    def class_name(cls) -> str:
        return "StreamRAGEventHandler"

    @classmethod
    def install(cls) -> StreamRAGEventHandler:
        """Add one handler to LlamaIndex's root dispatcher (idempotent); return it."""
        root = get_dispatcher()
        for handler in root.event_handlers:
            if isinstance(handler, cls):
                return handler
        handler = cls()
        root.add_event_handler(handler)
        return handler

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        # The dispatcher swallows whatever a handler raises; the feed keeps its own errors.
        feed = active_feed()
        if feed is None or event.span_id is None:
            return
        if isinstance(event, RetrievalStartEvent):
            # Span ids read "<retriever class>.aretrieve-<uuid>": the class and an index name it.
            feed.started(event.span_id, source=f"{event.span_id.split('.', 1)[0]}#{feed.runs}", infer_parent=True)
        elif isinstance(event, RetrievalEndEvent):
            source = feed.source_of(event.span_id)
            feed.ended(event.span_id, [node_chunk(node, source) for node in event.nodes])
