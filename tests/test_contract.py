"""One conformance suite for every backend of the session contract (engine/contract.py).

The same sequences run against the in-process engine, the engine over vLLM servers and the
HTTP client of a streamrag server. Exactness compares greedy token ids with a one-shot
completion of the session's final prompt on the same backend (same model, float32).
"""

from __future__ import annotations

import inspect
import json
from contextlib import aclosing

import pytest

from engine import (
    ConfigError,
    ContextClosedError,
    Engine,
    Gate,
    PromptTooLongError,
    Sampling,
    Session,
    SessionStateError,
    SessionStats,
    StreamEngine,
    VLLMServersEngine,
)
from engine.contract import Engine as EngineProtocol
from engine.contract import Session as SessionProtocol
from engine.local.session import StreamSession
from engine.remote import VLLMServersSession
from engine.structured_output import schema_text
from integrations.client_session import ClientSession
from integrations.http_client import StreamRAGClient
from tests.text import random_text, text_chunk

BACKENDS = ("local", "vllm-servers", "http")
GREEDY = Sampling(max_tokens=8, ignore_eos=True)


@pytest.fixture
async def http_engine(app_server):
    async with StreamRAGClient(app_server) as client:
        yield client


@pytest.fixture(params=BACKENDS)
def backend(request) -> Engine:
    # Sync on purpose: it picks one async fixture by name, and only that one gets started
    # (the vLLM servers only when a test asks for them).
    return request.getfixturevalue({"local": "engine", "vllm-servers": "remote_engine", "http": "http_engine"}[request.param])


def _chunks(seed: int, n: int, words: tuple[int, int] = (10, 30)):
    import random

    rng = random.Random(seed)
    return [text_chunk(random_text(rng, *words), score=1.0) for _ in range(n)]


async def _answer(session: Session, sampling: Sampling = GREEDY) -> list[int]:
    async with aclosing(session.generate(sampling)) as deltas:
        return [t async for d in deltas for t in d.token_ids]


@pytest.mark.parametrize("cls", [StreamEngine, VLLMServersEngine, StreamRAGClient])
def test_every_engine_has_the_contracts_signatures(cls):
    """A keyword added to one backend and not the others fails here."""
    for name in ("open_session", "complete", "complete_stream", "wait_for_blocks"):
        ours = list(inspect.signature(getattr(EngineProtocol, name)).parameters.values())
        theirs = list(inspect.signature(getattr(cls, name)).parameters.values())[: len(ours)]
        assert [(p.name, p.default) for p in theirs] == [(p.name, p.default) for p in ours], (cls, name)


@pytest.mark.parametrize("cls", [StreamSession, VLLMServersSession, ClientSession])
def test_every_session_has_the_contracts_signatures(cls):
    for name in ("append", "update", "finish_context", "wait_gate", "generate", "abort"):
        ours = inspect.signature(getattr(SessionProtocol, name)).parameters
        theirs = inspect.signature(getattr(cls, name)).parameters
        assert [(p.name, p.default) for p in theirs.values()] == [(p.name, p.default) for p in ours.values()], \
            (cls, name)


async def test_appends_and_updates_decode_like_one_shot(backend):
    assert isinstance(backend, Engine)
    a, b, c, d = _chunks(1, 4)
    session = await backend.open_session(question="conformance: mixed", system="contract 1")
    assert isinstance(session, Session) and session.state == "open"
    await session.append([a])
    await session.append([b])
    await session.update([b, c])  # keeps nothing of the old order
    await session.update([b, c, d])  # keeps [b, c]
    await session.append([a], last=True)
    assert await session.wait_gate() == "done"
    answer = await _answer(session)
    assert session.state == "finished" and len(answer) == GREEDY.max_tokens
    one_shot = await backend.complete(prompt_token_ids=session.prompt_token_ids, sampling=GREEDY)
    assert answer == list(one_shot.token_ids)
    assert session.stats.chunks == 4 and session.stats.gate_reason == "done"
    assert set(session.stats.to_dict()) == set(SessionStats().to_dict())


async def test_last_closes_the_context(backend):
    session = await backend.open_session(question="conformance: last", system="contract 2")
    await session.update(_chunks(2, 2), last=True)
    assert session.gate_is_open or await session.wait_gate() == "done"
    for push in (session.append, session.update):
        with pytest.raises(ContextClosedError):
            await push(_chunks(3, 1))
    with pytest.raises(ContextClosedError):
        await session.finish_context()
    assert len(await _answer(session)) == GREEDY.max_tokens


async def test_late_chunks_are_dropped_and_counted(backend):
    session = await backend.open_session(question="conformance: late", system="contract 3", gate=Gate(min_chunks=1))
    first = await session.append(_chunks(4, 1))
    assert first.accepted == 1
    late = await session.append(_chunks(5, 2))
    assert (late.accepted, late.dropped) == (0, 2)
    await _answer(session)
    assert session.stats.chunks_dropped_late == 2 and session.stats.gate_reason == "criteria"


async def test_generate_once_and_abort_twice(backend):
    session = await backend.open_session(question="conformance: states", system="contract 4")
    await session.append(_chunks(6, 1))
    await session.finish_context()
    await _answer(session)
    with pytest.raises(SessionStateError):
        await _answer(session)
    aborted = await backend.open_session(question="conformance: abort", system="contract 5")
    await aborted.append(_chunks(7, 1))
    await aborted.abort()
    await aborted.abort()  # safe twice
    assert aborted.state == "aborted"
    with pytest.raises(SessionStateError):
        await aborted.append(_chunks(8, 1))


