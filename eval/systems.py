"""The systems a replay compares, and the per-query TTFT floor.

Each system plays one query against an engine (a `StreamEngine`, or a `StreamRAGClient` for a
server) on a shared clock, and returns a `QueryResult`:

  one-shot       non-streaming: tokenize chunks as they come, wait for the last event, then
                 submit the whole prompt (`complete_stream`);
  vllm-stream    vLLM's own streaming input: a session appends chunks as they come; on an
                 update it ends the vLLM request and resubmits the whole prompt, relying on
                 vLLM's prefix cache (session update mode "reopen");
  streamrag      a session in update mode "lcp": appends as they come, and an update keeps
                 the KV up to the longest common prefix.

All three build the same prompt: `template.render` prefix + `template.chunk_ids(text, i)`
per position + closing. Every run of a query gets its own salted system prompt
(eval/texts.py), so vLLM's prefix cache never hands one run blocks another computed.

The floor of a query is the least any system can do once its last event arrives: prefill
what that event brought plus the closing template, and sample one token. It is measured on
an idle engine with everything before the last event prefilled ahead (untimed).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

from engine import Sampling
from engine.session_context import common_prefix_len
from eval.metrics import QueryResult
from eval.texts import ReplayEvent, ReplayQuery, salted_system

SYSTEMS = ("one-shot", "vllm-stream", "streamrag")
BASELINE = "one-shot"
_MODES = {"vllm-stream": "reopen", "streamrag": "lcp"}


async def run_query(system: str, engine, q: ReplayQuery, t0: float, nonce: int,
                    max_tokens: int = 1) -> QueryResult:
    """Play query `q` with `system`, its arrival at `t0 + q.arrival_s` (perf_counter clock)."""
    await _sleep_until(t0 + q.arrival_s)
    try:
        if system == BASELINE:
            return await _one_shot(engine, q, nonce, max_tokens)
        return await _session(engine, q, nonce, _MODES[system], system, max_tokens)
    except Exception as error:  # a failed query is reported, not fatal to the run
        return QueryResult(q.id, system, finished=False, error=f"{type(error).__name__}: {error}")


async def _one_shot(engine, q: ReplayQuery, nonce: int, max_tokens: int) -> QueryResult:
    t_start = time.perf_counter()
    rendered = engine.template.render(q.question, salted_system(nonce))
    pieces: list[list[int]] = []
    for event in q.events:
        await _sleep_until(t_start + event.t_s)
        pieces = _context_ids(engine.template, pieces, event)
    t_last = time.perf_counter()
    ids = list(rendered.prefix_ids) + [t for p in pieces for t in p] + list(rendered.closing_ids)
    t_first, t_done = await _first_token(
        engine.complete_stream(prompt_token_ids=ids, sampling=Sampling(max_tokens=max_tokens, ignore_eos=True)))
    return QueryResult(q.id, BASELINE, True, len(ids), t_start, t_last, t_first, t_done,
                       prefilled=len(ids), tail_tokens=len(ids))


async def _session(engine, q: ReplayQuery, nonce: int, mode: str, system: str,
                   max_tokens: int) -> QueryResult:
    t_start = time.perf_counter()
    session = await engine.open_session(question=q.question, system=salted_system(nonce), update_mode=mode)
    try:
        for i, event in enumerate(q.events, 1):
            await _sleep_until(t_start + event.t_s)
            await _deliver(session, event, last=i == len(q.events))
        t_last = time.perf_counter()  # after tokenizing the last event, as for one-shot
        t_first, t_done = await _first_token(session.generate(Sampling(max_tokens=max_tokens, ignore_eos=True)))
    finally:
        await session.abort()  # a no-op once finished; frees the KV if anything failed
    return _from_stats(q.id, system, session, t_start, t_last, t_first, t_done)


async def floor(engine, q: ReplayQuery, nonce: int) -> QueryResult:
    """The TTFT floor of `q` on an idle in-process engine (see the module docstring)."""
    session = await engine.open_session(question=q.question, system=salted_system(nonce), update_mode="lcp")
    try:
        t_start = time.perf_counter()
        for event in q.events[:-1]:
            await _deliver(session, event)
        await session.wait_prefilled()
        t_last = time.perf_counter()
        await _deliver(session, q.events[-1], last=True)
        t_first, t_done = await _first_token(session.generate(Sampling(max_tokens=1)))
    finally:
        await session.abort()
    return _from_stats(q.id, "floor", session, t_start, t_last, t_first, t_done)


async def floor_warmed(engine, q: ReplayQuery, nonce: int) -> QueryResult:
    """The floor through a server's completions API (no session can be awaited as prefilled
    there): warm vLLM's prefix cache with the prompt before the last event, then time the
    whole prompt. Reuse is block-granular, so this floor can exceed `floor` by < 1 block."""
    rendered = engine.template.render(q.question, salted_system(nonce))
    pieces: list[list[int]] = []
    for event in q.events[:-1]:
        pieces = _context_ids(engine.template, pieces, event)
    before = list(rendered.prefix_ids) + [t for p in pieces for t in p]
    t_start = time.perf_counter()
    await _first_token(engine.complete_stream(prompt_token_ids=before, sampling=Sampling(max_tokens=1)))
    pieces = _context_ids(engine.template, pieces, q.events[-1])
    ids = list(rendered.prefix_ids) + [t for p in pieces for t in p] + list(rendered.closing_ids)
    t_last = time.perf_counter()
    t_first, t_done = await _first_token(engine.complete_stream(prompt_token_ids=ids, sampling=Sampling(max_tokens=1)))
    lcp = common_prefix_len(before, ids)
    return QueryResult(q.id, "floor", True, len(ids), t_start, t_last, t_first, t_done,
                       prefilled=len(ids), tail_tokens=len(ids) - lcp)


async def full_prefill(engine, q: ReplayQuery, nonce: int) -> float:
    """Time to the first token of the whole final prompt on an idle engine: the prefill cost
    one-shot pays after the last event, without queueing (for the prefill/retrieval share)."""
    rendered = engine.template.render(q.question, salted_system(nonce))
    pieces: list[list[int]] = []
    for event in q.events:
        pieces = _context_ids(engine.template, pieces, event)
    ids = list(rendered.prefix_ids) + [t for p in pieces for t in p] + list(rendered.closing_ids)
    t0 = time.perf_counter()
    t_first, _ = await _first_token(engine.complete_stream(prompt_token_ids=ids, sampling=Sampling(max_tokens=1)))
    return t_first - t0


def one_shot_capacity(prefill_s: list[float]) -> float:
    """Queries per second one-shot can serve: the queries over the sum of their whole-prompt
    prefill times on the idle engine (`full_prefill`)."""
    return len(prefill_s) / max(sum(prefill_s), 1e-9)


def _context_ids(template, pieces: list[list[int]], event: ReplayEvent) -> list[list[int]]:
    """Token ids per context position after `event`, laid out exactly as a session does."""
    if event.op == "append":
        start = len(pieces)
        return pieces + [template.chunk_ids(c.text, start + i + 1) for i, c in enumerate(event.chunks)]
    return [template.chunk_ids(c.text, i + 1) for i, c in enumerate(event.chunks)]


async def _deliver(session, event: ReplayEvent, last: bool = False) -> None:
    # The last event carries the end of retrieval with it (`last=True`), as a retriever
    # that knows its stream ended would: the session tells vLLM with these chunks.
    chunks = list(event.chunks)
    await (session.append(chunks, last=last) if event.op == "append" else session.update(chunks, last=last))


async def _first_token(stream) -> tuple[float, float]:
    """Consume a stream of deltas; (time of the first token, time of the end)."""
    t_first = None
    async with aclosing(stream) as deltas:
        async for delta in deltas:
            if t_first is None and delta.token_ids:
                t_first = time.perf_counter()
    if t_first is None:
        raise RuntimeError("the stream ended without a token")
    return t_first, time.perf_counter()


def _from_stats(query_id, system, session, t_start, t_last, t_first, t_done) -> QueryResult:
    s = session.stats
    # Every computed token either is in the final prompt's KV or was invalidated on the way.
    return QueryResult(
        query_id, system, True, s.prompt_tokens, t_start, t_last, t_first, t_done,
        prefilled=s.prompt_tokens + s.invalidated_tokens, reused=s.reused_tokens,
        recomputed=s.recomputed_tokens, invalidated=s.invalidated_tokens,
        tail_tokens=s.tail_prefill_tokens, updates=s.updates, replaces=s.replaces, session_id=session.id,
    )


async def _sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
