"""`StreamingQuery`: one question answered while its context is still being retrieved.

Both framework integrations drive a query the same way:

    open a session ─┬─ retrieval task: run the user's retriever(s) with the feed active;
                    │    callbacks push partial results (append/update); then finish_context()
                    └─ answer: session.generate() waits for the gate, then streams tokens

      t ──────────────────────────────────────────────────────────────────▶
      retriever A ──┤ append ▒▒ prefill
      retriever B ──────────────┤ append ▒▒▒ prefill
      retriever C ───────────────────────────────┤ append ▒ ┤gate: done│ tail + decode ──▶ tokens

The answer starts when the gate opens: when retrieval is done, or earlier when the client's
criteria or deadline say so (context arriving after that is dropped, and the retrievers still
running are cancelled once the answer is complete). Either way the answer is decoded from
exactly the prompt that was prefilled plus the closing template: the session's own prompt.

If retrieval fails, the answer is cancelled and the session aborted, so vLLM frees its blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from engine import Delta, Gate, Sampling, SessionStats
from integrations.client import EngineClient
from integrations.context_feed import ContextFeed, FeedEvent, Mode, feeding
from integrations.session_handle import SessionHandle

R = TypeVar("R")


class StreamingQuery(Generic[R]):
    def __init__(self, client: EngineClient, question: str, *, system: str | None = None, gate: Gate | None = None,
                 mode: Mode = "append", k: int | None = None,
                 on_event: Callable[[FeedEvent], Awaitable[None]] | None = None,
                 on_gate: Callable[[SessionStats], Awaitable[None]] | None = None) -> None:
        if not question or not question.strip():
            raise ValueError("question: empty; a streaming query needs the user's question")
        self.client = client
        self.question = question
        self.system = system
        self.gate = gate
        self.mode: Mode = mode
        self.k = k
        self._on_event = on_event
        self._on_gate = on_gate
        self.session: SessionHandle | None = None
        self.feed: ContextFeed | None = None
        self.retrieved: R | None = None  # what `retrieve` returned, if it finished in time
        self.token_ids: list[int] = []  # the answer's token ids (empty if a server sends none)

    async def run(self, retrieve: Callable[[], Awaitable[R]], sampling: Sampling | None = None) -> AsyncIterator[Delta]:
        """Retrieve (with the feed active) and stream the answer."""
        self.session = session = await self.client.open_session(self.question, self.system, self.gate)
        self.feed = feed = ContextFeed(session, self.mode, self.k, on_event=self._on_event)
        retrieval = asyncio.create_task(self._retrieve(retrieve, feed), name="streamrag-retrieval")
        answer = session.generate(sampling)
        first = asyncio.create_task(_next(answer), name="streamrag-first-token")
        finished = False
        try:
            await asyncio.wait({retrieval, first}, return_when=asyncio.FIRST_COMPLETED)
            if retrieval.done() and retrieval.exception() is not None:
                raise retrieval.exception()
            delta = await first
            if self._on_gate is not None:
                await session.refresh()
                await self._on_gate(session.stats)
            while delta is not None:
                self.token_ids.extend(delta.token_ids)
                yield delta
                delta = await _next(answer)
            finished = True
        finally:
            await _cancel(first)
            await answer.aclose()
            if not retrieval.done():
                retrieval.cancel()  # the gate opened early: what is still coming would be dropped
            await asyncio.gather(retrieval, return_exceptions=True)
            await feed.discard()
            if retrieval.done() and not retrieval.cancelled() and retrieval.exception() is None:
                self.retrieved = retrieval.result()
            if not finished:
                await session.abort()
            else:
                await session.refresh()  # remote: the final stats and prompt token ids

    async def _retrieve(self, retrieve: Callable[[], Awaitable[R]], feed: ContextFeed) -> R:
        with feeding(feed):  # inside this task: every task retrieval starts inherits the feed
            result = await retrieve()
        await feed.close()
        return result


async def _next(items: AsyncIterator[Delta]) -> Delta | None:
    return await anext(items, None)


async def _cancel(task: asyncio.Task) -> None:
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
