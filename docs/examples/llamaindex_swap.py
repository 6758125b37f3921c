"""Swap a LlamaIndex pipeline's LLM for streamrag's, then let retrieval overlap with prefill.

    python -m docs.examples.llamaindex_swap      # after `streamrag models prepare`

`build_pipeline(retrievers, llm)` stands for the pipeline you already have, written once: a
`QueryFusionRetriever` over your retrievers and a stock `RetrieverQueryEngine`. It runs with
LlamaIndex's stock `MockLLM` and, unchanged, with `StreamRAGLLM`. `build_streaming_pipeline`
is the one change that adds the overlap: `StreamingQueryEngine.from_args` where
`RetrieverQueryEngine.from_args` was. Each sub-retriever's nodes are then prefilled as it
returns, and the answer is decoded from exactly that prompt.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.llms import LLM, MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import QueryFusionRetriever

from engine import EngineConfig
from integrations import EngineRunner
from integrations.llamaindex import StoreRetriever, StreamingQueryEngine, StreamRAGLLM
from retrievers import Embedder, QdrantStore, ingest, write_python_docs

QUESTION = "How does the with statement work?"


def build_pipeline(retrievers: list[BaseRetriever], llm: LLM) -> RetrieverQueryEngine:
    """Your pipeline, as it is: fusion of several retrievers, a stock query engine."""
    fusion = QueryFusionRetriever(retrievers, llm=llm, num_queries=1, similarity_top_k=6)
    return RetrieverQueryEngine.from_args(fusion, llm=llm)


def build_streaming_pipeline(retrievers: list[BaseRetriever], llm: StreamRAGLLM) -> StreamingQueryEngine:
    """The same pipeline with retrieval overlapping prefill: only the query engine's name changes."""
    fusion = QueryFusionRetriever(retrievers, llm=llm, num_queries=1, similarity_top_k=6)
    return StreamingQueryEngine.from_args(fusion, llm=llm)


async def run(engine, retrievers: list[BaseRetriever], question: str = QUESTION) -> dict:
    """Answer `question` three ways; `engine` is an EngineRunner, a started StreamEngine or a URL."""
    stock = await build_pipeline(retrievers, MockLLM(max_tokens=16)).aquery(question)
    llm = StreamRAGLLM(engine=engine, max_tokens=32)
    swapped = await build_pipeline(retrievers, llm).aquery(question)
    streaming = await build_streaming_pipeline(retrievers, llm).aquery(question)
    stats = streaming.metadata["streamrag_session"].stats
    return {"stock": str(stock), "swapped": str(swapped), "streaming": str(streaming), "stats": stats}


async def _demo(runner: EngineRunner) -> None:
    embedder = Embedder.load()
    async with await QdrantStore.open(":memory:") as store:
        folder = Path(tempfile.mkdtemp()) / "python-docs"
        write_python_docs(folder, ["with", "try", "for", "context-managers"])
        await ingest([folder], collection="docs", store=store, embedder=embedder, progress=False)
        retrievers = [StoreRetriever(store, embedder, "docs", top_k=k) for k in (2, 4, 6)]
        result = await run(runner, retrievers)
    for name in ("stock", "swapped", "streaming"):
        print(f"{name:>9}: {result[name][:200]!r}")
    stats = result["stats"]
    print(f"prefilled before the gate: {stats.prefilled_before_gate} of {stats.prompt_tokens} prompt tokens")


def main() -> None:
    with EngineRunner.start(EngineConfig(model="default")) as runner:
        asyncio.run(_demo(runner))


if __name__ == "__main__":
    main()
