"""`StreamingRAG`: a LangChain Runnable (retrievers + `StreamRAGChatModel`) with overlap.

    rag = StreamingRAG(retrievers=[dense, keyword, slow_hybrid], model=StreamRAGChatModel(...))
    answer = await rag.ainvoke("How does the with statement work?")      # an AIMessage

The retrievers run concurrently (any LangChain retriever; an `EnsembleRetriever` among them
streams its sub-retrievers); `StreamRAGCallbackHandler` pushes each one's documents into the
session as it returns, and vLLM prefills them while the others still run. The answer streams as
`AIMessageChunk`s once the gate opens (see integrations/streaming_query.py); the last chunk
carries usage, `finish_reason`, the session's stats, the answer's token ids and the sources in its
response_metadata.

In `astream_events(version="v2")` each context arrival is an `on_custom_event` named
"streamrag_context" (op, source, chunk ids, accepted, dropped, prompt tokens, time) and the
gate one named "streamrag_gate" (reason, time, tokens prefilled before it).

Input: the question as a string, or a dict with "question" (or "input" / "query").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForChainRun
from langchain_core.callbacks.manager import adispatch_custom_event
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import patch_config
from pydantic import ConfigDict, Field

from engine import Gate, SessionStats
from integrations.blocking import iterate_blocking
from integrations.context_feed import FeedEvent
from integrations.langchain.callback import StreamRAGCallbackHandler
from integrations.langchain.chat_model import StreamRAGChatModel
from integrations.streaming_query import StreamingQuery

CONTEXT_EVENT, GATE_EVENT = "streamrag_context", "streamrag_gate"


class StreamingRAG(RunnableSerializable[Any, AIMessage]):
    """Fields: retrievers, model, gate (default: open when retrieval is done), system, mode
    ("append" or "update", see integrations/context_feed.py), k (update mode's context size)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retrievers: Sequence[BaseRetriever]
    model: StreamRAGChatModel
    gate: Gate | None = Field(default=None, exclude=True)
    system: str | None = None
    mode: Literal["append", "update"] = "append"
    k: int | None = None

    @property
    def InputType(self) -> type:  # noqa: N802 - LangChain's name
        return str | dict

    @property
    def OutputType(self) -> type:  # noqa: N802 - LangChain's name
        return AIMessage

    # -- the four faces; everything runs through `astream` ---------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        return _message(list(self.stream(input, config, **kwargs)))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        return _message([chunk async for chunk in self.astream(input, config, **kwargs)])

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        # The sync face runs the async pipeline on a private loop; the engine keeps its own.
        yield from iterate_blocking(lambda: self.astream(input, config, **kwargs))

    async def astream(self, input: Any, config: RunnableConfig | None = None,
                      **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        async def once() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(once(), self._answer, config, **kwargs):
            yield chunk

    async def _answer(self, inputs: AsyncIterator[Any], run_manager: AsyncCallbackManagerForChainRun,
                      config: RunnableConfig) -> AsyncIterator[AIMessageChunk]:
        question = _question([item async for item in inputs][-1])
        callbacks = run_manager.get_child()
        callbacks.add_handler(StreamRAGCallbackHandler(), inherit=True)
        retriever_config = patch_config(config, callbacks=callbacks)

        async def retrieve() -> list:
            return await asyncio.gather(*(r.ainvoke(question, retriever_config) for r in self.retrievers))

        async def on_event(event: FeedEvent) -> None:
            await adispatch_custom_event(CONTEXT_EVENT, event.as_dict(), config=config)

        async def on_gate(stats: SessionStats) -> None:
            await adispatch_custom_event(GATE_EVENT, _gate_data(stats), config=config)

        query = StreamingQuery(self.model.client, question, system=self.system, gate=self.gate, mode=self.mode,
                               k=self.k, on_event=on_event, on_gate=on_gate)
        async for delta in query.run(retrieve, self.model.sampling()):
            if delta.finish_reason is None:
                yield AIMessageChunk(content=delta.text)
                continue
            stats = query.session.stats
            usage = UsageMetadata(input_tokens=stats.prompt_tokens, output_tokens=stats.generated_tokens,
                                  total_tokens=stats.prompt_tokens + stats.generated_tokens)
            metadata = {"model_name": self.model.model or self.model.client.model_name, "model_provider": "streamrag",
                        "finish_reason": delta.finish_reason, "streamrag": stats.to_dict(),
                        "session_id": query.session.id, "token_ids": list(query.token_ids),
                        "sources": [{"id": c.id, "source": c.source, "score": c.score} for c in query.feed.context]}
            yield AIMessageChunk(content=delta.text, usage_metadata=usage, response_metadata=metadata,
                                 chunk_position="last")


def _question(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("question", "input", "query"):
            if isinstance(value.get(key), str):
                return value[key]
    raise TypeError(f"input: {type(value).__name__} {value!r:.80}; pass the question as a string or {{'question': ...}}")


def _gate_data(stats: SessionStats) -> dict[str, Any]:
    return {"reason": stats.gate_reason, "t_gate": stats.t_gate, "prefilled_before_gate": stats.prefilled_before_gate,
            "prompt_tokens": stats.prompt_tokens, "chunks": stats.chunks, "chunks_dropped_late": stats.chunks_dropped_late}


def _message(chunks: list[AIMessageChunk]) -> AIMessage:
    if not chunks:
        raise RuntimeError("StreamingRAG produced no output; the session ended without an answer")
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return AIMessage(content=total.content, usage_metadata=total.usage_metadata,
                     response_metadata=total.response_metadata, id=total.id)
