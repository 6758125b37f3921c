"""The session-wide engine on the tiny random-weight model (the default "fcfs" policy), with
vLLM's step ledger on; and a second one like it under stock vLLM's order, started only by the
tests that need a baseline."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from engine import EngineConfig, StreamEngine

# Small blocks make block-granular effects visible; float32 keeps greedy decoding exact.
# STREAMRAG_TEST_DTYPE=bfloat16 runs the engine tests in the GPU's dtype (exactness tests then
# compare token ids within that engine, as always). STREAMRAG_TEST_MODEL=gemma3-270m (once
# prepared) runs them on a model with sliding-window layers.
TEST_ENGINE_CONFIG = EngineConfig(
    model=os.environ.get("STREAMRAG_TEST_MODEL", "tiny"),
    dtype=os.environ.get("STREAMRAG_TEST_DTYPE", "float32"),
    max_model_len=2048,
    block_size=32,
    kv_cache_gib=0.25,
    max_num_batched_tokens=2048,
    record_steps=True,
)


@pytest.fixture(scope="session")
async def engine():
    async with StreamEngine(TEST_ENGINE_CONFIG) as eng:
        yield eng


@pytest.fixture(scope="session")
async def vllm_engine():
    """`engine`'s settings with policy "vllm": baselines measured under stock vLLM's order (~20 s)."""
    async with StreamEngine(replace(TEST_ENGINE_CONFIG, policy="vllm")) as eng:
        yield eng


@pytest.fixture
async def idle_blocks(engine):
    """KV blocks in use with no session alive (checked again by leak tests)."""
    assert engine.live_sessions == 0, "a previous test left a session open"
    return await engine.wait_for_blocks(0, timeout_s=10)
