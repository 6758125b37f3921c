"""`python -m eval.piece_sweep` at toy size: two piece sizes, two rounds, on real tiny engines.

The session's engine sends pieces of the platform's size; a second one sends pieces of 32.
Both play the very same timed trace, prefill exactly the same tokens (the piece size changes
how the context is cut, never what is computed), and the ledger shows the cut.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest

from app.commands.bench import register
from engine import StreamEngine
from eval.piece_sweep import format_report, sweep
from eval.replay import BENCH_BLOCK_SIZE
from eval.workloads import Scaling, generate
from tests.engine_fixtures import TEST_ENGINE_CONFIG

TINY = Scaling(size_factor=48, time_factor=0.04, max_context_tokens=600)


@pytest.fixture(scope="module")
async def small_pieces():
    async with StreamEngine(replace(TEST_ENGINE_CONFIG, max_piece_tokens=32)) as eng:
        yield eng


async def test_two_sizes_play_the_same_trace_and_compute_the_same_tokens(engine, small_pieces, idle_blocks):
    big = engine.config.piece_tokens
    assert big > 32
    trace = generate("crawler", queries=4, seed=7, scaling=TINY)
    steps_before = len(small_pieces.ledger.step_records())
    out = await sweep({big: engine, 32: small_pieces}, trace, load=0.5, prefill_share=0.5, rounds=2,
                      progress=False)

    assert [(p["round"], p["size"]) for p in out["passes"]] == [(1, big), (1, 32), (2, big), (2, 32)]
    for p in out["passes"]:
        assert p["finished"] == p["queries"] == 4 and p["leaked_blocks"] == 0
        assert 0 < p["ttft_last_p50_ms"] <= p["ttft_last_p95_ms"]
        assert set(p["excess_ms"]) == set(out["floor"]["queries_ms"])
    # The same tokens computed by every pass, whatever the cut (an append-only trace).
    assert len({p["prefilled_vllm"] for p in out["passes"]}) == 1
    meta = out["meta"]
    assert meta["qps"] == pytest.approx(0.5 * meta["capacity_qps"], abs=1e-3) and meta["time_scale"] > 0
    assert meta["sizes"] == [big, 32] and len(meta["machine"]["processes"]) >= 2
    assert set(out["sizes"]) == {big, 32}
    assert all(len(s["ttft_last_p50_ms"]) == 2 and s["median_p50_over_floor"] > 0 for s in out["sizes"].values())
    # The small engine never computed more than one piece of a session's partial context in a
    # step: a request's scheduled tokens above 32 are its answer's (complete context) only.
    for step in small_pieces.ledger.step_records()[steps_before:]:
        for rid, n in step.get("scheduled", {}).items():
            assert n <= 32 or rid in step.get("complete", []), step
    text = format_report(out)
    assert "pieces of 32" in text and "machine: " in text


async def test_engines_must_send_the_size_they_are_filed_under(engine):
    trace = generate("crawler", queries=1, seed=7, scaling=TINY)
    with pytest.raises(ValueError, match="engines: the engine for size 64"):
        await sweep({64: engine}, trace, progress=False)


def test_the_eval_tools_run_the_bench_block_size():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["bench"]).block_size == BENCH_BLOCK_SIZE
