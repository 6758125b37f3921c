"""Scheduling policies: who gets compute and memory first when sessions compete.

A policy is a sort key over `Candidate`s, highest priority first. The scheduler sorts vLLM's
running list and waiting queues by it before every step, so vLLM's own loop walks them in
that order reserving token budget and blocks, and preempts from the tail (the lowest
priority) when blocks run out: decision (the order) is decoupled from acquisition
(allocation and preemption, which stay vLLM's). Sessions that hold KV while they wait are
preempted by the same order, from the tail, and only for a request of higher priority.

    vllm  vLLM's own order (arrival of the request); no reordering
    fcfs  sessions whose context is complete first, by arrival; then the rest by arrival
    lcas  complete first; then by arrival of the last chunk, earliest first
    mcps  most computed tokens first (so the fewest are evicted first); ties by arrival
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """What a policy may look at for one request (times are `time.monotonic()` seconds)."""

    request_id: str
    arrival: float  # when the session (or one-shot request) first arrived
    last_chunk: float  # when its latest context piece arrived
    complete: bool  # its context is complete: the final piece (with the gate's tail) is in
    computed: int  # tokens whose KV it holds now


def _fcfs(c: Candidate) -> tuple:
    return (not c.complete, c.arrival, c.request_id)


def _lcas(c: Candidate) -> tuple:
    return (not c.complete, c.last_chunk, c.request_id)


def _mcps(c: Candidate) -> tuple:
    return (-c.computed, c.arrival, c.request_id)


# One key per name of engine.config.Policy (tests/test_engine_policies.py checks they match).
KEYS: dict[str, Callable[[Candidate], tuple] | None] = {
    "vllm": None,
    "fcfs": _fcfs,
    "lcas": _lcas,
    "mcps": _mcps,
}


def priority(policy: str, c: Candidate) -> tuple:
    """`c`'s sort key under `policy`: smaller is served first. Under "vllm", by arrival."""
    key = KEYS[policy]
    return (c.arrival, c.request_id) if key is None else key(c)


def order(policy: str, candidates: Sequence[Candidate]) -> list[Candidate]:
    """Candidates highest priority first; "vllm" keeps the given order."""
    key = KEYS[policy]
    return list(candidates) if key is None else sorted(candidates, key=key)


def victims(policy: str, candidates: Sequence[Candidate]) -> list[Candidate]:
    """Who gives memory back first: the lowest priority first.

    Under "vllm" the latest arrival goes first, as vLLM preempts its running requests.
    """
    return sorted(candidates, key=lambda c: priority(policy, c), reverse=True)
