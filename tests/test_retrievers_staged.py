"""The chat endpoint's staged retrieval over real Qdrant: dense, then hybrid, then reranked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from retrievers import CrossEncoder, RerankerError, StagedRetriever, bm25_scores, distinct
from retrievers.embedder import DEFAULT_MODEL, model_folder
from retrievers.events import Done, Error, Update
from retrievers.paths import cache_dir
from tests.retrievers_fixtures import COLLECTION

TRY_QUESTION = "What does the finally clause do when the try suite raises an exception?"


def test_bm25_rewards_rare_shared_words():
    passages = ["the loop ends with break", "the finally clause runs on the way out", "nothing in common here"]
    scores = bm25_scores("what does finally do", passages)
    assert scores[1] > scores[0] == scores[2] == 0.0
    assert bm25_scores("anything", []) == []


async def _events(retriever: StagedRetriever, question: str, variants: Sequence[str] = ()) -> list:
    return [event async for event in retriever.stream(question, variants)]


async def test_stages_arrive_in_order_each_a_whole_ranking(reference_store, embedder):
    store, _ = reference_store
    events = await _events(StagedRetriever(store, embedder, COLLECTION, pool=12), TRY_QUESTION,
                           ["try finally cleanup"])
    assert [getattr(e, "stage", e.op) for e in events] == ["dense", "dense", "hybrid", "done"]
    dense, hybrid = events[1].chunks, events[2].chunks
    assert len(dense) == len(hybrid) == 12 and {c.id for c in dense} == {c.id for c in hybrid}
    for ranking in (dense, hybrid):
        assert [c.score for c in ranking] == sorted((c.score for c in ranking), reverse=True)
    assert hybrid[0].source.endswith("try.md")
    # The dense scores are the store's own cosine similarities (the best over the two queries).
    [direct] = [c for c in await store.search(COLLECTION, (await embedder.aembed([TRY_QUESTION]))[0], 1)]
    assert next(c for c in dense if c.id == direct.id).score >= direct.score


async def test_distinct_keeps_each_stage_named_and_cut(reference_store, embedder):
    store, _ = reference_store
    events = [e async for e in distinct(StagedRetriever(store, embedder, COLLECTION, pool=16).stream(TRY_QUESTION), 4)]
    updates = [e for e in events if isinstance(e, Update)]
    assert [u.stage for u in updates] == ["dense", "hybrid"] and all(len(u.chunks) == 4 for u in updates)


class ByLength:
    """A reranker with a rule one can check: longer passages first."""

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        return [float(len(p)) for p in passages]


class Broken:
    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        raise RuntimeError("model gone")


async def test_a_reranker_is_the_last_stage(reference_store, embedder):
    store, _ = reference_store
    events = await _events(StagedRetriever(store, embedder, COLLECTION, pool=8, reranker=ByLength()), TRY_QUESTION)
    assert [getattr(e, "stage", e.op) for e in events] == ["dense", "hybrid", "rerank", "done"]
    reranked = events[2].chunks
    assert [len(c.text) for c in reranked] == sorted((len(c.text) for c in reranked), reverse=True)
    assert {c.id for c in reranked} == {c.id for c in events[1].chunks}


async def test_a_failing_reranker_leaves_the_hybrid_ranking(reference_store, embedder):
    store, _ = reference_store
    events = await _events(StagedRetriever(store, embedder, COLLECTION, pool=8, reranker=Broken()), TRY_QUESTION)
    assert [getattr(e, "stage", e.op) for e in events] == ["dense", "hybrid", "error", "done"]
    assert isinstance(events[2], Error) and events[2].source == "reranker"
    assert isinstance(events[-1], Done)


@pytest.fixture(scope="module")
def toy_cross_encoder(tmp_path_factory) -> Path:
    """A real BERT sequence classifier at toy size (random weights) with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(model_folder(DEFAULT_MODEL, cache_dir()), local_files_only=True)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


async def test_cross_encoder_from_a_folder_reranks(reference_store, embedder, toy_cross_encoder):
    store, _ = reference_store
    model = CrossEncoder.load(toy_cross_encoder)
    events = await _events(StagedRetriever(store, embedder, COLLECTION, pool=6, reranker=model), TRY_QUESTION)
    reranked = events[2].chunks
    assert events[2].stage == "rerank" and all(0.0 <= c.score <= 1.0 for c in reranked)
    # The order is the model's: scoring the same passages again gives the same ranking.
    again = model.score(TRY_QUESTION, [c.text for c in reranked])
    assert again == sorted(again, reverse=True)
    assert again == pytest.approx([c.score for c in reranked], abs=1e-6)


def test_cross_encoder_folder_must_hold_a_model(tmp_path):
    with pytest.raises(RerankerError, match="config.json"):
        CrossEncoder.load(tmp_path)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="pool"):
        StagedRetriever(None, None, COLLECTION, pool=0)
    with pytest.raises(ValueError, match="bm25_weight"):
        StagedRetriever(None, None, COLLECTION, bm25_weight=1.5)
