"""Adapters: real LlamaIndex and LangChain retriever classes, with controlled latencies, as one stream."""

from __future__ import annotations

import asyncio
import time

import pytest
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever as LangChainRetriever
from llama_index.core.base.base_retriever import BaseRetriever as LlamaIndexRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from retrievers.adapters import LangChainAdapter, LlamaIndexAdapter
from retrievers.events import Append, ContextEvent, ContextStream, Done, Error, Update

FAST, SLOW = 0.05, 1.5


class TopicRetriever(LlamaIndexRetriever):
    """A LlamaIndex retriever that answers after `delay` seconds with fixed nodes."""

    def __init__(self, delay: float, nodes: list[tuple[str, str, float]], fail: bool = False) -> None:
        super().__init__()
        self.delay, self.nodes, self.fail = delay, nodes, fail

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        raise NotImplementedError("async only")

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("index unavailable")
        return [
            NodeWithScore(
                node=TextNode(
                    id_=node_id,
                    text=f"{text} ({query_bundle.query_str})",
                    metadata={"file_name": f"{node_id}.md"},
                ),
                score=score,
            )
            for node_id, text, score in self.nodes
        ]


class PassageRetriever(LangChainRetriever):
    """A LangChain retriever that answers after `delay` seconds with fixed passages."""

    delay: float
    passages: list[str]
    fail: bool = False

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        raise NotImplementedError("async only")

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("vector store unavailable")
        return [
            Document(page_content=text, metadata={"relevance_score": 1.0 / (rank + 1)})
            for rank, text in enumerate(self.passages)
        ]


async def timed(stream: ContextStream) -> list[tuple[ContextEvent, float]]:
    """Each event with its arrival time, in seconds from the start."""
    start = time.monotonic()
    return [(event, time.monotonic() - start) async for event in stream]


async def test_llama_index_retrievers_stream_in_completion_order() -> None:
    adapter = LlamaIndexAdapter(
        {
            "slow": TopicRetriever(SLOW, [("with", "The with statement", 0.7)]),
            "fast": TopicRetriever(
                FAST, [("try", "The try statement", 0.9), ("raise", "The raise statement", 0.5)]
            ),
        }
    )
    arrivals = await timed(adapter.stream("cleanup"))
    events = [event for event, _ in arrivals]
    assert [type(event) for event in events] == [Append, Append, Done]
    assert [c.id for c in events[0].chunks] == ["try", "raise"] and [c.id for c in events[1].chunks] == [
        "with"
    ]
    first = events[0].chunks[0]
    assert (first.text, first.score, first.source) == ("The try statement (cleanup)", 0.9, "try.md")
    assert first.metadata["retriever"] == "fast"
    # The slow retriever cannot answer before SLOW: the first append did not wait for it.
    assert arrivals[0][1] < SLOW <= arrivals[1][1]


async def test_llama_index_update_mode_fuses_as_retrievers_finish() -> None:
    adapter = LlamaIndexAdapter(
        [
            TopicRetriever(FAST, [("a", "A", 0.9), ("b", "B", 0.8)]),
            TopicRetriever(SLOW, [("b", "B", 0.9), ("c", "C", 0.1)]),
        ],
        mode="update",
        k=2,
    )
    arrivals = await timed(adapter.stream("q"))
    (first, first_at), (second, _), (done, _) = arrivals
    assert isinstance(first, Update) and isinstance(second, Update) and isinstance(done, Done)
    assert [c.id for c in first.chunks] == ["a", "b"] and first_at < SLOW
    assert [c.id for c in second.chunks] == ["b", "a"]  # b is in both rankings


async def test_langchain_retrievers_stream_in_completion_order() -> None:
    adapter = LangChainAdapter(
        {
            "slow": PassageRetriever(delay=SLOW, passages=["The with statement"]),
            "fast": PassageRetriever(delay=FAST, passages=["The try statement", "The raise statement"]),
        }
    )
    arrivals = await timed(adapter.stream("cleanup"))
    events = [event for event, _ in arrivals]
    assert [type(event) for event in events] == [Append, Append, Done]
    assert [c.text for c in events[0].chunks] == ["The try statement", "The raise statement"]
    assert events[0].chunks[0].score == 1.0 and events[0].chunks[0].source == "fast"
    # The slow retriever cannot answer before SLOW: the first append did not wait for it.
    assert arrivals[0][1] < SLOW <= arrivals[1][1]


async def test_langchain_same_passage_from_two_retrievers_is_one_chunk() -> None:
    adapter = LangChainAdapter(
        [
            PassageRetriever(delay=FAST, passages=["shared", "only a"]),
            PassageRetriever(delay=FAST * 4, passages=["shared", "only b"]),
        ]
    )
    events = [event async for event in adapter.stream("q")]
    texts = [c.text for event in events if isinstance(event, Append) for c in event.chunks]
    assert texts == ["shared", "only a", "only b"]


@pytest.mark.parametrize("framework", ["llama_index", "langchain"])
async def test_a_failing_retriever_is_an_error_and_the_stream_ends_with_done(framework: str) -> None:
    if framework == "llama_index":
        adapter = LlamaIndexAdapter(
            {"bad": TopicRetriever(FAST, [], fail=True), "good": TopicRetriever(FAST * 4, [("t", "T", 1.0)])}
        )
    else:
        adapter = LangChainAdapter(
            {
                "bad": PassageRetriever(delay=FAST, passages=[], fail=True),
                "good": PassageRetriever(delay=FAST * 4, passages=["T"]),
            }
        )
    events = [event async for event in adapter.stream("q")]
    assert [type(event) for event in events] == [Error, Append, Done]
    assert events[0].source == "bad" and isinstance(events[0].exception, RuntimeError)


async def test_a_retriever_past_the_timeout_is_an_error() -> None:
    adapter = LangChainAdapter(
        {
            "slow": PassageRetriever(delay=60.0, passages=["x"]),
            "fast": PassageRetriever(delay=FAST, passages=["y"]),
        },
        timeout=0.5,
    )
    events = [event async for event in adapter.stream("q")]
    assert [type(event) for event in events] == [Append, Error, Done]
    assert isinstance(events[1].exception, TimeoutError)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="retrievers is empty"):
        LlamaIndexAdapter({})
    with pytest.raises(ValueError, match="mode must be"):
        LangChainAdapter([PassageRetriever(delay=0, passages=[])], mode="replace")  # type: ignore[arg-type]
