"""The docs examples run: a stock pipeline takes streamrag's model with no other change."""

from __future__ import annotations

from docs.examples import langchain_swap, llamaindex_swap
from tests.integrations_fixtures import STAGGERED


async def test_llamaindex_example(engine, node_retrievers):
    result = await llamaindex_swap.run(engine, node_retrievers(staggers=STAGGERED[:2]))
    assert result["stock"] == " ".join(["text"] * 16)  # what MockLLM(max_tokens=16) says
    assert result["swapped"] and result["streaming"]
    assert result["stats"].gate_reason == "done" and result["stats"].chunks == 8
    assert result["stats"].prefilled_before_gate > result["stats"].tail_prefill_tokens


async def test_langchain_example(engine, document_retrievers):
    result = await langchain_swap.run(engine, document_retrievers(staggers=STAGGERED[:2]))
    assert result["stock"] == "(a stock model's answer)"
    assert result["swapped"] and result["streaming"]
