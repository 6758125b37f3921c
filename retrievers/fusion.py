"""Fusion update mode: several queries over several collections, fused by reciprocal rank.

The question and the variants the caller gives (rephrasings, sub-questions, HyDE answers) are
embedded in one batch, then every (query, collection) pair is searched concurrently. Each time
one search returns, the reciprocal-rank fusion of every ranking returned so far is emitted as an
`Update`: the first ranking arrives after the fastest search, and each later one refines it.

    RRF score of a chunk = sum over rankings that hold it of 1 / (rrf_k + rank),  rank from 1

RRF needs no score calibration between collections or queries, only ranks; rrf_k = 60 is the
constant of Cormack et al. (2009), which damps the weight of the very first ranks.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from contextlib import aclosing

from retrievers.embedder import Embedder
from retrievers.events import Chunk, ContextStream, Done, Error
from retrievers.sources import Merge, stream_sources
from retrievers.store import Searcher


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Chunk]], *, k: int, rrf_k: int = 60) -> list[Chunk]:
    """The `k` best chunks of the fused rankings, each scored with its RRF score.

    Chunks are identified by id, so the same chunk found by two queries adds up. Ties keep the
    order of first appearance, which makes the result deterministic for a given arrival order.
    """
    scores: dict[str, float] = {}
    first: dict[str, Chunk] = {}
    for ranking in rankings:
        for rank, chunk in enumerate(ranking, start=1):
            scores[chunk.id] = scores.get(chunk.id, 0.0) + 1.0 / (rrf_k + rank)
            first.setdefault(chunk.id, chunk)
    order = sorted(scores, key=lambda chunk_id: -scores[chunk_id])
    return [first[chunk_id].with_score(scores[chunk_id]) for chunk_id in order[:k]]


async def searches(store: Searcher, embedder: Embedder, collections: Sequence[str], question: str,
                   variants: Sequence[str], depth: int, merge: Merge, timeout: float | None) -> ContextStream:
    """Every (query, collection) search at once; an `Update` of `merge(results so far)` as each
    returns. The question and its distinct variants are embedded in one batch; an embedder
    failure is an `Error` event, then `Done`, as the protocol says."""
    queries = list(dict.fromkeys([question, *variants]))  # a repeated query would count twice
    try:
        vectors = await embedder.aembed(queries)
    except Exception as exc:
        yield Error("embedder", exc)
        yield Done()
        return
    jobs = {
        f"{collection}: {query}": functools.partial(store.search, collection, vector, depth)
        for query, vector in zip(queries, vectors, strict=True)
        for collection in collections
    }
    # aclosing: a consumer that stops early cancels the searches now, not at garbage collection.
    async with aclosing(stream_sources(jobs, mode="update", merge=merge, timeout=timeout)) as events:
        async for event in events:
            yield event


class FusionRetriever:
    """Streams the fused top-k of several queries over one or more collections.

    `depth` is how many chunks each search returns (default 2k: a chunk ranked just outside one
    query's top-k can still win on the sum). `timeout` bounds each search alone.
    """

    def __init__(
        self,
        store: Searcher,
        embedder: Embedder,
        collections: str | Sequence[str],
        *,
        k: int = 5,
        depth: int | None = None,
        rrf_k: int = 60,
        timeout: float | None = None,
    ) -> None:
        self.collections = [collections] if isinstance(collections, str) else list(collections)
        if not self.collections:
            raise ValueError("collections is empty: give at least one collection name")
        if k < 1:
            raise ValueError(f"k must be at least 1 (chunks in the ranking), got {k}")
        if rrf_k < 0:
            raise ValueError(f"rrf_k must be 0 or more, got {rrf_k}")
        self.store = store
        self.embedder = embedder
        self.k = k
        self.depth = depth if depth is not None else 2 * k
        if self.depth < k:
            raise ValueError(f"depth ({self.depth}) must be at least k ({k}): raise depth")
        self.rrf_k = rrf_k
        self.timeout = timeout

    async def stream(self, question: str, variants: Sequence[str] = ()) -> ContextStream:
        """Search `question` and each of `variants` in every collection; Updates as they return."""
        merge = functools.partial(reciprocal_rank_fusion, k=self.k, rrf_k=self.rrf_k)
        async with aclosing(searches(self.store, self.embedder, self.collections, question, variants, self.depth,
                                     merge, self.timeout)) as events:
            async for event in events:
                yield event
