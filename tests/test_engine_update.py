"""Update mode: a new ranking keeps the KV of the longest common prefix, exactly.

Recompute is read from vLLM's own per-step scheduled-token counts (the scheduler ledger),
not from the session's arithmetic.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from engine import Gate, Sampling
from engine.session_context import common_prefix_len
from retrievers import Chunk
from tests.text import random_text

MAX_TOKENS = 10
KINDS = ("keep long prefix", "change tail", "reorder middle", "replace all", "append")


def _next_context(rng: random.Random, chunks: list[Chunk], kind: str, serial: list[int]) -> list[Chunk]:
    def fresh() -> Chunk:
        serial[0] += 1
        return Chunk(text=random_text(rng, 10, 50), id=f"c{serial[0]}", score=rng.random())

    if kind == "keep long prefix" and chunks:
        keep = max(1, len(chunks) - 1)
        return chunks[:keep] + [fresh() for _ in range(rng.randint(1, 2))]
    if kind == "change tail" and chunks:
        return chunks[:-1] + [fresh()]
    if kind == "reorder middle" and len(chunks) >= 3:
        middle = chunks[1:-1]
        rng.shuffle(middle)
        return [chunks[0]] + middle[::-1] + [chunks[-1]]
    if kind == "replace all" or not chunks:
        return [fresh() for _ in range(rng.randint(1, 4))]
    return chunks + [fresh()]


async def _random_session(engine, seed: int, update_mode: str = "lcp"):
    rng = random.Random(seed)
    session = await engine.open_session(question=random_text(rng, 3, 10), update_mode=update_mode)
    chunks: list[Chunk] = []
    serial = [0]
    for _ in range(rng.randint(2, 8)):
        kind = rng.choice(KINDS)
        chunks = _next_context(rng, chunks, kind, serial)
        if kind == "append":
            await session.append(chunks[-1:])
        else:
            await session.update(chunks)
        if rng.random() < 0.5:
            await session.wait_prefilled()
        else:
            await asyncio.sleep(rng.random() * 0.02)
    await session.finish_context()
    return session


@pytest.mark.parametrize("seed", range(24))
async def test_updates_decode_like_one_shot(engine, seed):
    session = await _random_session(engine, seed)
    streamed = [t async for d in session.generate(Sampling(max_tokens=MAX_TOKENS, ignore_eos=True)) for t in d.token_ids]
    one_shot = await engine.complete(prompt_token_ids=session.prompt_token_ids, sampling=Sampling(max_tokens=MAX_TOKENS, ignore_eos=True))
    assert streamed == list(one_shot.token_ids)
    assert session.stats.updates >= 0 and session.state == "finished"


@pytest.mark.parametrize("seed", range(4))
async def test_reopen_baseline_decodes_like_one_shot(engine, seed):
    session = await _random_session(engine, 100 + seed, update_mode="reopen")
    streamed = [t async for d in session.generate(Sampling(max_tokens=MAX_TOKENS, ignore_eos=True)) for t in d.token_ids]
    one_shot = await engine.complete(prompt_token_ids=session.prompt_token_ids, sampling=Sampling(max_tokens=MAX_TOKENS, ignore_eos=True))
    assert streamed == list(one_shot.token_ids)


async def _scripted_updates(engine, mode: str, system: str) -> tuple[list[tuple[int, int, int]], object]:
    """Apply a fixed script of rankings one at a time; return (scheduled, new_len, lcp) each."""
    rng = random.Random(42)
    docs = [Chunk(text=random_text(rng, 30, 60), id=f"d{i}") for i in range(8)]
    script = [
        docs[:4],                          # first ranking
        docs[:3] + [docs[5]],              # change the tail
        docs[:1] + docs[2:0:-1] + [docs[5], docs[6]],  # reorder the middle, extend
        docs[:1] + docs[2:0:-1] + [docs[5]],           # shrink: new prompt is a prefix
        [docs[7], docs[4]],                # replace everything
    ]
    session = await engine.open_session(question="which passages matter?", system=system, update_mode=mode)
    await session.wait_prefilled()
    records = []
    for ranking in script:
        before_tokens = list(session.context_token_ids)
        before = sum(engine.ledger.scheduled_tokens(session.id))
        await session.update(ranking)
        await session.wait_prefilled()
        scheduled = sum(engine.ledger.scheduled_tokens(session.id)) - before
        new = session.context_token_ids
        records.append((scheduled, len(new), common_prefix_len(before_tokens, new)))
    await session.abort()
    return records, session


async def test_recompute_is_bounded_by_the_divergent_suffix(engine):
    bs = engine.config.block_size
    # System prompts of one token count (a digit is one token in every tokenizer the tests use),
    # so both sessions see prompts of the same lengths and neither hits the other's cache.
    lcp_records, lcp_session = await _scripted_updates(engine, "lcp", system="bounded recompute 1")
    for scheduled, new_len, lcp in lcp_records:
        assert scheduled <= (new_len - lcp) + bs, (scheduled, new_len, lcp)
        assert scheduled >= new_len - lcp  # and everything past the LCP was computed
    replaces = engine.ledger.replaces(lcp_session.id)
    assert len(replaces) == len(lcp_records) - 1  # the first ranking was a plain append
    assert all(r["cut"] % bs == 0 and r["cut"] <= r["keep"] for r in replaces)

    base_records, _ = await _scripted_updates(engine, "reopen", system="bounded recompute 2")
    lcp_total = sum(r[0] for r in lcp_records)
    base_total = sum(r[0] for r in base_records)
    print(f"\nrecomputed after updates: lcp={lcp_total} reopen baseline={base_total} tokens")
    assert base_total >= lcp_total


async def test_stable_updates_gate(engine):
    a, b, c, d = (Chunk(text=f"passage {x}", id=x) for x in "abcd")
    session = await engine.open_session(question="q", gate=Gate(stable_updates=2, stable_top_k=2))
    await session.update([a, b, c])
    await session.update([a, b, d])  # top-2 unchanged once
    assert not session.gate_is_open
    await session.update([b, a, d])  # top-2 changed (order counts): start over
    await session.update([b, a, c])
    assert not session.gate_is_open
    await session.update([b, a])     # unchanged over 2 consecutive updates
    assert session.gate_is_open and session.stats.gate_reason == "criteria"
    assert session.stats.updates == 5
    _ = [d async for d in session.generate(Sampling(max_tokens=2))]


async def test_bursts_of_updates_are_coalesced(engine):
    rng = random.Random(3)
    docs = [Chunk(text=random_text(rng, 100, 150), id=f"b{i}") for i in range(6)]
    session = await engine.open_session(question="burst", system="coalescing test")
    await session.update(docs[:3])  # in flight now
    for k in range(3):               # arrive while the first is prefilling
        await session.update(docs[k + 1 : k + 4])
    await session.wait_prefilled()
    stats = session.stats
    assert stats.updates == 4
    assert stats.replaces <= 2  # the newest of the burst went out, not all three
    assert session._vllm_tokens == session.context_token_ids
    await session.abort()


async def test_no_leak_after_many_concurrent_updates(engine, idle_blocks):
    rng = random.Random(99)

    async def churn(i: int) -> None:
        session = await engine.open_session(question=f"session {i}", gate=Gate(min_chunks=99))
        chunks: list[Chunk] = []
        serial = [i * 1000]
        for _ in range(200 // 16):
            chunks = _next_context(rng, chunks, rng.choice(KINDS[:4]), serial)
            await session.update(chunks)
            await asyncio.sleep(rng.random() * 0.01)
        if i % 2:
            await session.abort()
        else:
            await session.finish_context()
            _ = [d async for d in session.generate(Sampling(max_tokens=3))]

    await asyncio.gather(*(churn(i) for i in range(16)))
    assert engine.live_sessions == 0
    assert await engine.wait_for_blocks(idle_blocks, timeout_s=15) == idle_blocks
