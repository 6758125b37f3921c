"""LangChain: `StreamRAGChatModel` as a plain chat model, and `StreamingRAG` over staggered retrievers.

Everything runs on the shared engine (tiny model) and the reference corpus in embedded Qdrant;
the staggered retrievers sit inside a fan-out retriever, so they report as nested runs the way
an `EnsembleRetriever`'s do.
"""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from engine import Gate, Sampling
from integrations.langchain import (
    CONTEXT_EVENT,
    GATE_EVENT,
    StreamingRAG,
    StreamRAGChatModel,
)
from tests.integrations_fixtures import (
    QUESTION,
    STAGGERED,
    FanOutRetriever,
    LedgerProbe,
    check_overlap,
)

MAX_TOKENS = 12


@pytest.fixture
async def model(engine) -> StreamRAGChatModel:
    # Built on the session loop, which runs the engine: the model attaches to that loop.
    return StreamRAGChatModel(engine=engine, max_tokens=MAX_TOKENS)


async def test_staggered_ensemble_is_prefilled_before_the_last_retriever(engine, model, document_retrievers):
    system = "langchain staggered ensemble"
    probe = LedgerProbe(engine)
    rag = StreamingRAG(retrievers=[FanOutRetriever(retrievers=document_retrievers(probe))], model=model, system=system)

    events = [e async for e in rag.astream_events(QUESTION, version="v2")]

    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert [e["name"] for e in custom] == [CONTEXT_EVENT] * 3 + [GATE_EVENT]
    arrivals = [e["data"] for e in custom[:3]]
    assert [a["op"] for a in arrivals] == ["append"] * 3 and [a["dropped"] for a in arrivals] == [0, 0, 0]
    # In the order the retrievers answered (by their latencies), whatever the machine's load.
    assert [a["t"] for a in arrivals] == sorted(a["t"] for a in arrivals)
    assert [len(a["chunk_ids"]) for a in arrivals][-1] <= STAGGERED[-1].top_k
    assert custom[3]["data"]["reason"] == "done"
    # The gate comes before the first token; the leaves reported as children of the fan-out.
    kinds = [e["event"] for e in events]
    assert kinds.index("on_custom_event") < kinds.index("on_chain_stream")
    assert max(i for i, k in enumerate(kinds) if k == "on_custom_event") < kinds.index("on_chain_stream")
    assert sum(1 for e in events if e["event"] == "on_retriever_end") == 4

    answer = events[-1]["data"]["output"]
    metadata = answer.response_metadata
    assert metadata["session_id"] == probe.session.id and metadata["streamrag"]["gate_reason"] == "done"
    fraction = await check_overlap(engine, probe, QUESTION, system, metadata["token_ids"], MAX_TOKENS)
    assert fraction < 1.0
    assert answer.content == engine.template.decode(metadata["token_ids"])
    assert answer.usage_metadata["input_tokens"] == len(probe.session.prompt_token_ids)
    assert answer.usage_metadata["output_tokens"] == len(metadata["token_ids"])
    assert len(metadata["sources"]) == probe.session.stats.chunks == 9


async def test_gate_criteria_answer_before_slow_retrievers(engine, model, document_retrievers):
    rag = StreamingRAG(retrievers=document_retrievers(), model=model, gate=Gate(min_chunks=5),
                       system="langchain gate criteria")
    gates = [e["data"] async for e in rag.astream_events(QUESTION, version="v2")
             if e["event"] == "on_custom_event" and e["name"] == GATE_EVENT]
    assert gates[0]["reason"] == "criteria" and gates[0]["chunks"] == 5
    assert gates[0]["t_gate"] < STAGGERED[1].delay
    await asyncio.sleep(0)
    assert engine.live_sessions == 0


async def test_runnable_faces(engine, model, document_retrievers):
    rag = StreamingRAG(retrievers=document_retrievers(staggers=STAGGERED[:2]), model=model, system="langchain faces")
    awaited = await rag.ainvoke({"question": QUESTION})
    chunks = [c async for c in rag.astream(QUESTION)]
    assert isinstance(awaited, AIMessage) and chunks[-1].chunk_position == "last"
    # The sync faces run on a worker thread here, so that this loop (the engine's) keeps running.
    invoked = await asyncio.to_thread(rag.invoke, QUESTION)
    streamed = await asyncio.to_thread(lambda: list(rag.stream(QUESTION)))
    batched = await asyncio.to_thread(rag.batch, [QUESTION, "What does the for statement do?"])
    abatched = await rag.abatch([QUESTION, "What does the for statement do?"])
    # Greedy decoding of the same prompt: every face gives the same answer.
    same = [awaited.content, "".join(c.content for c in chunks), invoked.content,
            "".join(c.content for c in streamed), batched[0].content, abatched[0].content]
    assert len(set(same)) == 1 and same[0]
    assert batched[1].content == abatched[1].content
    with pytest.raises(TypeError, match="question"):
        await rag.ainvoke(42)


async def test_chat_model_matches_a_one_shot_of_the_chat_template(engine, model):
    messages = [SystemMessage("Be brief."), HumanMessage("Hello", name="example_user")]
    ids = engine.template.encode(engine.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        tokenize=False, add_generation_prompt=True))
    expected = await engine.complete(prompt_token_ids=ids, sampling=Sampling(max_tokens=MAX_TOKENS))

    answer = await model.ainvoke(messages)
    assert answer.content == expected.text
    assert answer.usage_metadata == {"input_tokens": len(ids), "output_tokens": len(expected.token_ids),
                                     "total_tokens": len(ids) + len(expected.token_ids)}
    assert answer.response_metadata["model_name"] == "tiny"
    chunks = [c async for c in model.astream(messages)]
    assert "".join(c.content for c in chunks) == expected.text
    assert chunks[-1].usage_metadata["output_tokens"] == len(expected.token_ids)
    assert all(c.usage_metadata is None for c in chunks[:-1])


async def test_stop_sequences_cut_the_answer(engine, model):
    full = (await model.ainvoke("Hello")).content
    words = full.split()
    assert len(words) >= 3
    stop = words[2]
    cut = await model.ainvoke("Hello", stop=[stop])
    assert cut.content == full[: full.index(stop)] and cut.response_metadata["finish_reason"] == "stop"
    streamed = "".join([c.content async for c in model.astream("Hello", stop=[stop])])
    assert streamed == cut.content
