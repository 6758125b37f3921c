"""LlamaIndex integration: a drop-in LLM, the retrieval event handler, a streaming query engine."""

from integrations.llamaindex.event_handler import StreamRAGEventHandler
from integrations.llamaindex.llm import StreamRAGLLM
from integrations.llamaindex.query_engine import StreamingQueryEngine
from integrations.llamaindex.store_retriever import StoreRetriever

__all__ = ["StoreRetriever", "StreamRAGEventHandler", "StreamRAGLLM", "StreamingQueryEngine"]
