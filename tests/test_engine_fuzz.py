"""Property-based engine tests: random sessions sharing prefixes on one long-lived engine per
policy, with a KV cache small enough that preemption happens (eval/fuzz.py has the scenarios
and the invariants; `make fuzz` runs the long profile)."""

from __future__ import annotations

from contextlib import aclosing

import pytest
from hypothesis import HealthCheck, given, settings

from engine import Sampling, StreamEngine
from eval.fuzz import (
    QUESTIONS,
    SYSTEMS,
    Scenario,
    check_scenario,
    chunk_pool,
    fuzz_config,
    scenarios,
)

EXAMPLES = 10  # per policy: a bounded budget for `make test`


@pytest.fixture(scope="module", params=["vllm", "fcfs", "lcas", "mcps"])
async def fuzz_engine(request):
    async with StreamEngine(fuzz_config(request.param)) as engine:
        yield engine


@pytest.fixture(scope="module")
def pool():
    return chunk_pool()


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios)
async def test_random_sessions_keep_every_invariant(fuzz_engine, pool, scenario: Scenario):
    await check_scenario(fuzz_engine, pool, scenario)


async def _answer(session, n: int = 6) -> list[int]:
    async with aclosing(session.generate(Sampling(max_tokens=n, ignore_eos=True))) as deltas:
        return [t async for d in deltas for t in d.token_ids]


async def test_issue_13_a_replace_onto_a_prefix_another_session_cached(fuzz_engine, pool):
    """Issue 13: a replace that keeps less than one block used to leave the request tracked by
    vLLM's block managers with nothing computed; its prefix-cache lookup then hit blocks an
    earlier session had cached, and EngineCore died on `assert len(new_computed_blocks) == 0`."""
    c1, c3, c4, c5, c8 = (pool[i] for i in (1, 3, 4, 5, 8))
    question, system = QUESTIONS[0], SYSTEMS[0]
    prefix = len(fuzz_engine.template.render(question, system).prefix_ids)
    assert prefix < fuzz_engine.config.block_size, "the LCP of the replace below must be under one block"
    earlier = await fuzz_engine.open_session(question, system)  # caches [prefix][c4][c1][c3] blocks
    await earlier.append([c4, c1, c3], last=True)
    await _answer(earlier)
    session = await fuzz_engine.open_session(question, system)  # the issue's sequence
    await session.append([c1])
    for ranking in ([c8, c5], [c8, c5, c8], [c8, c5, c8], [c4]):
        await session.update(ranking)
        await session.wait_prefilled()
    await session.update([c1, c4, c3])
    await session.finish_context()
    answer = await _answer(session)
    assert fuzz_engine.health().ok
    one_shot = await fuzz_engine.complete(prompt_token_ids=session.prompt_token_ids,
                                          sampling=Sampling(max_tokens=6, ignore_eos=True))
    assert answer == list(one_shot.token_ids)
    assert any(r["cut"] == 0 for r in fuzz_engine.ledger.replaces(session.id))
    assert await fuzz_engine.wait_for_blocks(0) == 0


async def test_a_generate_that_arrives_during_a_reopen_is_not_answered_by_the_reopen(fuzz_engine, pool):
    """Found by the fuzzer: in the "reopen" baseline, a generate() that came while the reopened
    request was being set up had its sampling given to the context piece, whose sampled token
    then led the answer."""
    from eval.fuzz import Op, SessionScript

    script = SessionScript(0, 0, "reopen", (Op("append", (0,)), Op("wait"), Op("update", ()), Op("finish")), 2, None)
    await check_scenario(fuzz_engine, pool, Scenario((script,)))
