"""No leak: sessions abandoned at any point give all their KV blocks back."""

from __future__ import annotations

import asyncio
import random

from engine import Gate, Sampling
from tests.text import random_text, text_chunk


class ConsumerFailed(Exception):
    pass


async def _abandon(engine, rng: random.Random, how: str) -> None:
    session = await engine.open_session(question=random_text(rng, 3, 10), gate=Gate(min_chunks=50))
    for _ in range(rng.randint(1, 4)):
        await session.append([text_chunk(random_text(rng, 20, 80))])
        await asyncio.sleep(rng.random() * 0.02)
    if how == "abort mid-context":
        await session.abort()
    elif how == "cancel at the gate":
        task = asyncio.create_task(_drain(session))
        await asyncio.sleep(0.05)  # generate() is now waiting for the gate
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    elif how == "break mid-decode":
        await session.finish_context()
        async for delta in session.generate(Sampling(max_tokens=50, ignore_eos=True)):
            break  # drops the generator: the event loop's async-generator finalizer closes it
        async with asyncio.timeout(5):
            while session.state != "aborted":
                await asyncio.sleep(0.01)
    elif how == "consumer raises":
        await session.finish_context()
        try:
            async with asyncio.timeout(30):
                gen = session.generate(Sampling(max_tokens=50, ignore_eos=True))
                async for delta in gen:
                    raise ConsumerFailed
        except ConsumerFailed:
            await gen.aclose()
    assert session.state == "aborted", how


async def _drain(session):
    async for _ in session.generate(Sampling(max_tokens=10)):
        pass


async def test_fifty_abandoned_sessions_free_everything(engine, idle_blocks):
    rng = random.Random(1234)
    ways = ["abort mid-context", "cancel at the gate", "break mid-decode", "consumer raises"]
    plan = [ways[i % len(ways)] for i in range(50)]
    rng.shuffle(plan)
    peak = 0
    for batch in range(0, 50, 10):  # ten at a time, so they overlap in vLLM
        await asyncio.gather(*(_abandon(engine, rng, how) for how in plan[batch : batch + 10]))
        peak = max(peak, engine.kv_blocks_in_use())
    assert engine.live_sessions == 0
    assert await engine.wait_for_blocks(idle_blocks, timeout_s=15) == idle_blocks


async def test_blocks_are_held_while_a_session_waits(engine, idle_blocks):
    """The counter is live: an idle session waiting for context holds its blocks."""
    rng = random.Random(5)
    session = await engine.open_session(question="q", system="held blocks test", gate=Gate(min_chunks=9))
    await session.append([text_chunk(random_text(rng, 100, 100))])
    await session.wait_prefilled()
    held = engine.kv_blocks_in_use()
    assert held >= (len(session.prompt_token_ids) - len(engine.template.render("q", "held blocks test").closing_ids)) // engine.config.block_size
    await session.abort()
    assert await engine.wait_for_blocks(idle_blocks) == idle_blocks
