"""Bad use gets typed errors that name what is wrong."""

from __future__ import annotations

import pytest

from engine import (
    ConfigError,
    ContextClosedError,
    EngineConfig,
    PromptTooLongError,
    Sampling,
    SessionStateError,
)
from tests.text import text_chunk


async def test_append_after_finish_context(engine):
    session = await engine.open_session(question="q")
    await session.finish_context()
    with pytest.raises(ContextClosedError):
        await session.append([text_chunk("x")])
    await session.abort()


async def test_generate_twice(engine):
    session = await engine.open_session(question="q")
    await session.finish_context()
    _ = [d async for d in session.generate(Sampling(max_tokens=2))]
    with pytest.raises(SessionStateError, match="already called"):
        async for _ in session.generate(Sampling(max_tokens=2)):
            pass


async def test_prompt_over_max_model_len_names_count_and_limit(engine):
    session = await engine.open_session(question="q")
    with pytest.raises(PromptTooLongError) as err:
        await session.append([text_chunk("word " * 5000)])
    assert err.value.limit == engine.max_model_len
    assert err.value.num_tokens > engine.max_model_len
    assert str(engine.max_model_len) in str(err.value)
    assert session.stats.chunks == 0  # nothing of the rejected batch was taken
    await session.abort()

    with pytest.raises(PromptTooLongError):
        await engine.complete(prompt_token_ids=[5] * (engine.max_model_len + 10), sampling=Sampling(max_tokens=1))


async def test_session_after_abort(engine):
    session = await engine.open_session(question="q")
    await session.abort()
    await session.abort()  # idempotent
    with pytest.raises(SessionStateError):
        await session.append([text_chunk("x")])


@pytest.mark.parametrize(
    "kwargs, field",
    [({"block_size": 16}, "block_size"), ({"model": ""}, "model"),
     ({"max_model_len": 8}, "max_model_len"), ({"dtype": "int4"}, "dtype"),
     ({"kv_cache_gib": 0}, "kv_cache_gib")],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        EngineConfig(**kwargs)
    assert err.value.field == field
    assert field in str(err.value)


async def test_abort_while_generate_waits_at_the_gate(engine):
    import asyncio

    session = await engine.open_session(question="q")
    waiting = asyncio.create_task(_first(session))
    await asyncio.sleep(0.05)  # generate() now waits at the gate
    await session.abort()
    with pytest.raises(SessionStateError, match="aborted"):
        await asyncio.wait_for(waiting, timeout=10)


async def _first(session):
    async for delta in session.generate(Sampling(max_tokens=2)):
        return delta
