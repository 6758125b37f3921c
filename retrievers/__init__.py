"""Streaming retrievers: the context-stream protocol and the retrievers that speak it.

Independent of the engine: a context stream is plain events (`Append`, `Update`, `Error`, `Done`)
of plain chunks, which the app converts for the engine.
"""

from retrievers.adapters import (
    LangChainAdapter,
    LlamaIndexAdapter,
    document_chunk,
    node_chunk,
)
from retrievers.chunking import (
    ChunkingConfig,
    ChunkingError,
    TextSpan,
    chunk_id,
    content_id,
    split_text,
)
from retrievers.corpus import (
    CORPORA,
    PYTHON_DOCS,
    CorpusReport,
    UnknownCorpusError,
    write_corpus,
    write_python_docs,
)
from retrievers.embedder import (
    DEFAULT_MODEL,
    Embedder,
    EmbedderConfig,
    EmbeddingModelError,
    model_folder,
    unpack_packaged_model,
)
from retrievers.errors import RetrievalError
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
from retrievers.fetch import FetchRetriever, fetch_text, html_text
from retrievers.fusion import FusionRetriever, reciprocal_rank_fusion
from retrievers.ingest import (
    Document,
    IngestError,
    IngestReport,
    discover,
    ingest,
    ingest_documents,
)
from retrievers.paths import cache_dir, corpus_path, data_dir, qdrant_path
from retrievers.sharded import ShardedRetriever, merge_top_k, shard_names, shard_of
from retrievers.sources import Outcome, in_completion_order, stream_sources
from retrievers.store import MEMORY, Point, QdrantStore, Searcher, StoreError

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
    "StoreError",
    "StreamingRetriever",
    "TextSpan",
    "UnknownCorpusError",
    "Update",
    "cache_dir",
    "chunk_id",
    "collect",
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
