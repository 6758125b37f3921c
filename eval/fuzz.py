"""Property-based fuzzing of the engine: random interleavings of sessions that share prefixes.

    python -m eval.fuzz --minutes 30 [--policies fcfs mcps ...]      (make fuzz)

A scenario is a few concurrent sessions, each with one of three questions and two system
prompts and chunks drawn from a pool of ten CPython reference texts (so sessions share
prefixes, and what one leaves in vLLM's prefix cache meets another's replace), doing appends,
updates (keep a prefix and change the tail, reorder after a prefix, replace everything),
`last=True`, `finish_context`, waits, pauses, aborts, and a generate that may leave early.
Hypothesis draws scenarios and shrinks a failing one to a minimal sequence.

Invariants checked after every scenario, from vLLM's own records (the scheduler ledger):
  - the engine is alive (`health().ok`): no input may kill it;
  - a finished greedy answer equals `engine.complete(prompt_token_ids=...)` of its prompt;
  - each replace cut at a block boundary, at most one block below what it kept;
  - a session computed no more than its final prompt and answer plus what replaces threw
    away and preemptions dropped (recompute is bounded by vLLM's own counts);
  - afterwards no session is live and no KV block is held.

tests/test_engine_fuzz.py runs a fixed budget of examples per policy in `make test`; this
module's `main` runs thousands for a long profile and prints what they covered.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from contextlib import aclosing
from dataclasses import dataclass

from hypothesis import strategies as st

from engine import ContextClosedError, EngineConfig, PromptTooLongError, Sampling, StreamEngine
from retrievers import Chunk

QUESTIONS = ("What does a for loop do?", "How are exceptions raised?", "What is a lambda?")
SYSTEMS = ("s", "Answer from the context.")  # the short one keeps the prefix under one block
TOPICS = ("for", "while", "try", "with", "if", "class", "lambda", "import", "return", "raise")
POOL = 10
TIMEOUT_S = 120.0


def fuzz_config(policy: str, **overrides) -> EngineConfig:
    """A small engine: 32-token blocks and a KV cache that two full sessions overfill (40 blocks,
    1,280 tokens; a session holds up to 1,024), so preemption happens. Every policy runs with
    idle preemption: without it vLLM's own order can wait forever when paused sessions hold
    every block (that jam is what the policies exist to fix)."""
    values = dict(model="tiny", dtype="float32", max_model_len=1024, block_size=32, num_kv_blocks=40,
                  max_num_batched_tokens=1024, record_steps=True, policy=policy, preempt_idle=True)
    return EngineConfig(**{**values, **overrides})


def chunk_pool() -> list[Chunk]:
    """Ten reference passages of 20-90 words (deterministic)."""
    from pydoc_data.topics import topics

    rng = random.Random(13)
    out = []
    for name in TOPICS:
        words = topics[name].split()
        start = rng.randrange(0, max(1, len(words) - 100))
        out.append(Chunk(f"ref-{name}", " ".join(words[start:start + rng.randint(20, 90)]), 1.0, name))
    return out


@dataclass(frozen=True)
class Op:
    kind: str  # append | update | finish | wait | pause | abort
    chunks: tuple[int, ...] = ()  # append: pool indices; update: the tail to add
    keep: int = 0  # update: chunks kept from the current list
    reorder: bool = False  # update: shuffle the kept ones after the first
    last: bool = False
    pause_ms: int = 0


@dataclass(frozen=True)
class SessionScript:
    question: int
    system: int
    update_mode: str
    ops: tuple[Op, ...]
    max_tokens: int
    leave_after: int | None  # leave the answer after this many deltas (None: read it all)


@dataclass(frozen=True)
class Scenario:
    sessions: tuple[SessionScript, ...]


_idx = st.integers(0, POOL - 1)
_op = st.one_of(
    st.builds(Op, st.just("append"), st.tuples(_idx) | st.tuples(_idx, _idx)),
    st.builds(Op, st.just("update"), st.lists(_idx, max_size=3).map(tuple), st.integers(0, 4), st.booleans()),
    st.builds(Op, st.just("wait")),
    st.builds(Op, st.just("pause"), pause_ms=st.integers(0, 30)),
)
_ending = st.one_of(
    st.just(Op("finish")),
    st.builds(Op, st.just("append"), st.tuples(_idx), last=st.just(True)),
    st.builds(Op, st.just("update"), st.lists(_idx, min_size=1, max_size=2).map(tuple), st.integers(0, 3),
              last=st.just(True)),
    st.just(Op("abort")),
)
session_scripts = st.builds(
    SessionScript, st.integers(0, len(QUESTIONS) - 1), st.integers(0, len(SYSTEMS) - 1),
    st.sampled_from(("lcp", "lcp", "lcp", "reopen")),
    st.tuples(st.lists(_op, min_size=1, max_size=7), _ending).map(lambda t: (*t[0], t[1])),
    st.integers(1, 8), st.none() | st.integers(0, 3),
)
scenarios = st.builds(Scenario, st.lists(session_scripts, min_size=1, max_size=4).map(tuple))


@dataclass
class Outcome:
    session_id: str | None = None
    finished: bool = False
    answer: tuple[int, ...] = ()
    prompt: tuple[int, ...] = ()
    update_mode: str = "lcp"
    ops: Counter | None = None


async def run_session(engine: StreamEngine, pool: list[Chunk], script: SessionScript) -> Outcome:
    out = Outcome(update_mode=script.update_mode, ops=Counter())
    session = await engine.open_session(QUESTIONS[script.question], SYSTEMS[script.system],
                                        update_mode=script.update_mode)
    out.session_id = session.id
    current: list[Chunk] = []
    closed = False
    try:
        for op in script.ops:
            out.ops[op.kind + ("+last" if op.last else "")] += 1
            if op.kind == "abort":
                await session.abort()
                return out
            if op.kind in ("append", "update", "finish") and closed:
                raise AssertionError("scripts never push after the context closed")
            if op.kind == "append":
                chunks = [pool[i] for i in op.chunks]
                if await _refused_as_too_long(session.append(chunks, last=op.last), out):
                    continue  # the session keeps what it had
                current += chunks
            elif op.kind == "update":
                kept = current[: op.keep]
                if op.reorder and len(kept) > 2:
                    kept = kept[:1] + random.Random(len(kept)).sample(kept[1:], len(kept) - 1)
                ranking = kept + [pool[i] for i in op.chunks]
                if await _refused_as_too_long(session.update(ranking, last=op.last), out):
                    continue
                current = ranking
            elif op.kind == "finish":
                await session.finish_context()
            elif op.kind == "wait":
                await session.wait_prefilled()
            elif op.kind == "pause":
                await asyncio.sleep(op.pause_ms / 1000)
            closed = closed or op.last or op.kind == "finish"
        if not closed:
            await session.finish_context()
        try:
            await session.append([pool[0]])
            raise AssertionError("append after the context closed must raise")
        except ContextClosedError:
            pass
        answer: list[int] = []
        sampling = Sampling(max_tokens=script.max_tokens, ignore_eos=True)
        async with aclosing(session.generate(sampling)) as deltas:
            async for i, delta in _enumerate(deltas):
                answer += delta.token_ids
                if script.leave_after is not None and i >= script.leave_after:
                    break
        out.finished = session.state == "finished"
        out.answer, out.prompt = tuple(answer), tuple(session.prompt_token_ids)
        return out
    finally:
        await session.abort()


async def _refused_as_too_long(push, out: Outcome) -> bool:
    """Run a push; True if the session refused it as too long for the context (then nothing
    changed, and a `last=True` did not close the context)."""
    try:
        await push
    except PromptTooLongError:
        out.ops["too_long"] += 1
        return True
    return False


async def _enumerate(items):
    i = 0
    async for item in items:
        yield i, item
        i += 1


async def check_scenario(engine: StreamEngine, pool: list[Chunk], scenario: Scenario) -> Counter:
    """Run one scenario and assert every invariant; returns what it covered."""
    first_event = len(engine.ledger.events("replace")) + len(engine.ledger.events("preempt"))
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(run_session(engine, pool, s) for s in scenario.sessions)), TIMEOUT_S)
    health = engine.health()
    assert health.ok, f"the engine died: {health.reason}"
    covered = Counter(sessions=len(outcomes))
    for out in outcomes:
        covered.update(out.ops)
        covered["finished"] += out.finished
        if not out.finished:
            continue
        n = len(out.answer)
        one_shot = await engine.complete(prompt_token_ids=list(out.prompt), sampling=Sampling(max_tokens=n, ignore_eos=True))
        assert list(out.answer) == list(one_shot.token_ids), f"session {out.session_id}: answer differs from one-shot"
        if out.update_mode == "lcp":
            covered.update(_check_ledger(engine, out))
    assert engine.live_sessions == 0, f"{engine.live_sessions} sessions still live"
    held = await engine.wait_for_blocks(0, timeout_s=10)
    assert held == 0, f"{held} KV blocks held after every session ended"
    events = len(engine.ledger.events("replace")) + len(engine.ledger.events("preempt"))
    covered["scheduler_events"] += events - first_event
    return covered


def _check_ledger(engine: StreamEngine, out: Outcome) -> Counter:
    block = engine.config.block_size
    replaces = engine.ledger.replaces(out.session_id)
    thrown = 0
    for r in replaces:
        assert r["cut"] % block == 0, r
        assert min(r["keep"], r["computed"]) - r["cut"] < block, f"a replace cut more than a block below the LCP: {r}"
        thrown += r["computed"] - r["cut"]
    preempted = sum(e["tokens"] for e in engine.ledger.events("preempt", out.session_id))
    scheduled = sum(engine.ledger.scheduled_tokens(out.session_id))
    bound = len(out.prompt) + len(out.answer) - 1 + thrown + preempted
    assert scheduled <= bound, f"session {out.session_id} computed {scheduled} tokens, more than {bound}"
    return Counter(replaces=len(replaces), cut_to_zero=sum(r["cut"] == 0 for r in replaces),
                   preempted_sessions=int(preempted > 0))


async def _profile(policies: list[str], minutes: float) -> Counter:
    from hypothesis import HealthCheck, given, settings

    total = Counter()
    per_policy_s = minutes * 60 / len(policies)
    pool = chunk_pool()
    for policy in policies:
        async with StreamEngine(fuzz_config(policy)) as engine:
            deadline = asyncio.get_running_loop().time() + per_policy_s
            done = Counter()
            loop = asyncio.get_running_loop()

            @settings(max_examples=25, deadline=None, database=None, derandomize=False,
                      suppress_health_check=list(HealthCheck))
            @given(scenarios)
            def case(scenario: Scenario) -> None:
                if loop.time() > deadline:
                    return
                done.update(asyncio.run_coroutine_threadsafe(check_scenario(engine, pool, scenario), loop).result())
                done["scenarios"] += 1

            await asyncio.to_thread(_until, case, deadline, loop)
            print(f"{policy}: {_line(done)}", flush=True)
            total.update(done)
    return total


def _until(case, deadline: float, loop) -> None:
    while loop.time() < deadline:
        case()


def _line(c: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items()))


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="fuzz the engine with random sessions that share prefixes")
    p.add_argument("--minutes", type=float, default=10.0, help="total time, split over the policies")
    p.add_argument("--policies", nargs="+", default=["vllm", "fcfs", "lcas", "mcps"])
    args = p.parse_args(argv)
    total = asyncio.run(_profile(args.policies, args.minutes))
    print(f"all: {_line(total)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
