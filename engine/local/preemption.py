"""Preemption of waiting sessions: KV back from sessions that hold it while they wait.

vLLM never preempts a session that waits for its next piece (or sits at the gate, or is queued
and not scheduled): it holds its blocks however long it waits. After each step, if the best
ready request that lacks blocks could be admitted by taking blocks from such sessions, they
give theirs back, lowest priority first, and only those ranked below it, and only when
together they free enough: a preemption that cannot admit the starved request would only
throw work away.

One exception keeps the engine moving: when a step scheduled nothing at all, paused sessions of
higher priority give their blocks too (lowest first). They cannot use them before their next
piece comes, and without this a policy whose order is not urgency (mcps ranks by tokens held)
can leave every block with paused sessions while everyone ready waits.

A victim keeps its tokens and block hashes; it continues from its old frontier with nothing
computed, so vLLM recomputes it or finds its blocks in the prefix cache (engine/local/replace.py
says why a request with nothing computed must be untracked by vLLM's block managers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import engine.local.vllm_internals as vi
from engine.local.policies import Candidate, priority, victims


@dataclass(frozen=True)
class Preemption:
    """One session that gave its KV back, for the ledger."""

    request_id: str
    tokens: int
    freed_blocks: int
    for_request: str


def preempt_for_starved(sched, policy: str, scheduled: dict[str, int],
                        candidate: Callable[[object], Candidate]) -> list[Preemption]:
    """Take blocks from waiting sessions below the best starved request, if that admits it."""
    free = vi.free_blocks(sched)
    # The best ready request that waits for blocks (not one held back for a step).
    short = [r for queue in vi.waiting_queues(sched) for r in queue
             if vi.is_ready(r) and r.request_id not in scheduled and vi.blocks_needed(sched, r) > free]
    if not short:
        return []
    rank = lambda r: priority(policy, candidate(r))  # noqa: E731
    starved = min(short, key=rank)
    need = vi.blocks_needed(sched, starved)
    floor = rank(starved)
    holders = {r.request_id: r for r in sched.kv_holding_waiting
               if r.num_computed_tokens > 0 and r.request_id not in scheduled and (vi.is_paused(r) or vi.is_ready(r))}
    order = victims(policy, [candidate(r) for r in holders.values()])
    eligible = [c for c in order if priority(policy, c) > floor]
    if not scheduled:  # a stall, not a queue: paused sessions above it give way too
        eligible += [c for c in order if priority(policy, c) <= floor and vi.is_paused(holders[c.request_id])]
    plan, freed = [], 0
    for victim in eligible:
        if free + freed >= need:
            break
        plan.append(holders[victim.request_id])
        freed += vi.held_blocks(sched, victim.request_id)
    if free + freed < need:
        return []
    done = []
    for request in plan:
        tokens = request.num_computed_tokens
        blocks = vi.release_request_kv(sched, request)
        done.append(Preemption(request.request_id, tokens, blocks, starved.request_id))
    return done
