"""Swap a LangChain chain's chat model for streamrag's, then let retrieval overlap with prefill.

    python -m docs.examples.langchain_swap      # after `streamrag models prepare`

`build_chain(retriever, model)` stands for the chain you already have, written once: retrieve,
fill a prompt, call the model, parse a string. It runs with langchain-core's stock
`FakeListChatModel` and, unchanged, with `StreamRAGChatModel`. `build_streaming_chain` is the
change that adds the overlap: `StreamingRAG` takes the retrievers and the model, pushes each
retriever's documents into a session as it returns, and decodes from exactly that prompt.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel, FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableParallel, RunnablePassthrough

from engine import EngineConfig
from integrations import EngineRunner
from integrations.langchain import StoreRetriever, StreamingRAG, StreamRAGChatModel
from retrievers import Embedder, QdrantStore, ingest, write_python_docs

QUESTION = "How does the with statement work?"
PROMPT = ChatPromptTemplate.from_messages(
    [("system", "Answer using the context.\n\n{context}"), ("human", "{question}")]
)


def _join(results: dict) -> str:
    documents: list[Document] = [d for docs in results.values() for d in docs]
    return "\n\n".join(d.page_content for d in documents)


def build_chain(retrievers: list[BaseRetriever], model: BaseChatModel) -> Runnable:
    """Your chain, as it is: retrievers in parallel, a prompt, the model, a string."""
    context = RunnableParallel({f"r{i}": r for i, r in enumerate(retrievers)}) | _join
    return {"context": context, "question": RunnablePassthrough()} | PROMPT | model | StrOutputParser()


def build_streaming_chain(retrievers: list[BaseRetriever], model: StreamRAGChatModel) -> Runnable:
    """The same retrievers and model, with retrieval overlapping prefill."""
    return StreamingRAG(retrievers=retrievers, model=model) | StrOutputParser()


async def run(engine, retrievers: list[BaseRetriever], question: str = QUESTION) -> dict:
    """Answer `question` three ways; `engine` is an EngineRunner, a started StreamEngine or a URL."""
    stock = await build_chain(retrievers, FakeListChatModel(responses=["(a stock model's answer)"])).ainvoke(question)
    model = StreamRAGChatModel(engine=engine, max_tokens=32) if not isinstance(engine, str) else \
        StreamRAGChatModel(base_url=engine, max_tokens=32)
    swapped = await build_chain(retrievers, model).ainvoke(question)
    streaming = await build_streaming_chain(retrievers, model).ainvoke(question)
    return {"stock": stock, "swapped": swapped, "streaming": streaming}


async def _demo(runner: EngineRunner) -> None:
    embedder = Embedder.load()
    async with await QdrantStore.open(":memory:") as store:
        folder = Path(tempfile.mkdtemp()) / "python-docs"
        write_python_docs(folder, ["with", "try", "for", "context-managers"])
        await ingest([folder], collection="docs", store=store, embedder=embedder, progress=False)
        retrievers = [StoreRetriever(store=store, embedder=embedder, collection="docs", k=k) for k in (2, 4, 6)]
        result = await run(runner, retrievers)
    for name, answer in result.items():
        print(f"{name:>9}: {answer[:200]!r}")


def main() -> None:
    with EngineRunner.start(EngineConfig(model="default")) as runner:
        asyncio.run(_demo(runner))


if __name__ == "__main__":
    main()
