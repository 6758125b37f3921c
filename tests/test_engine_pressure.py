"""Memory pressure: more concurrent sessions than the KV cache holds all finish, exactly.

A second engine with a deliberately small cache (40 blocks of 32 tokens) runs the "fcfs"
policy with idle-session preemption: sessions waiting for their next chunk give their
blocks back when a ready request lacks them, and resume by recompute or from the prefix cache.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from engine import Chunk, EngineConfig, StreamEngine
from engine.policies import Candidate, order, victims
from tests.text import random_text

PRESSURE = EngineConfig(model="tiny", max_model_len=1024, block_size=32, num_kv_blocks=40,
                        kv_cache_gib=0.25, max_num_batched_tokens=1024, policy="fcfs",
                        preempt_idle=True, record_steps=True)


@pytest.fixture(scope="module")
async def small_engine():
    async with StreamEngine(PRESSURE) as engine:
        yield engine


async def test_more_sessions_than_fit_all_finish_exactly(small_engine):
    engine = small_engine
    total_blocks = engine.ledger.read_status().blocks_total
    rng = random.Random(11)
    sessions = [engine.open_session(question=f"session {i}: {random_text(rng, 3, 6)}") for i in range(8)]
    for _ in range(4):  # rounds of context: each session grows to ~12 blocks
        for session in sessions:
            await session.append([Chunk(text=random_text(rng, 50, 60))])
            await asyncio.sleep(0.01)
    need = sum(-(-len(s.prompt_token_ids) // 32) for s in sessions)
    assert need > total_blocks, (need, total_blocks)  # they cannot all be resident at once

    async def finish(session):
        await session.finish_context()
        return [t async for d in session.generate(max_tokens=8, ignore_eos=True) for t in d.token_ids]

    async with asyncio.timeout(180):  # a deadlock fails here instead of hanging
        answers = await asyncio.gather(*(finish(s) for s in sessions))
    for session, answer in zip(sessions, answers):
        one_shot = await engine.complete(prompt_token_ids=session.prompt_token_ids, max_tokens=8, ignore_eos=True)
        assert answer == list(one_shot.token_ids), session.id
    stats = engine.preemption_stats()
    assert stats.total > 0 and set(stats.by_mode) == {"recompute"}
    assert stats.resumed > 0 and stats.tokens_dropped > 0
    assert await engine.wait_for_blocks(0) == 0


A = Candidate("a", arrival=1.0, last_chunk=5.0, complete=False, computed=100)
B = Candidate("b", arrival=2.0, last_chunk=3.0, complete=True, computed=50)
C = Candidate("c", arrival=3.0, last_chunk=4.0, complete=False, computed=300)
D = Candidate("d", arrival=4.0, last_chunk=6.0, complete=True, computed=10)


@pytest.mark.parametrize("policy, expected, evict", [
    ("vllm", "abcd", "dcba"),   # as queued; vLLM evicts the latest arrival first
    ("fcfs", "bdac", "cadb"),   # complete first by arrival, then the rest by arrival
    ("lcas", "bdca", "acdb"),   # complete first by last chunk, then the rest by last chunk
    ("mcps", "cabd", "dbac"),   # most computed first; the fewest are evicted first
])
def test_policy_orders_a_constructed_queue(policy, expected, evict):
    assert "".join(c.request_id for c in order(policy, [A, B, C, D])) == expected
    assert "".join(c.request_id for c in victims(policy, [A, B, C, D])) == evict
