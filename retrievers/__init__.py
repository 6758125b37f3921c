"""Streaming retrievers: the context-stream protocol and the retrievers that speak it.

Independent of the engine: a context stream is plain events (`Append`, `Update`, `Error`, `Done`)
of plain chunks, which the app converts for the engine.

`import retrievers` is light: the protocol, chunking and errors. The rest (Qdrant, the embedder,
the LlamaIndex and LangChain adapters) is imported on first use, so code that only speaks the
protocol (the engine's tests on a machine with vLLM alone) needs none of their packages.
"""

from __future__ import annotations

import importlib

from retrievers.chunking import (
    ChunkingConfig,
    ChunkingError,
    TextSpan,
    chunk_id,
    content_id,
    split_text,
)
from retrievers.errors import (
    RetrievalError,
)
from retrievers.events import (
    Append,
    Chunk,
    ContextEvent,
    ContextStream,
    Done,
    Error,
    Mode,
    StreamingRetriever,
    Update,
    collect,
)

# name -> the module that defines it, imported when the name is first used
_LAZY = {
    "LangChainAdapter": "retrievers.adapters",
    "LlamaIndexAdapter": "retrievers.adapters",
    "document_chunk": "retrievers.adapters",
    "node_chunk": "retrievers.adapters",
    "CORPORA": "retrievers.corpus",
    "PYTHON_DOCS": "retrievers.corpus",
    "CorpusReport": "retrievers.corpus",
    "UnknownCorpusError": "retrievers.corpus",
    "write_corpus": "retrievers.corpus",
    "write_python_docs": "retrievers.corpus",
    "DEFAULT_MODEL": "retrievers.embedder",
    "Embedder": "retrievers.embedder",
    "EmbedderConfig": "retrievers.embedder",
    "EmbeddingModelError": "retrievers.embedder",
    "model_folder": "retrievers.embedder",
    "unpack_packaged_model": "retrievers.embedder",
    "FetchRetriever": "retrievers.fetch",
    "distinct": "retrievers.distinct",
    "StagedRetriever": "retrievers.staged",
    "bm25_scores": "retrievers.bm25",
    "CrossEncoder": "retrievers.reranker",
    "Reranker": "retrievers.reranker",
    "RerankerError": "retrievers.reranker",
    "fetch_text": "retrievers.fetch",
    "html_text": "retrievers.fetch",
    "FusionRetriever": "retrievers.fusion",
    "reciprocal_rank_fusion": "retrievers.fusion",
    "Document": "retrievers.ingest",
    "IngestError": "retrievers.ingest",
    "IngestReport": "retrievers.ingest",
    "discover": "retrievers.ingest",
    "ingest": "retrievers.ingest",
    "ingest_documents": "retrievers.ingest",
    "cache_dir": "retrievers.paths",
    "corpus_path": "retrievers.paths",
    "data_dir": "retrievers.paths",
    "qdrant_path": "retrievers.paths",
    "ShardedRetriever": "retrievers.sharded",
    "merge_top_k": "retrievers.sharded",
    "shard_names": "retrievers.sharded",
    "shard_of": "retrievers.sharded",
    "Outcome": "retrievers.sources",
    "in_completion_order": "retrievers.sources",
    "stream_sources": "retrievers.sources",
    "MEMORY": "retrievers.store",
    "Point": "retrievers.store",
    "QdrantStore": "retrievers.store",
    "Searcher": "retrievers.store",
    "StoreError": "retrievers.store",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'retrievers' has no attribute {name!r}")


__all__ = [
    "RetrievalError",
    "CORPORA",
    "DEFAULT_MODEL",
    "MEMORY",
    "PYTHON_DOCS",
    "Append",
    "Chunk",
    "ChunkingConfig",
    "ChunkingError",
    "ContextEvent",
    "ContextStream",
    "CorpusReport",
    "Document",
    "Done",
    "Embedder",
    "EmbedderConfig",
    "EmbeddingModelError",
    "Error",
    "FetchRetriever",
    "FusionRetriever",
    "IngestError",
    "IngestReport",
    "LangChainAdapter",
    "LlamaIndexAdapter",
    "Mode",
    "Outcome",
    "Point",
    "QdrantStore",
    "Searcher",
    "ShardedRetriever",
    "StagedRetriever",
    "StoreError",
    "CrossEncoder",
    "Reranker",
    "RerankerError",
    "bm25_scores",
    "StreamingRetriever",
    "TextSpan",
    "UnknownCorpusError",
    "Update",
    "cache_dir",
    "chunk_id",
    "collect",
    "distinct",
    "content_id",
    "corpus_path",
    "data_dir",
    "discover",
    "document_chunk",
    "fetch_text",
    "html_text",
    "in_completion_order",
    "ingest",
    "ingest_documents",
    "merge_top_k",
    "model_folder",
    "node_chunk",
    "qdrant_path",
    "reciprocal_rank_fusion",
    "shard_names",
    "shard_of",
    "split_text",
    "stream_sources",
    "unpack_packaged_model",
    "write_corpus",
    "write_python_docs",
]
