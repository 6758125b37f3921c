"""Memory pressure: more concurrent sessions than the KV cache holds all finish, exactly.

A second engine with a deliberately small cache (40 blocks of 32 tokens) runs the "fcfs"
policy with idle-session preemption: sessions waiting for their next chunk give their
blocks back when a ready request lacks them, and resume by recompute or from the prefix cache.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from engine import EngineConfig, Sampling, StreamEngine
from engine.local.policies import Candidate, order, victims
from tests.text import random_text, text_chunk

# serial_finals off: answers prefilled one per step rarely leave a ready request short of blocks,
# and these tests are about what happens when they do (the fuzzer runs with it on).
PRESSURE = EngineConfig(model="tiny", max_model_len=1024, block_size=32, num_kv_blocks=40,
                        kv_cache_gib=0.25, max_num_batched_tokens=1024, policy="fcfs",
                        preempt_idle=True, record_steps=True, serial_finals=False)


@pytest.fixture(scope="module")
async def small_engine():
    async with StreamEngine(PRESSURE) as engine:
        yield engine


@pytest.fixture(params=["fcfs", "mcps"])
async def pressure_engine(request, small_engine):
    """The small cache under fcfs (shared) and under mcps, whose order is not urgency (~20 s)."""
    if request.param == "fcfs":
        yield small_engine
        return
    async with StreamEngine(replace(PRESSURE, policy=request.param)) as engine:
        yield engine


async def test_more_sessions_than_fit_all_finish_exactly(pressure_engine):
    engine = pressure_engine
    total_blocks = engine.ledger.read_status().blocks_total
    rng = random.Random(11)
    sessions = [await engine.open_session(question=f"session {i}: {random_text(rng, 3, 6)}") for i in range(8)]
    for _ in range(4):  # rounds of context: each session grows to ~12 blocks
        for session in sessions:
            await session.append([text_chunk(random_text(rng, 50, 60))])
            await asyncio.sleep(0.01)
    need = sum(-(-len(s.prompt_token_ids) // 32) for s in sessions)
    assert need > total_blocks, (need, total_blocks)  # they cannot all be resident at once

    async def finish(session):
        await session.finish_context()
        return [t async for d in session.generate(Sampling(max_tokens=8, ignore_eos=True)) for t in d.token_ids]

    async with asyncio.timeout(180):  # a deadlock fails here instead of hanging
        answers = await asyncio.gather(*(finish(s) for s in sessions))
    for session, answer in zip(sessions, answers):
        one_shot = await engine.complete(prompt_token_ids=session.prompt_token_ids, sampling=Sampling(max_tokens=8, ignore_eos=True))
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


async def _fill(engine, session, rng, blocks: int, last: bool = False) -> None:
    """Append one chunk that brings `session` to at least `blocks` KV blocks of 32 tokens."""
    text = ""
    while len(session.prompt_token_ids) + len(engine.template.chunk_ids(text, len(session.chunks) + 1)) < blocks * 32:
        text += random_text(rng, 20, 20) + " "
    await session.append([text_chunk(text)], last=last)


async def _answer(session, n: int = 4) -> list[int]:
    return [t async for d in session.generate(Sampling(max_tokens=n, ignore_eos=True)) for t in d.token_ids]


async def test_waiting_sessions_give_blocks_to_higher_priority_and_to_a_stall(small_engine):
    """fcfs: a complete context takes blocks from partial ones; and when nothing at all can
    run, a paused session gives way even to a later partial one, so the engine never jams."""
    engine = small_engine
    assert await engine.wait_for_blocks(0) == 0
    rng = random.Random(5)
    holder = await engine.open_session(question="the first to arrive", system="priority test")
    await _fill(engine, holder, rng, blocks=24)
    await holder.wait_prefilled()  # now paused, holding 24 of the 39 blocks

    later = await engine.open_session(question="a later partial context", system="priority test")
    await _fill(engine, later, rng, blocks=18)  # does not fit beside the holder: a stall
    async with asyncio.timeout(60):
        await later.wait_prefilled()
    stall = engine.ledger.events("preempt", holder.id)
    assert stall and all(e["for_request"].startswith(later.id) for e in stall)

    complete = await engine.open_session(question="a complete context", system="priority test")
    await _fill(engine, complete, rng, blocks=24, last=True)  # complete: ranks above later
    async with asyncio.timeout(120):
        first = await _answer(complete)
        taken = engine.ledger.events("preempt", later.id)
        assert taken and all(e["for_request"].startswith(complete.id) for e in taken)
        await holder.finish_context()
        await later.finish_context()
        answers = [first, await _answer(holder), await _answer(later)]
    for session, answer in zip((complete, holder, later), answers):
        one_shot = await engine.complete(prompt_token_ids=session.prompt_token_ids, sampling=Sampling(max_tokens=4, ignore_eos=True))
        assert answer == list(one_shot.token_ids), session.id
    assert engine.ledger.events("resume", holder.id) and engine.ledger.events("resume", later.id)
    assert await engine.wait_for_blocks(0) == 0


async def test_complete_contexts_are_prefilled_without_partial_ones(small_engine):
    """isolate_final: no step prefills a complete context together with a partial one."""
    engine = small_engine
    rng = random.Random(9)
    first_step = len(engine.ledger.step_records())

    async def play(i: int) -> list[int]:
        session = await engine.open_session(question=f"isolation {i}", system=f"isolation test {i}")
        for j in range(4):
            await asyncio.sleep(rng.uniform(0, 0.05))
            await session.append([text_chunk(random_text(rng, 15, 30))], last=j == 3)
        return session, await _answer(session, 2)

    async with asyncio.timeout(120):
        played = await asyncio.gather(*(play(i) for i in range(6)))
    steps = engine.ledger.step_records()[first_step:]
    assert all(a["t"] <= b["t"] for a, b in zip(steps, steps[1:]))  # when each was scheduled, in order
    prefills = [s for s in steps if any(n > 1 and r in s["complete"] for r, n in s["scheduled"].items())]
    assert prefills  # complete contexts were prefilled, and each time alone among partial ones:
    for step in prefills:
        assert set(step["scheduled"]) <= set(step["complete"]), step
    for session, answer in played:
        one_shot = await engine.complete(prompt_token_ids=session.prompt_token_ids, sampling=Sampling(max_tokens=2, ignore_eos=True))
        assert answer == list(one_shot.token_ids), session.id


async def test_complete_contexts_are_prefilled_one_per_step(engine):
    """serial_finals (on CPU by default): answers whose contexts complete together are prefilled
    one after the other, in the policy's order, not batched (each would wait for the largest)."""
    assert engine.config.finals_in_series
    rng = random.Random(10)
    first_step = len(engine.ledger.step_records())
    sessions = [await engine.open_session(question=f"serial {i}", system=f"serial finals {i}") for i in range(5)]
    for session in sessions:
        await session.append([text_chunk(random_text(rng, 20, 40))])
    await asyncio.gather(*(s.wait_prefilled() for s in sessions))
    for session in sessions:  # every context completes at once, each with a tail of its own
        await session.append([text_chunk(random_text(rng, 30, 60))], last=True)
    async with asyncio.timeout(120):
        answers = await asyncio.gather(*(_answer(s, 2) for s in sessions))
    steps = engine.ledger.step_records()[first_step:]
    finals = [s for s in steps if any(n > 1 and r in s["complete"] for r, n in s["scheduled"].items())]
    assert len(finals) >= len(sessions)  # every answer's tail had a step of its own:
    for step in finals:
        assert sum(n > 1 and r in step["complete"] for r, n in step["scheduled"].items()) == 1, step
    for session, answer in zip(sessions, answers):
        one_shot = await engine.complete(prompt_token_ids=session.prompt_token_ids, sampling=Sampling(max_tokens=2, ignore_eos=True))
        assert answer == list(one_shot.token_ids), session.id


def test_preemption_and_isolation_default_to_the_policy():
    assert EngineConfig().policy == "fcfs" and EngineConfig().idle_preemption and EngineConfig().final_isolation
    assert not EngineConfig(policy="vllm").idle_preemption and not EngineConfig(policy="vllm").final_isolation
    assert EngineConfig(policy="lcas").idle_preemption and EngineConfig(policy="mcps").final_isolation
    assert EngineConfig(platform="cpu").finals_in_series and not EngineConfig(platform="cuda").finals_in_series
    assert not EngineConfig(platform="cpu", policy="vllm").finals_in_series
    assert not EngineConfig(platform="cpu", serial_finals=False).finals_in_series
    assert not EngineConfig(policy="fcfs", preempt_idle=False).idle_preemption
