"""The remote backend on two real vLLM servers: exactness, reuse the servers report, affinity.

Exactness compares token ids from the servers themselves: a session's greedy answer must equal
the one-shot completion of the same prompt on *each* server, one of which (the session's) has
the prompt warmed and the other of which has never seen it.
"""

from __future__ import annotations

import asyncio
import random
from contextlib import aclosing

import pytest

from engine import ContextClosedError, Gate, PromptTooLongError, Sampling
from engine.remote import VLLMServersEngine, VLLMServersSession
from retrievers import Chunk
from tests.remote_fixtures import REMOTE_BLOCK_SIZE
from tests.text import random_text, text_chunk

ANSWER_TOKENS = 12


def passage(seed: str, words: int) -> str:
    return random_text(random.Random(seed), words, words)


def chunks(tag: str, n: int, words: int = 40) -> list[Chunk]:
    return [Chunk(text=passage(f"{tag}-{i}", words), id=f"{tag}-{i}", score=1.0 - 0.1 * i) for i in range(n)]


async def answer(session: VLLMServersSession, max_tokens: int = ANSWER_TOKENS) -> tuple[int, ...]:
    ids: list[int] = []
    async with aclosing(session.generate(Sampling(max_tokens=max_tokens, ignore_eos=True))) as deltas:
        async for delta in deltas:
            ids.extend(delta.token_ids)
    return tuple(ids)


async def one_shot(engine: VLLMServersEngine, prompt: list[int], replica: str,
                   max_tokens: int = ANSWER_TOKENS) -> tuple[int, ...]:
    done = await engine.complete(prompt_token_ids=prompt, replica=replica, sampling=Sampling(max_tokens=max_tokens, ignore_eos=True))
    return done.token_ids


async def sessions_on_both(engine: VLLMServersEngine, per_replica: int, **kwargs) -> list[VLLMServersSession]:
    """Open sessions until each replica holds `per_replica` (ids are random; the ring decides)."""
    kept: dict[str, list[VLLMServersSession]] = {url: [] for url in engine.replicas.urls}
    for i in range(64):
        s = await engine.open_session(question=f"Question {i} about the passages?", **kwargs)
        if len(kept[s.replica]) < per_replica:
            kept[s.replica].append(s)
        else:
            await s.abort()
        if all(len(v) == per_replica for v in kept.values()):
            return [s for group in kept.values() for s in group]
    raise AssertionError(f"64 random session ids did not cover both replicas: {kept}")


async def test_sessions_answer_as_each_server_does_one_shot_and_reuse_the_warmed_prefix(remote_engine):
    sessions = await sessions_on_both(remote_engine, per_replica=1)
    for n, s in enumerate(sessions):
        for step in range(3):  # three arrivals, each warmed before the next comes
            await s.append(chunks(f"s{n}-a{step}", 2))
            await s.wait_prefilled()
        await s.finish_context()
    answers = await asyncio.gather(*(answer(s) for s in sessions))

    for s, tokens in zip(sessions, answers):
        assert len(tokens) == ANSWER_TOKENS
        for url in remote_engine.replicas.urls:  # warm on its own replica, cold on the other
            assert tokens == await one_shot(remote_engine, s.prompt_token_ids, url), url
        warms, final = s.server_requests[:-1], s.server_requests[-1]
        assert final.kind == "final" and all(r.kind == "warm" for r in warms)
        warmed = warms[-1].prompt_tokens
        # The server's own count: everything the last warm computed, to the block, was reused.
        assert final.cached_tokens >= warmed - warmed % REMOTE_BLOCK_SIZE
        assert s.stats.prefilled_before_gate == warmed == len(s.prompt_token_ids) - s.stats.tail_prefill_tokens
        assert s.stats.reused_tokens == sum(
            min(r.cached_tokens, prev.prompt_tokens) for prev, r in zip(s.server_requests, s.server_requests[1:]))


