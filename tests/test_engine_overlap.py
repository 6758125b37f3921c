"""Overlap is real: vLLM's own per-step counts show what is left to compute after the gate.

The ledger holds `SchedulerOutput.num_scheduled_tokens` for every step of the session's
request, written by the scheduler in vLLM's engine process; nothing here is the session's
own arithmetic.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from engine import ContextClosedError, Sampling
from retrievers import Chunk
from tests.text import random_text, text_chunk


async def test_after_gate_only_last_chunk_and_closing_are_prefilled(engine):
    rng = random.Random(7)
    # A system prompt of its own keeps vLLM's prefix cache from serving earlier sessions' blocks.
    session = await engine.open_session(question="how does streaming prefill work?", system="overlap test 1")
    for i in range(4):
        await session.append([Chunk(text=random_text(rng, 40, 80), id=f"early-{i}")])
    await session.wait_prefilled()
    before_gate = sum(engine.ledger.scheduled_tokens(session.id))
    prefilled = len(session.prompt_token_ids) - len(engine.template.render("x").closing_ids)
    # Everything delivered so far was computed by vLLM before the gate.
    assert before_gate == prefilled

    last = Chunk(text=random_text(rng, 40, 80), id="last")
    last_len = len(engine.template.chunk_ids(last.text, 5))
    await session.append([last])  # arrives with the end of retrieval: not yet prefilled
    await session.finish_context()
    n_out = 6
    out = [d async for d in session.generate(Sampling(max_tokens=n_out, ignore_eos=True))]
    assert sum(len(d.token_ids) for d in out) == n_out

    steps = engine.ledger.scheduled_tokens(session.id)
    after_gate = sum(steps) - before_gate
    closing = len(session.prompt_token_ids) - len(session.context_token_ids)
    # Prefill after the gate is the last chunk + the closing template; then one token per
    # decode step for the n_out - 1 tokens after the first (the first comes with the prefill).
    assert after_gate == last_len + closing + (n_out - 1)
    stats = session.stats
    assert stats.tail_prefill_tokens <= last_len + closing
    assert stats.prefilled_before_gate + stats.tail_prefill_tokens == len(session.prompt_token_ids)


async def test_one_shot_computes_the_whole_prompt(engine):
    """Baseline for the test above: without streaming, everything is computed after submit."""
    rng = random.Random(8)
    prompt = engine.template.encode(random_text(rng, 200, 200))
    before = {k for k in _all_request_ids(engine)}
    await engine.complete(prompt_token_ids=prompt, sampling=Sampling(max_tokens=1))
    new = [k for k in _all_request_ids(engine) if k not in before]
    assert len(new) == 1
    assert sum(engine.ledger.scheduled_tokens(new[0])) == len(prompt)


async def test_last_chunks_go_with_the_closing_template_in_one_step(engine):
    """append(last=True): the last chunk, the closing template and the first token are one
    vLLM step, and the session is closed to more context, as after finish_context()."""
    rng = random.Random(17)
    session = await engine.open_session(question="what comes last?", system="overlap test last")
    await session.append([text_chunk(random_text(rng, 40, 80))])
    await session.wait_prefilled()
    before = len(engine.ledger.scheduled_tokens(session.id))
    last = text_chunk(random_text(rng, 40, 80))
    receipt = await session.append([last], last=True)
    assert receipt.accepted == 1 and session.gate_is_open
    with pytest.raises(ContextClosedError):
        await session.append([text_chunk("too late")])
    out = [t async for d in session.generate(Sampling(max_tokens=3, ignore_eos=True)) for t in d.token_ids]

    steps = engine.ledger.scheduled_tokens(session.id)[before:]
    closing = len(session.prompt_token_ids) - len(session.context_token_ids)
    assert steps == [len(engine.template.chunk_ids(last.text, 2)) + closing, 1, 1]
    one_shot = await engine.complete(prompt_token_ids=session.prompt_token_ids, sampling=Sampling(max_tokens=3, ignore_eos=True))
    assert out == list(one_shot.token_ids)
    assert session.stats.gate_reason == "done"


def _all_request_ids(engine) -> list[str]:
    import json

    path = engine.ledger.folder / "steps.jsonl"
    ids = []
    for line in path.read_text().splitlines():
        for rid in json.loads(line).get("scheduled", {}):
            ext = rid.rsplit("-", 1)[0]
            if ext not in ids:
                ids.append(ext)
    return ids


async def test_the_answer_piece_goes_behind_a_piece_in_flight_and_the_answer_is_exact(engine):
    """The closing piece does not wait for the ack of the context piece vLLM still computes:
    vLLM queues it behind that piece (the session's `_may_follow`). The answer is the one-shot
    answer of the same prompt, token for token."""
    rng = random.Random(12)
    session = await engine.open_session(question="what follows a piece in flight?", system="overlap follow")
    await session.append([text_chunk(random_text(rng, 30, 50))])
    await session.wait_prefilled()
    await session.append([text_chunk(random_text(rng, 30, 50))])  # in flight until vLLM acks it
    await session.append([text_chunk(random_text(rng, 10, 20))], last=True)
    stream = session.generate(Sampling(max_tokens=6, ignore_eos=True))
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # generate() runs up to its first wait: the closing piece is sent
    # The ack needs a round trip through vLLM's engine process: it cannot have come yet.
    assert session._final_sent and session._inflight
    tokens = list((await first).token_ids) + [t async for d in stream for t in d.token_ids]
    one_shot = await engine.complete(prompt_token_ids=session.prompt_token_ids,
                                     sampling=Sampling(max_tokens=6, ignore_eos=True))
    assert tokens == list(one_shot.token_ids)
    assert sum(engine.ledger.scheduled_tokens(session.id)) == len(session.prompt_token_ids) + 5  # nothing twice


def test_an_ack_that_came_merged_with_the_answer_is_taken_off():
    """vLLM merges the outputs of a request whose reader is behind (RequestOutputCollector): the
    context piece's one discarded token can arrive in front of the answer's first tokens."""
    from vllm.outputs import CompletionOutput, RequestOutput
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.output_processor import RequestOutputCollector

    from engine.local.session import _without_ack

    def output(tokens: list[int], finished: bool = False) -> RequestOutput:
        return RequestOutput("r", None, [1, 2], None, [CompletionOutput(0, "", tokens, None, [{t: None} for t in tokens])],
                             finished=finished)

    collector = RequestOutputCollector(RequestOutputKind.DELTA, "r")
    collector.put(output([99]))  # the ack
    collector.put(output([5, 6], finished=True))  # the answer's, before the reader took the ack
    merged = collector.get_nowait()
    assert list(merged.outputs[0].token_ids) == [99, 5, 6]
    answer = _without_ack(merged)
    assert list(answer.outputs[0].token_ids) == [5, 6] and len(answer.outputs[0].logprobs) == 2 and answer.finished
    assert _without_ack(output([99])) is None  # the ack alone
