"""Streaming a prompt in pieces decodes exactly what the whole prompt decodes at once."""

from __future__ import annotations

import asyncio
import random

import pytest

from engine import Sampling
from retrievers import Chunk
from tests.text import random_text, text_chunk

MAX_TOKENS = 12


@pytest.mark.parametrize("seed", range(20))
async def test_appends_decode_like_one_shot(engine, seed):
    rng = random.Random(seed)
    session = await engine.open_session(question=random_text(rng, 3, 12))
    for i in range(rng.randint(1, 8)):
        chunks = [Chunk(text=random_text(rng), id=f"d{i}-{j}") for j in range(rng.randint(1, 2))]
        await session.append(chunks)
        # Vary the timing: sometimes let the piece finish prefilling, sometimes pile up.
        if rng.random() < 0.5:
            await session.wait_prefilled()
        else:
            await asyncio.sleep(rng.random() * 0.02)
    await session.finish_context()
    streamed = [t async for d in session.generate(Sampling(max_tokens=MAX_TOKENS, ignore_eos=True)) for t in d.token_ids]

    one_shot = await engine.complete(prompt_token_ids=session.prompt_token_ids, sampling=Sampling(max_tokens=MAX_TOKENS, ignore_eos=True))
    assert len(streamed) == MAX_TOKENS
    assert streamed == list(one_shot.token_ids)
    assert session.state == "finished"


async def test_text_matches_token_ids(engine):
    session = await engine.open_session(question="What is a block?")
    await session.append([text_chunk("A block holds the KV of some tokens.")])
    await session.finish_context()
    deltas = [d async for d in session.generate(Sampling(max_tokens=8, ignore_eos=True))]
    ids = [t for d in deltas for t in d.token_ids]
    assert "".join(d.text for d in deltas) == engine.template.decode(ids)
    assert deltas[-1].finish_reason == "length"
    stats = session.stats
    assert stats.generated_tokens == 8
    assert stats.t_first_token is not None and stats.t_first_token >= stats.t_gate
