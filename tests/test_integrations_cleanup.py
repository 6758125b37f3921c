"""Whatever way a query ends, its session ends and vLLM gets every KV block back.

The calls cross event loops here the way framework code makes them: from a worker thread with
a loop of its own (a sync `invoke()`), to the shared engine on the session loop.
"""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.retrievers import QueryFusionRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle

from engine import Gate, Sampling
from integrations import EngineClient, call_blocking, iterate_blocking
from integrations.llamaindex import StreamingQueryEngine, StreamRAGLLM
from retrievers import Chunk
from tests.integrations_fixtures import QUESTION, STAGGERED


class BrokenRetriever(BaseRetriever):
    """A real retriever whose index is unavailable: it fails after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        raise NotImplementedError("async only")

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        await asyncio.sleep(self.delay)
        raise ConnectionError("index unavailable")


async def test_leaving_a_bridged_answer_early_aborts_the_session(engine, idle_blocks):
    client = EngineClient.of(engine)
    session = await client.open_session("What is a block?", system="cleanup early exit")
    await session.append([Chunk(text="A block holds the KV of some tokens. " * 20, id="a")])
    await session.finish_context()

    def first_delta_then_leave() -> int:
        # Another thread, another loop: the answer crosses to it; leaving it stops vLLM's request.
        for delta in iterate_blocking(lambda: session.generate(Sampling(max_tokens=200, ignore_eos=True))):
            return len(delta.token_ids)

    assert await asyncio.to_thread(first_delta_then_leave) >= 1
    assert session.session.state == "aborted" and engine.live_sessions == 0
    assert await engine.wait_for_blocks(idle_blocks) == idle_blocks


async def test_failed_retrieval_aborts_the_session(engine, idle_blocks, node_retrievers):
    llm = StreamRAGLLM(engine=engine, max_tokens=8)
    fusion = QueryFusionRetriever(node_retrievers(staggers=STAGGERED[:1]) + [BrokenRetriever(0.4)], llm=llm,
                                  num_queries=1)
    query_engine = StreamingQueryEngine.from_args(fusion, llm=llm, system="cleanup failed retrieval")
    with pytest.raises(ConnectionError, match="index unavailable"):
        await query_engine.aquery(QUESTION)
    assert engine.live_sessions == 0
    assert await engine.wait_for_blocks(idle_blocks) == idle_blocks


async def test_sync_query_from_a_thread_and_a_deadline_gate(engine, idle_blocks, node_retrievers):
    llm = StreamRAGLLM(engine=engine, max_tokens=8)
    fusion = QueryFusionRetriever(node_retrievers(), llm=llm, num_queries=1)
    query_engine = StreamingQueryEngine.from_args(fusion, llm=llm, gate=Gate(max_wait_s=0.9),
                                                  system="cleanup deadline")
    response = await asyncio.to_thread(query_engine.query, QUESTION)  # the sync face, on a private loop
    stats = response.metadata["streamrag_session"].stats
    # The slowest retriever (1.2 s) never made it; how many of the others did depends on the load.
    assert stats.gate_reason == "deadline" and stats.chunks < 9  # all three bring 9 distinct passages
    assert response.response
    assert engine.live_sessions == 0
    assert await engine.wait_for_blocks(idle_blocks) == idle_blocks
    assert await asyncio.to_thread(call_blocking, lambda: asyncio.sleep(0, result=7)) == 7
