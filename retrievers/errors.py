"""The one base of every retriever error.

The retrievers are independent of the engine, so this base is not `engine.errors.StreamRAGError`;
the app maps both to HTTP errors at its edge.
"""

from __future__ import annotations


class RetrievalError(ValueError):
    """Something a retriever, the store, the embedder, chunking or ingest cannot do with its input."""
