"""Both integrations against a running streamrag server (a real uvicorn on 127.0.0.1).

The server (tests/app_fixtures.py) shares the session's engine, so vLLM's ledger still shows
what was computed for each session: the HTTP path is held to the same overlap and exactness
checks as the in-process one. Sync calls run on a worker thread, so that the loop serving the
server keeps running.
"""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import HumanMessage
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.retrievers import QueryFusionRetriever

from engine import Sampling
from integrations import EngineRunner, ServerError, StreamRAGClient
from integrations.langchain import GATE_EVENT, StreamingRAG, StreamRAGChatModel
from integrations.llamaindex import StreamingQueryEngine, StreamRAGLLM
from tests.app_fixtures import API_KEY
from tests.integrations_fixtures import (
    QUESTION,
    FanOutRetriever,
    LedgerProbe,
    check_overlap,
)

MAX_TOKENS = 10


@pytest.fixture
async def remote(app_server):
    runner = await asyncio.to_thread(EngineRunner.connect, app_server)
    yield runner
    await asyncio.to_thread(runner.close)


async def test_llamaindex_over_http(engine, remote, node_retrievers):
    system = "remote llamaindex"
    llm = StreamRAGLLM(engine=remote, max_tokens=MAX_TOKENS)
    assert llm.metadata.context_window == engine.max_model_len and llm.metadata.model_name == "tiny"
    probe = LedgerProbe(engine)
    fusion = QueryFusionRetriever(node_retrievers(probe), llm=llm, num_queries=1, similarity_top_k=8)
    response = await StreamingQueryEngine.from_args(fusion, llm=llm, system=system).aquery(QUESTION)

    query = response.metadata["streamrag_query"]
    assert query.session.runner.is_remote and probe.session is query.session
    await check_overlap(engine, probe, QUESTION, system, query.token_ids, MAX_TOKENS)
    assert response.response == engine.template.decode(query.token_ids)
    one_shot = await remote.call(lambda: remote.engine.complete(prompt_token_ids=query.session.prompt_token_ids, sampling=Sampling(max_tokens=MAX_TOKENS, temperature=0.0)))
    assert list(one_shot.token_ids) == query.token_ids

    chat = await llm.achat([ChatMessage(role=MessageRole.USER, content="Hello")])
    sync = await asyncio.to_thread(llm.chat, [ChatMessage(role=MessageRole.USER, content="Hello")])
    assert chat.message.content == sync.message.content and chat.additional_kwargs["completion_tokens"] >= 1


async def test_langchain_over_http(engine, remote, document_retrievers):
    system = "remote langchain"
    model = StreamRAGChatModel(engine=remote, max_tokens=MAX_TOKENS)
    probe = LedgerProbe(engine)
    rag = StreamingRAG(retrievers=[FanOutRetriever(retrievers=document_retrievers(probe))], model=model, system=system)
    events = [e async for e in rag.astream_events(QUESTION, version="v2")]
    assert [e["name"] for e in events if e["event"] == "on_custom_event"][-1] == GATE_EVENT
    answer = events[-1]["data"]["output"]
    await check_overlap(engine, probe, QUESTION, system, answer.response_metadata["token_ids"], MAX_TOKENS)
    assert answer.usage_metadata["input_tokens"] == len(probe.session.prompt_token_ids)

    awaited = await model.ainvoke([HumanMessage("Hello")])
    invoked = await asyncio.to_thread(model.invoke, [HumanMessage("Hello")])
    streamed = [c async for c in model.astream([HumanMessage("Hello")])]
    assert awaited.content == invoked.content == "".join(c.content for c in streamed)
    assert streamed[-1].usage_metadata["output_tokens"] == awaited.usage_metadata["output_tokens"] >= 1


async def test_api_key_and_errors(keyed_server):
    model = StreamRAGChatModel(base_url=keyed_server, api_key=API_KEY, max_tokens=4)
    try:
        assert (await model.ainvoke("Hello")).content is not None
    finally:
        await asyncio.to_thread(model.client.runner.close)
    with pytest.raises(ServerError) as caught:
        async with StreamRAGClient(keyed_server, api_key="wrong"):
            pass
    assert caught.value.status == 401