async def test_earlier_turns_come_before_the_question(backend, engine):
    """A multi-turn chat: the history sits in the prompt before the question, and the answer is
    the one-shot answer of that prompt."""
    history = [("user", "What is a KV cache?"), ("assistant", "Keys and values of past tokens.")]
    session = await backend.open_session(question="conformance: and a block?", system="contract 8",
                                         history=history)
    with_history = engine.template.render("conformance: and a block?", "contract 8", history).prefix_ids
    without = engine.template.render("conformance: and a block?", "contract 8").prefix_ids
    assert with_history != without
    await session.append(_chunks(20, 2), last=True)
    answer = await _answer(session)
    ids = list(session.prompt_token_ids)  # the client's copy is filled in once the answer ends
    assert ids[:len(with_history)] == list(with_history)
    assert answer == list((await backend.complete(prompt_token_ids=ids, sampling=GREEDY)).token_ids)


@pytest.mark.parametrize("bad", [[("narrator", "once upon a time")], [("user",)], ["user: hi"]])
async def test_a_malformed_history_is_refused(engine, bad):
    with pytest.raises(ValueError, match=r"history\[0\]"):
        await engine.open_session(question="conformance: bad history", history=bad)


async def test_logprobs_match_one_shot(backend):
    """Each answer token comes with its logprob and the likeliest alternatives, the same in a
    session as in a one-shot completion of its prompt; greedy picks the likeliest."""
    sampling = Sampling(max_tokens=6, ignore_eos=True, logprobs=2)
    session = await backend.open_session(question="conformance: logprobs", system="contract 9")
    await session.append(_chunks(30, 2), last=True)
    async with aclosing(session.generate(sampling)) as deltas:
        steps = [d async for d in deltas]
    async with aclosing(backend.complete_stream(prompt_token_ids=session.prompt_token_ids, sampling=sampling)) as deltas:
        one_shot = [d async for d in deltas]
    for deltas in (steps, one_shot):
        assert all(len(d.logprobs) == len(d.token_ids) for d in deltas)
    ours = [t for d in steps for t in d.logprobs]
    theirs = [t for d in one_shot for t in d.logprobs]
    assert [t.token_id for t in ours] == [t for d in steps for t in d.token_ids] == [t.token_id for t in theirs]
    for a, b in zip(ours, theirs):
        assert len(a.top) == 2 and a.top[0][1] >= a.top[1][1]
        assert a.top[0][0] == a.token_id and a.logprob == pytest.approx(a.top[0][1])  # greedy: the likeliest
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3) and [i for i, _ in a.top] == [i for i, _ in b.top]


VERDICT = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
           "required": ["answer", "sure"], "additionalProperties": False}


async def test_a_json_schema_answer_matches_it(backend):
    """With `json_schema` the answer is compact JSON matching the schema, in a session that was
    prefilled and updated before its gate as in a one-shot completion of its final prompt."""
    sampling = Sampling(max_tokens=40, json_schema=schema_text(VERDICT))
    session = await backend.open_session(question="conformance: structured", system="contract 10")
    await session.append(_chunks(40, 2))
    await session.update(_chunks(41, 1) + _chunks(40, 2)[1:], last=True)
    async with aclosing(session.generate(sampling)) as deltas:
        steps = [d async for d in deltas]
    one_shot = await backend.complete(prompt_token_ids=session.prompt_token_ids, sampling=sampling)
    assert [t for d in steps for t in d.token_ids] == list(one_shot.token_ids)
    text = "".join(d.text for d in steps)
    assert text == one_shot.text and steps[-1].finish_reason == "stop"
    answer = json.loads(text)
    assert set(answer) == {"answer", "sure"} and answer["answer"] in ("yes", "no") and isinstance(answer["sure"], bool)
    assert " " not in text  # compact: no whitespace between JSON tokens


async def test_a_json_schema_the_backend_cannot_compile_is_refused(backend):
    bad = Sampling(max_tokens=8, json_schema=schema_text({"type": "object", "properties": {"a": {"type": "nonsense"}}}))
    session = await backend.open_session(question="conformance: bad schema", system="contract 11")
    await session.append(_chunks(42, 1), last=True)
    with pytest.raises(ConfigError, match="json_schema|response_format"):
        async with aclosing(session.generate(bad)) as deltas:
            async for _ in deltas:
                pass
    if isinstance(backend, VLLMServersEngine):  # only the vLLM server can judge it: the answer was spent
        with pytest.raises(SessionStateError):
            await _answer(session)
    else:  # refused before the claim: still answerable
        assert await _answer(session)
    with pytest.raises(ConfigError, match="json_schema|response_format"):
        await backend.complete(prompt="a", sampling=bad)


async def test_a_prompt_too_long_is_refused(backend):
    session = await backend.open_session(question="conformance: long", system="contract 6")
    with pytest.raises(PromptTooLongError):
        await session.append(_chunks(9, 1, words=(4000, 4000)))
    await session.abort()


async def test_nothing_is_left_behind(backend):
    for i in range(3):
        session = await backend.open_session(question=f"conformance: leak {i}", system="contract 7")
        await session.append(_chunks(10 + i, 2))
        if i:
            await session.abort()
            continue
        await session.finish_context()
        async with aclosing(session.generate(Sampling(max_tokens=16, ignore_eos=True))) as deltas:
            async for _ in deltas:
                break  # leave mid-answer
    assert await backend.wait_for_blocks(0, timeout_s=15) == 0
