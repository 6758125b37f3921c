"""Fixtures of the integrations tests: real LlamaIndex / LangChain retrievers over embedded Qdrant.

The retrievers are the integrations' own `StoreRetriever`s over the reference corpus, each made
slower by a chosen latency (the only way to stagger retrievers reliably on one machine) and
searching its own phrasing of the question, as the sub-queries of a fusion retriever would.

`engine_runner` is the one extra engine of the test session: the langchain-tests suites call
`invoke()` / `stream()` from plain sync test functions, when the session loop that runs the
shared `engine` is not running, so they need an engine on a loop of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever as LangChainRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle

from engine import Sampling
from integrations import EngineRunner
from integrations.langchain import StoreRetriever as DocumentStoreRetriever
from integrations.llamaindex import StoreRetriever as NodeStoreRetriever
from tests.engine_fixtures import TEST_ENGINE_CONFIG
from tests.retrievers_fixtures import COLLECTION

QUESTION = "How does the with statement work?"


@dataclass(frozen=True)
class Stagger:
    """One retriever of the staggered trio: its latency, its phrasing, how many passages."""

    delay: float
    query: str
    top_k: int


# The question (fast), a paraphrase (slower) and a follow-up sub-question against a slow store
# that returns its single best passage. Over the reference corpus the last one adds one short
# passage the others did not find.
STAGGERED = (
    Stagger(0.2, QUESTION, 5),
    Stagger(0.6, "context manager __enter__ and __exit__ methods", 5),
    Stagger(1.2, "What happens when a with block raises an exception?", 1),
)
OnReturn = Callable[[Any], Awaitable[None]]


class DelayedNodeRetriever(NodeStoreRetriever):
    """A LlamaIndex store retriever that answers `delay` seconds after it was asked."""

    def __init__(self, stagger: Stagger, on_return: OnReturn | None = None, **kwargs: Any) -> None:
        super().__init__(top_k=stagger.top_k, **kwargs)
        self.stagger, self.on_return = stagger, on_return

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        started = time.monotonic()
        nodes = await super()._aretrieve(QueryBundle(self.stagger.query))
        await asyncio.sleep(max(0.0, self.stagger.delay - (time.monotonic() - started)))
        if self.on_return is not None:
            await self.on_return(self)
        return nodes


class DelayedDocumentRetriever(DocumentStoreRetriever):
    """A LangChain store retriever that answers `delay` seconds after it was asked."""

    stagger: Stagger
    on_return: Any = None

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        started = time.monotonic()
        documents = await super()._aget_relevant_documents(self.stagger.query, run_manager=run_manager)
        await asyncio.sleep(max(0.0, self.stagger.delay - (time.monotonic() - started)))
        if self.on_return is not None:
            await self.on_return(self)
        return documents


class FanOutRetriever(LangChainRetriever):
    """Runs its retrievers concurrently and returns their union, as `EnsembleRetriever` does:
    each child reports to the callbacks as its own run, with this one as the parent."""

    retrievers: list[LangChainRetriever]

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        raise NotImplementedError("async only")

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        results = await asyncio.gather(
            *(r.ainvoke(query, {"callbacks": run_manager.get_child(f"child-{i}")}) for i, r in enumerate(self.retrievers))
        )
        seen: set[str] = set()
        return [d for docs in results for d in docs if not (d.id in seen or seen.add(d.id))]


@pytest.fixture(scope="session")
def engine_runner() -> Iterator[EngineRunner]:
    """A second engine (tiny model, same config) on a background thread; see the module docstring."""
    runner = EngineRunner.start(TEST_ENGINE_CONFIG)
    yield runner
    runner.close()


@pytest.fixture
def node_retrievers(reference_store, embedder) -> Callable[..., list[DelayedNodeRetriever]]:
    store, _ = reference_store

    def make(on_return: OnReturn | None = None, staggers: tuple[Stagger, ...] = STAGGERED) -> list[DelayedNodeRetriever]:
        return [DelayedNodeRetriever(s, on_return, store=store, embedder=embedder, collection=COLLECTION) for s in staggers]

    return make


@pytest.fixture
def document_retrievers(reference_store, embedder) -> Callable[..., list[DelayedDocumentRetriever]]:
    store, _ = reference_store

    def make(on_return: OnReturn | None = None, staggers: tuple[Stagger, ...] = STAGGERED) -> list[DelayedDocumentRetriever]:
        return [DelayedDocumentRetriever(stagger=s, on_return=on_return, store=store, embedder=embedder,
                                         collection=COLLECTION, k=s.top_k) for s in staggers]

    return make


class LedgerProbe:
    """`on_return` hook: when a retriever returns, what vLLM had computed for the active session.

    Reads vLLM's own per-step scheduled-token counts (the scheduler ledger), not the session's
    arithmetic; the session is found the way the callbacks find it, through the active feed.
    The slowest retriever holds its answer until the others' context is pushed and prefilled
    (causality, not timing): what the test then checks is that all of it was computed while
    that retriever was still running, however busy the machine is.
    """

    def __init__(self, engine) -> None:
        self.engine = engine
        self.computed_at: dict[float, int] = {}  # retriever delay -> tokens computed at its return
        self.session = None  # the query's SessionHandle, as the callbacks saw it
        self._others_back = 0

    async def __call__(self, retriever: Any) -> None:
        from integrations import active_feed

        feed = active_feed()
        assert feed is not None, "a staggered retriever ran outside a streaming query"
        self.session = feed.session
        if retriever.stagger.delay == max(s.delay for s in STAGGERED):
            while self._others_back < len(STAGGERED) - 1:  # they answer sooner; bounded by the test timeout
                await asyncio.sleep(0.01)
            await feed.wait_pushed()
            await self.engine.session(feed.session.id).wait_prefilled()  # the engine behind any client
        else:
            self._others_back += 1
        self.computed_at[retriever.stagger.delay] = sum(self.engine.ledger.scheduled_tokens(feed.session.id))


async def check_overlap(engine, probe: LedgerProbe, question: str, system: str,
                        answer_ids: list[int], max_tokens: int) -> float:
    """The acceptance checks of a staggered pipeline run; returns the prefilled fraction.

    - >= 90% of the final prompt's context tokens were computed before the last retriever
      returned (vLLM's ledger), and the session's own stats agree;
    - vLLM computed the final prompt exactly once: the answer call reused what was prefilled;
    - the answer equals, token for token, a one-shot completion of the same final prompt.
    """
    session = probe.session
    rendered = engine.template.render(question, system)
    prefix, closing = len(rendered.prefix_ids), len(rendered.closing_ids)
    prompt = session.prompt_token_ids
    assert prompt[:prefix] == list(rendered.prefix_ids) and prompt[-closing:] == list(rendered.closing_ids)
    context = len(prompt) - prefix - closing
    last = max(s.delay for s in STAGGERED)
    fraction = (probe.computed_at[last] - prefix) / context
    assert fraction >= 0.9, f"only {fraction:.1%} of {context} context tokens were prefilled before the last retriever"
    stats = session.stats
    assert stats.prefilled_before_gate >= probe.computed_at[last]
    assert (stats.prefilled_before_gate - prefix) / context >= 0.9
    assert stats.prefilled_before_gate + stats.tail_prefill_tokens == len(prompt)
    # Every prompt token scheduled once, then one decode step per token after the first.
    assert sum(engine.ledger.scheduled_tokens(session.id)) == len(prompt) + len(answer_ids) - 1
    one_shot = await engine.complete(prompt_token_ids=prompt, sampling=Sampling(max_tokens=max_tokens))
    assert answer_ids == list(one_shot.token_ids)
    return fraction
