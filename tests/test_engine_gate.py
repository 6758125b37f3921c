"""Each gate criterion, the deadline, and late chunks dropped and counted."""

from __future__ import annotations

import asyncio

import pytest

from engine import ConfigError, Gate, Sampling
from tests.text import text_chunk


async def _answer(session, n=2):
    return [d async for d in session.generate(Sampling(max_tokens=n, ignore_eos=True))]


async def test_no_gate_waits_for_done(engine):
    session = await engine.open_session(question="q", gate=Gate())
    await session.append([text_chunk("one", score=5.0)] * 3)
    await asyncio.sleep(0.2)
    assert not session.gate_is_open
    await session.finish_context()
    await _answer(session)
    assert session.stats.gate_reason == "done"


async def test_min_chunks_opens_gate_and_drops_late_chunks(engine):
    session = await engine.open_session(question="q", gate=Gate(min_chunks=2))
    r1 = await session.append([text_chunk("first")])
    assert (r1.accepted, r1.dropped) == (1, 0) and not session.gate_is_open
    await session.append([text_chunk("second")])
    assert session.gate_is_open
    late = await session.append([text_chunk("late 1"), text_chunk("late 2")])
    assert (late.accepted, late.dropped) == (0, 2)
    await _answer(session)
    stats = session.stats
    assert stats.gate_reason == "criteria"
    assert stats.chunks == 2 and stats.chunks_dropped_late == 2
    assert "late" not in engine.template.decode(session.prompt_token_ids)


async def test_min_score_sums_scores(engine):
    session = await engine.open_session(question="q", gate=Gate(min_score=1.0))
    await session.append([text_chunk("a", score=0.4), text_chunk("b")])  # no score counts 0
    assert not session.gate_is_open
    await session.append([text_chunk("c", score=0.6)])
    assert session.gate_is_open and session.stats.gate_reason == "criteria"
    await _answer(session)


async def test_all_criteria_must_hold(engine):
    session = await engine.open_session(question="q", gate=Gate(min_chunks=1, min_score=2.0))
    await session.append([text_chunk("a", score=1.0)])
    assert not session.gate_is_open  # min_chunks holds, min_score does not
    await session.append([text_chunk("b", score=1.0)])
    assert session.gate_is_open
    await _answer(session)


async def test_deadline_opens_gate_and_later_chunks_are_dropped(engine):
    session = await engine.open_session(question="q", gate=Gate(min_chunks=10, max_wait_s=0.3))
    await session.append([text_chunk("early")])
    assert not session.gate_is_open
    deltas = await _answer(session)  # waits for the deadline
    assert deltas
    stats = session.stats
    assert stats.gate_reason == "deadline"
    assert 0.3 <= stats.t_gate < 5.0
    assert stats.chunks == 1


async def test_a_deadline_with_no_context_waits_for_the_first_chunk(engine):
    """A slow retriever never leaves the answer with nothing by accident: the deadline passes,
    the gate stays closed until a chunk arrives, and that chunk is in the prompt."""
    session = await engine.open_session(question="q", gate=Gate(max_wait_s=0.05))
    await asyncio.sleep(0.2)  # well past the deadline
    assert not session.gate_is_open
    first = await session.append([text_chunk("first to arrive")])
    assert first.accepted == 1 and session.gate_is_open and session.stats.gate_reason == "deadline"
    late = await session.append([text_chunk("too late")])
    assert late.dropped == 1 and session.stats.chunks_dropped_late == 1
    await session.finish_context()  # allowed: retrieval may end after the deadline
    await _answer(session)
    prompt = engine.template.decode(session.prompt_token_ids)
    assert "first to arrive" in prompt and "too late" not in prompt


async def test_min_chunks_zero_lets_the_deadline_open_on_nothing(engine):
    session = await engine.open_session(question="q", gate=Gate(min_chunks=0, max_wait_s=0.05))
    assert await session.wait_gate() == "deadline"
    assert session.stats.chunks == 0
    await session.update([])  # not a criterion: nothing more happens
    await _answer(session)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"min_chunks": -1}, "gate.min_chunks"), ({"max_wait_s": -1}, "gate.max_wait_s"),
     ({"stable_updates": 0}, "gate.stable_updates")],
)
def test_bad_gate_names_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        Gate(**kwargs)
    assert err.value.field == field
