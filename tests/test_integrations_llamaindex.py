"""LlamaIndex: `StreamRAGLLM` as a plain LLM, and `StreamingQueryEngine` over staggered retrievers.

Everything runs on the shared engine (tiny model) and the reference corpus in embedded Qdrant.
"""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core import Settings
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
)
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import QueryFusionRetriever

from engine import Gate, Sampling
from integrations import EngineLoopError
from integrations.llamaindex import StreamingQueryEngine, StreamRAGLLM
from tests.integrations_fixtures import QUESTION, STAGGERED, LedgerProbe, check_overlap

MAX_TOKENS = 12


@pytest.fixture
async def llm(engine) -> StreamRAGLLM:
    # Built on the session loop, which runs the engine: the LLM attaches to that loop.
    return StreamRAGLLM(engine=engine, max_tokens=MAX_TOKENS)


def fusion(retrievers, llm, top_k: int = 8) -> QueryFusionRetriever:
    # num_queries=1: the retrievers get the question itself, no LLM-generated variants.
    return QueryFusionRetriever(retrievers, llm=llm, num_queries=1, use_async=True, similarity_top_k=top_k)


async def test_staggered_fusion_is_prefilled_before_the_last_retriever(engine, llm, node_retrievers):
    system = "llamaindex staggered fusion"  # its own system prompt: no prefix-cache hits from other tests
    probe = LedgerProbe(engine)
    query_engine = StreamingQueryEngine.from_args(fusion(node_retrievers(probe), llm), llm=llm, system=system)

    response = await query_engine.aquery(QUESTION)

    query = response.metadata["streamrag_query"]
    assert probe.session is query.session
    fraction = await check_overlap(engine, probe, QUESTION, system, query.token_ids, MAX_TOKENS)
    assert fraction < 1.0  # the slowest retriever did add a passage: its tail was prefilled after it
    assert response.response == engine.template.decode(query.token_ids)
    events = response.metadata["streamrag_context"]
    assert [e["op"] for e in events] == ["append"] * 3 and [e["dropped"] for e in events] == [0, 0, 0]
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    assert events[-1]["t"] >= max(s.delay for s in STAGGERED)
    assert [n.node.node_id for n in response.source_nodes] == [c.id for c in query.feed.context]
    assert query.session.stats.chunks == len(response.source_nodes)


async def test_streaming_response_and_update_mode_reuse_the_prefix(engine, llm, node_retrievers):
    system = "llamaindex update mode"
    query_engine = StreamingQueryEngine.from_args(fusion(node_retrievers(), llm), llm=llm, system=system,
                                                  mode="update", k=6, streaming=True)
    response = await query_engine.aquery(QUESTION)
    texts = [text async for text in response.async_response_gen()]
    query = response.metadata["streamrag_query"]
    stats = query.session.stats
    assert "".join(texts) == engine.template.decode(query.token_ids) and len(query.token_ids) >= 1
    assert stats.updates == 4  # one fused ranking per sub-retriever, then the fusion retriever's own
    assert stats.chunks == 6 and len(response.source_nodes) == 6
    assert stats.reused_tokens > 0  # each new ranking kept the KV of the common prefix
    one_shot = await engine.complete(prompt_token_ids=query.session.prompt_token_ids, sampling=Sampling(max_tokens=MAX_TOKENS))
    assert query.token_ids == list(one_shot.token_ids)


async def test_gate_criteria_start_the_answer_before_slow_retrievers(engine, llm, node_retrievers):
    gate = Gate(min_chunks=5)  # the fastest retriever alone brings five passages
    query_engine = StreamingQueryEngine.from_args(fusion(node_retrievers(), llm), llm=llm, gate=gate,
                                                  system="llamaindex gate criteria")
    started = asyncio.get_running_loop().time()
    response = await query_engine.aquery(QUESTION)
    elapsed = asyncio.get_running_loop().time() - started
    stats = response.metadata["streamrag_session"].stats
    assert stats.gate_reason == "criteria" and stats.chunks == 5
    assert stats.t_first_token < STAGGERED[1].delay  # before the second retriever returned
    assert elapsed < STAGGERED[2].delay  # the slowest retriever was cancelled, not awaited
    await asyncio.sleep(0)
    assert engine.live_sessions == 0


async def test_llm_async_methods_chat_and_complete(engine, llm):
    messages = [ChatMessage(role=MessageRole.SYSTEM, content="Be brief."), ChatMessage(role=MessageRole.USER, content="Hello")]
    chat = await llm.achat(messages)
    ids = engine.template.encode(engine.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        tokenize=False, add_generation_prompt=True))
    expected = await engine.complete(prompt_token_ids=ids, sampling=Sampling(max_tokens=MAX_TOKENS))
    assert chat.message.content == expected.text and chat.message.role == MessageRole.ASSISTANT
    assert chat.additional_kwargs["prompt_tokens"] == len(ids)
    assert chat.additional_kwargs["completion_tokens"] == len(expected.token_ids)

    streamed = [r async for r in await llm.astream_chat(messages)]
    assert "".join(r.delta for r in streamed) == expected.text == streamed[-1].message.content

    completion = await llm.acomplete("Hello")
    pieces = [r.delta async for r in await llm.astream_complete("Hello")]
    assert completion.text == "".join(pieces) and completion.text


async def test_llm_metadata_and_instrumentation(engine, llm):
    metadata = llm.metadata
    assert metadata.context_window == engine.max_model_len and metadata.num_output == MAX_TOKENS
    assert metadata.is_chat_model and metadata.model_name == "tiny"

    class Recorder(BaseEventHandler):
        seen: list = []

        def handle(self, event, **kwargs) -> None:
            if isinstance(event, (LLMChatStartEvent, LLMChatEndEvent)):
                self.seen.append(type(event).__name__)

    recorder = Recorder()
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(recorder)
    try:
        await llm.achat([ChatMessage(role=MessageRole.USER, content="Hi")])
    finally:
        dispatcher.event_handlers.remove(recorder)
    assert recorder.seen == ["LLMChatStartEvent", "LLMChatEndEvent"]


async def test_sync_methods_cross_to_the_engine_loop(llm):
    # Called from a worker thread, sync methods reach the engine on this (running) loop.
    response = await asyncio.to_thread(llm.complete, "Hello")
    chunks = await asyncio.to_thread(lambda: list(llm.stream_chat([ChatMessage(role=MessageRole.USER, content="Hello")])))
    assert response.text and chunks[-1].message.content
    # On the engine's own loop they would deadlock it: a typed error says what to use instead.
    with pytest.raises(EngineLoopError, match="async twin"):
        llm.complete("Hello")


@pytest.fixture
def settings_llm(llm):
    previous = Settings._llm
    Settings.llm = llm
    yield llm
    Settings._llm = previous


async def test_settings_llm_in_a_stock_query_engine(settings_llm, node_retrievers):
    # A stock pipeline picks the LLM up from Settings: no streaming session, a plain chat call.
    query_engine = RetrieverQueryEngine.from_args(fusion(node_retrievers(), None))
    response = await query_engine.aquery(QUESTION)
    assert response.response and len(response.source_nodes) == 8
