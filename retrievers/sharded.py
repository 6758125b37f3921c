"""Sharded update mode: one logical collection split over N shards, searched concurrently.

Each shard holds the chunks whose id hashes to it (`shard_of`), so every chunk lives in exactly
one shard and scores from different shards are comparable (same embedder, same distance). The
exact top-k of the whole collection is the top-k of the union of each shard's top-k; while
shards are still out, the merge of those that answered is the best ranking known so far, and
it is emitted at once:

    shard 0 ──0.05 s──▶ Update(top-k of {0})
    shard 2 ──0.20 s──▶ Update(top-k of {0, 2})
    shard 1 ──0.90 s──▶ Update(top-k of {0, 1, 2})   = the exact top-k
                        Done
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from contextlib import aclosing

from retrievers.embedder import Embedder
from retrievers.events import Chunk, ContextStream, Done, Error
from retrievers.sources import stream_sources
from retrievers.store import Searcher


def shard_names(collection: str, shards: int) -> list[str]:
    """The Qdrant collections behind a logical collection: itself when unsharded.

    The shard count is part of the name: a chunk's shard depends on it, so collections sharded
    two ways must never be mixed.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if shards == 1:
        return [collection]
    return [f"{collection}-shard{index}of{shards}" for index in range(shards)]


def shard_of(chunk_id: str, shards: int) -> int:
    """The shard a chunk id belongs to (ids are UUIDs, uniformly spread)."""
    return uuid.UUID(chunk_id).int % shards


def merge_top_k(rankings: Sequence[Sequence[Chunk]], *, k: int) -> list[Chunk]:
    """The `k` best chunks of several rankings by score (a chunk seen twice counts once)."""
    best: dict[str, Chunk] = {}
    for ranking in rankings:
        for chunk in ranking:
            kept = best.get(chunk.id)
            if kept is None or (chunk.score or 0.0) > (kept.score or 0.0):
                best[chunk.id] = chunk
    # sorted() is stable: equal scores keep the order in which the shards answered.
    return sorted(best.values(), key=lambda chunk: -(chunk.score or 0.0))[:k]


class ShardedRetriever:
    """Streams the top-k of a sharded collection, refined as each shard answers.

    `timeout` bounds each shard's search: a shard that misses it becomes an `Error` event and
    the ranking of the others stands.
    """

    def __init__(
        self,
        store: Searcher,
        embedder: Embedder,
        collection: str,
        shards: int,
        *,
        k: int = 5,
        timeout: float | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1 (chunks in the ranking), got {k}")
        self.store = store
        self.embedder = embedder
        self.shards = shard_names(collection, shards)
        self.k = k
        self.timeout = timeout

    async def stream(self, question: str) -> ContextStream:
        try:
            [vector] = await self.embedder.aembed([question])
        except Exception as exc:  # reported as the protocol says, then Done
            yield Error("embedder", exc)
            yield Done()
            return
        jobs = {name: functools.partial(self.store.search, name, vector, self.k) for name in self.shards}
        merge = functools.partial(merge_top_k, k=self.k)
        # aclosing: a consumer that stops early cancels the searches now, not at garbage collection.
        async with aclosing(stream_sources(jobs, mode="update", merge=merge, timeout=self.timeout)) as events:
            async for event in events:
                yield event
