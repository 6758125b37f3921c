"""LangChain integration: a chat model, the retriever callback handler, a streaming RAG Runnable."""

from integrations.langchain.callback import StreamRAGCallbackHandler
from integrations.langchain.chat_model import StreamRAGChatModel
from integrations.langchain.runnable import CONTEXT_EVENT, GATE_EVENT, StreamingRAG
from integrations.langchain.store_retriever import StoreRetriever

__all__ = ["CONTEXT_EVENT", "GATE_EVENT", "StoreRetriever", "StreamRAGCallbackHandler", "StreamRAGChatModel", "StreamingRAG"]
