"""Seeded random text for engine tests."""

from __future__ import annotations

import random

from retrievers import Chunk, content_id

WORDS = (
    "retrieval prefill token cache block stream chunk query answer vector index shard rank fusion "
    "python qdrant engine session gate latency decode context document passage score model layer "
    "the a of and to in is for on with as by at from this that it be are was were"
).split()


def random_text(rng: random.Random, min_words: int = 5, max_words: int = 60) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words)))


def text_chunk(text: str, score: float | None = None, id: str | None = None) -> Chunk:
    """A chunk named by its content (as the HTTP API names a chunk sent without an id)."""
    return Chunk(id or content_id(text), text, score)