async def test_every_request_of_a_session_goes_to_its_replica(remote_engine):
    sessions = await sessions_on_both(remote_engine, per_replica=3)
    for round_ in range(3):
        for s in sessions:
            await s.append(chunks(f"{s.id}-{round_}", 1, words=20))
    for s in sessions:
        await s.finish_context()
    await asyncio.gather(*(answer(s, 2) for s in sessions))
    for s in sessions:
        assert s.replica == remote_engine.replicas.pick(s.id)
        assert {r.replica for r in s.server_requests} == {s.replica}
        assert s.failovers == 0
    assert {s.replica for s in sessions} == set(remote_engine.replicas.urls)


async def test_a_burst_is_coalesced_into_one_warm_at_a_time(remote_engine):
    question = "What do the passages say?"
    closing = len(remote_engine.template.render(question).closing_ids)
    s = await remote_engine.open_session(question=question)
    for i in range(8):  # no await between them that lets a warm finish
        await s.append(chunks(f"burst-{i}", 1, words=30))
    await s.wait_prefilled()
    # The prefix went out at once; the eight appends waited for it and went as one more warm.
    assert [r.kind for r in s.server_requests] == ["warm", "warm"]
    assert s.server_requests[-1].prompt_tokens == len(s.prompt_token_ids) - closing
    await s.finish_context()
    tokens = await answer(s)
    assert tokens == await one_shot(remote_engine, s.prompt_token_ids, s.replica)


async def test_an_update_reuses_what_the_server_kept_and_matches_one_shot(remote_engine):
    s = await remote_engine.open_session(question="Which passage matters most?")
    ranking = chunks("rank", 4, words=50)
    await s.update(ranking)
    await s.wait_prefilled()
    await s.update(ranking[:2] + [ranking[3], ranking[2]])  # the first two keep their place
    await s.wait_prefilled()
    await s.finish_context()
    tokens = await answer(s)
    assert tokens == await one_shot(remote_engine, s.prompt_token_ids, s.replica)
    stats = s.stats
    assert stats.updates == 2 and stats.invalidated_tokens > 0
    assert stats.reused_tokens >= REMOTE_BLOCK_SIZE  # at least the prefix and the first chunks' blocks


async def test_gate_semantics_are_the_in_process_ones(remote_engine):
    s = await remote_engine.open_session(question="Enough?", gate=Gate(min_chunks=2))
    await s.append(chunks("g", 2))
    assert s.gate_is_open and await s.wait_gate() == "criteria"
    late = await s.append(chunks("late", 1))
    assert (late.accepted, late.dropped) == (0, 1) and s.stats.chunks_dropped_late == 1
    await s.abort()

    s = await remote_engine.open_session(question="Stable?", gate=Gate(stable_updates=2, stable_top_k=2))
    ranking = chunks("st", 3)
    for tail in ([ranking[2]], [], [ranking[2]]):
        assert not s.gate_is_open
        await s.update(ranking[:2] + tail)
    assert await s.wait_gate() == "criteria"
    await s.abort()

    s = await remote_engine.open_session(question="Deadline?", gate=Gate(min_chunks=0, max_wait_s=0.2))
    assert await asyncio.wait_for(s.wait_gate(), 5) == "deadline"
    await s.finish_context()
    with pytest.raises(ContextClosedError):
        await s.append(chunks("after", 1))
    assert len(await answer(s, 3)) == 3


async def test_too_long_a_prompt_is_refused_before_reaching_a_server(remote_engine):
    s = await remote_engine.open_session(question="Long?")
    with pytest.raises(PromptTooLongError):
        await s.append([text_chunk(passage("long", 3000))])
    await s.abort()


async def test_ended_sessions_leave_no_kv_blocks_on_the_servers(remote_engine):
    sessions = await sessions_on_both(remote_engine, per_replica=2)
    for s in sessions:
        await s.append(chunks(s.id, 2))
        await s.finish_context()
    done = await answer(sessions[0], 4)
    assert len(done) == 4
    async with aclosing(sessions[1].generate(Sampling(max_tokens=500, ignore_eos=True))) as deltas:
        async for _ in deltas:
            break  # the client leaves mid-answer: the request is aborted on its server
    for s in sessions[2:]:
        await s.abort()
    assert remote_engine.live_sessions == 0
    assert await remote_engine.wait_for_blocks(0, timeout_s=15) == 0
