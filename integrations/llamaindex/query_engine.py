"""`StreamingQueryEngine`: a LlamaIndex query engine whose answer reuses what retrieval prefilled.

    query_engine = StreamingQueryEngine.from_args(QueryFusionRetriever([...]), llm=StreamRAGLLM(...))
    response = await query_engine.aquery("...")

It stands where `RetrieverQueryEngine` stands. While the retriever runs, the instrumentation
handler pushes each sub-retriever's nodes into a streaming session as it returns, and vLLM
prefills them; the answer is decoded from that session, so the final prompt *is* what was
prefilled plus the closing template, never a re-rendered prompt that would be computed again.
The prompt layout is streamrag's (numbered passages under the question, engine/prompt.py), so
LlamaIndex's text-QA templates and response synthesizers are not used here.

`response.metadata["streamrag_session"]` is the `SessionHandle` (stats, prompt token ids);
`response.source_nodes` are the nodes the model saw, in prompt order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.callbacks import CallbackManager
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.settings import Settings

from engine import Gate
from integrations.blocking import iterate_blocking
from integrations.context_feed import Mode
from integrations.llamaindex.event_handler import StreamRAGEventHandler
from integrations.llamaindex.llm import StreamRAGLLM
from integrations.streaming_query import StreamingQuery


class StreamingQueryEngine(BaseQueryEngine):
    """Args:
        retriever: any LlamaIndex retriever; a `QueryFusionRetriever`'s sub-retrievers stream.
        llm: a `StreamRAGLLM` (default: `Settings.llm`); its max_tokens/temperature apply.
        gate: when decoding may start (default: when retrieval is done).
        system: the system prompt (default: streamrag's).
        mode: "append" (each sub-retriever's new nodes after the others) or "update" (the fused
            ranking so far replaces the context each time; see integrations/context_feed.py).
        k: in update mode, how many fused nodes the context keeps.
        streaming: return a streaming response (tokens as they come).
    """

    def __init__(self, retriever: BaseRetriever, llm: StreamRAGLLM | None = None, *, gate: Gate | None = None,
                 system: str | None = None, mode: Mode = "append", k: int | None = None, streaming: bool = False,
                 callback_manager: CallbackManager | None = None) -> None:
        llm = llm if llm is not None else Settings.llm
        if not isinstance(llm, StreamRAGLLM):
            raise TypeError(
                f"llm: {type(llm).__name__} cannot stream context into a session; pass llm=StreamRAGLLM(...) "
                "or set Settings.llm to one (other LLMs work with RetrieverQueryEngine, without overlap)"
            )
        self._retriever = retriever
        self._llm = llm
        self._gate, self._system, self._mode, self._k = gate, system, mode, k
        self._streaming = streaming
        StreamRAGEventHandler.install()
        super().__init__(callback_manager=callback_manager or Settings.callback_manager)

    @classmethod
    def from_args(cls, retriever: BaseRetriever, llm: StreamRAGLLM | None = None, **kwargs: Any) -> StreamingQueryEngine:
        """Same call shape as `RetrieverQueryEngine.from_args(retriever, llm=...)`."""
        return cls(retriever, llm, **kwargs)

    @property
    def retriever(self) -> BaseRetriever:
        return self._retriever

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        query = self._query_of(query_bundle)
        deltas = query.run(lambda: self._retriever.aretrieve(query_bundle), self._llm.sampling())
        if self._streaming:
            return _AsyncAnswer(query, deltas).response()
        text = "".join([delta.text async for delta in deltas])
        return Response(text, source_nodes=_nodes(query), metadata=_metadata(query))

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        # The sync face: the same async query on a private loop (the engine has its own).
        query = self._query_of(query_bundle)
        deltas = iterate_blocking(lambda: query.run(lambda: self._retriever.aretrieve(query_bundle),
                                                    self._llm.sampling()))
        if self._streaming:
            response = StreamingResponse(iter(()), metadata={"streamrag_query": query})
            response.response_gen = _texts(deltas, query, response)
            return response
        text = "".join(delta.text for delta in deltas)
        return Response(text, source_nodes=_nodes(query), metadata=_metadata(query))

    def _query_of(self, query_bundle: QueryBundle) -> StreamingQuery:
        return StreamingQuery(self._llm.client, query_bundle.query_str, system=self._system, gate=self._gate,
                              mode=self._mode, k=self._k)


class _AsyncAnswer:
    """An `AsyncStreamingResponse` whose source nodes and metadata are filled in at the end."""

    def __init__(self, query: StreamingQuery, deltas: AsyncIterator) -> None:
        self._query, self._deltas = query, deltas
        self._response: AsyncStreamingResponse | None = None

    def response(self) -> AsyncStreamingResponse:
        self._response = AsyncStreamingResponse(response_gen=self._texts(), metadata={"streamrag_query": self._query})
        return self._response

    async def _texts(self) -> AsyncIterator[str]:
        async for delta in self._deltas:
            if delta.text:
                yield delta.text
        self._response.source_nodes = _nodes(self._query)
        self._response.metadata.update(_metadata(self._query))


def _texts(deltas: Iterator, query: StreamingQuery, response: StreamingResponse) -> Iterator[str]:
    for delta in deltas:
        if delta.text:
            yield delta.text
    response.source_nodes = _nodes(query)
    response.metadata.update(_metadata(query))


def _nodes(query: StreamingQuery) -> list[NodeWithScore]:
    """The context the model saw, in prompt order, as nodes."""
    return [NodeWithScore(node=TextNode(id_=c.id, text=c.text, metadata=dict(c.metadata)), score=c.score)
            for c in (query.feed.context if query.feed is not None else [])]


def _metadata(query: StreamingQuery) -> dict[str, Any]:
    return {"streamrag_query": query, "streamrag_session": query.session,
            "streamrag_context": [event.as_dict() for event in (query.feed.events if query.feed else [])]}
