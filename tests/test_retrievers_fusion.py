"""Update mode over real Qdrant: multi-query fusion and sharded search, streamed as they return."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from retrievers.embedder import Embedder
from retrievers.events import Chunk, Done, Update
from retrievers.fusion import FusionRetriever, reciprocal_rank_fusion
from retrievers.ingest import IngestReport, ingest
from retrievers.sharded import ShardedRetriever, merge_top_k, shard_names
from retrievers.store import QdrantStore
from tests.retrievers_fixtures import COLLECTION, DelayedStore

FAST, MEDIUM, SLOW = 0.05, 0.4, 1.5
TRY_QUESTION = "What does the finally clause do when the try suite raises an exception?"
TRY_VARIANTS = ["try finally cleanup code runs on the way out", "exception handler except clause"]


def chunk(chunk_id: str, score: float = 0.0) -> Chunk:
    return Chunk(chunk_id, chunk_id, score, "test")


def test_reciprocal_rank_fusion_sums_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion([[chunk("a"), chunk("b")], [chunk("b"), chunk("c")]], k=3, rrf_k=60)
    assert [c.id for c in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert (fused[1].score, fused[2].score) == pytest.approx((1 / 61, 1 / 62))
    # Ties keep the order of first appearance.
    tied = reciprocal_rank_fusion([[chunk("x")], [chunk("y")], [chunk("z")]], k=2)
    assert [c.id for c in tied] == ["x", "y"]


def test_merge_top_k_keeps_the_best_score_of_each_chunk() -> None:
    merged = merge_top_k([[chunk("a", 0.9), chunk("b", 0.5)], [chunk("c", 0.7), chunk("b", 0.8)]], k=2)
    assert [(c.id, c.score) for c in merged] == [("a", 0.9), ("b", 0.8)]


async def test_fusion_streams_one_update_per_search_and_finds_the_topic(
    reference_store: tuple[QdrantStore, IngestReport], embedder: Embedder
) -> None:
    store, _ = reference_store
    retriever = FusionRetriever(store, embedder, COLLECTION, k=4)
    events = [event async for event in retriever.stream(TRY_QUESTION, TRY_VARIANTS)]
    assert isinstance(events[-1], Done)
    updates = [event for event in events if isinstance(event, Update)]
    assert len(updates) == len(events) - 1 == 1 + len(TRY_VARIANTS)
    final = updates[-1].chunks
    assert len(final) == 4 and final[0].source.endswith("try.md")
    assert [c.score for c in final] == sorted((c.score for c in final), reverse=True)


async def test_fusion_emits_the_fast_collection_before_the_slow_one_returns(
    reference_store: tuple[QdrantStore, IngestReport], embedder: Embedder
) -> None:
    store, _ = reference_store
    delayed = DelayedStore(
        store, {"fast": FAST, "slow": SLOW}, aliases={"fast": COLLECTION, "slow": COLLECTION}
    )
    retriever = FusionRetriever(delayed, embedder, ["slow", "fast"], k=3)
    arrivals = [(event, time.monotonic()) async for event in retriever.stream(TRY_QUESTION)]
    (first, first_at), (second, second_at), (done, _) = arrivals
    assert isinstance(first, Update) and isinstance(second, Update) and isinstance(done, Done)
    # The first ranking is out while the slow collection is still searching.
    assert first_at < delayed.finished["slow"]
    assert second_at >= delayed.finished["slow"]
    # Both collections are the same data: fusing them keeps the order.
    assert [c.id for c in first.chunks] == [c.id for c in second.chunks]


@pytest.fixture(scope="module")
async def sharded_store(embedder: Embedder, small_docs: Path) -> AsyncIterator[QdrantStore]:
    """The small corpus twice: whole in `small`, and over 3 shards of `small-sharded`."""
    store = await QdrantStore.open(":memory:")
    await ingest([small_docs], collection="small", store=store, embedder=embedder, progress=False)
    await ingest(
        [small_docs], collection="small-sharded", shards=3, store=store, embedder=embedder, progress=False
    )
    yield store
    await store.close()


async def test_sharded_ingest_puts_each_chunk_in_one_shard(sharded_store: QdrantStore) -> None:
    counts = [await sharded_store.count(name) for name in shard_names("small-sharded", 3)]
    assert all(counts) and sum(counts) == await sharded_store.count("small")


async def test_sharded_updates_follow_shard_completion_and_end_on_the_exact_top_k(
    sharded_store: QdrantStore, embedder: Embedder
) -> None:
    names = shard_names("small-sharded", 3)
    delayed = DelayedStore(sharded_store, dict(zip(names, (SLOW, FAST, MEDIUM), strict=True)))
    retriever = ShardedRetriever(delayed, embedder, "small-sharded", 3, k=5)
    arrivals = [(event, time.monotonic()) async for event in retriever.stream(TRY_QUESTION)]
    updates = [(event, at) for event, at in arrivals if isinstance(event, Update)]
    assert len(updates) == 3 and isinstance(arrivals[-1][0], Done)
    # One update per shard, in the order the shards finished; the first not held back by the slowest.
    finished = sorted(delayed.finished, key=delayed.finished.__getitem__)
    assert finished == [names[1], names[2], names[0]]
    assert updates[0][1] < delayed.finished[names[0]]
    assert all(len(event.chunks) <= 5 for event, _ in updates)

    [vector] = await embedder.aembed([TRY_QUESTION])
    whole = await sharded_store.search("small", vector, 5)
    final = updates[-1][0].chunks
    assert [c.id for c in final] == [c.id for c in whole]
    assert [c.score for c in final] == pytest.approx([c.score for c in whole])


def test_retriever_settings_are_checked(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        FusionRetriever(DelayedStore(None, {}), embedder, "c", k=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="collections is empty"):
        FusionRetriever(DelayedStore(None, {}), embedder, [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shards must be at least 1"):
        ShardedRetriever(DelayedStore(None, {}), embedder, "c", 0)  # type: ignore[arg-type]
