"""`ContextFeed`: pushes what a query's retrievers report into its session, in order.

Framework callbacks (a LlamaIndex event handler, a LangChain callback handler) are called from
deep inside the user's pipeline, with no handle on our session. They find it through a context
variable: the query engine or Runnable sets the active feed (`feeding(feed)`) around retrieval,
and asyncio copies context variables into every task it starts, so each sub-retriever's
callback, however deep, sees the feed of its own query and never another one's.

Callbacks are synchronous and may fire from concurrent tasks; the feed turns them into one
ordered queue of session calls, worked off by one task, so the session sees the arrivals in the
order the retrievers finished.

A retrieval that started retrievals of its own (a fusion or ensemble retriever) is a
*composite*; one that did not is a *leaf*. Leaves are the partial results worth prefilling:

    mode="append": each leaf's chunks not seen before go after the ones already there; a
                   composite's result only adds chunks no leaf reported.
    mode="update": after each leaf, the reciprocal-rank fusion of all leaves so far (top `k`)
                   replaces the context (LCP reuse keeps the common prefix); the outermost
                   composite's own ranking, when it comes, is the final word.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

from integrations.session_handle import SessionHandle
from retrievers.events import Chunk
from retrievers.fusion import reciprocal_rank_fusion

Mode = Literal["append", "update"]
_ACTIVE: ContextVar[ContextFeed | None] = ContextVar("streamrag_context_feed", default=None)


def active_feed() -> ContextFeed | None:
    """The feed of the query running in this context, if any."""
    return _ACTIVE.get()


@contextmanager
def feeding(feed: ContextFeed) -> Iterator[ContextFeed]:
    """Make `feed` the active one for this context (and every task started inside it)."""
    token = _ACTIVE.set(feed)
    try:
        yield feed
    finally:
        _ACTIVE.reset(token)


@dataclass(frozen=True)
class FeedEvent:
    """What one push did: for observers (LangChain custom events, logs, tests)."""

    op: Literal["append", "update"]
    source: str
    chunk_ids: tuple[str, ...]
    accepted: int
    dropped: int
    prompt_tokens: int
    t: float  # seconds since the feed was created

    def as_dict(self) -> dict:
        return {"op": self.op, "source": self.source, "chunk_ids": list(self.chunk_ids), "accepted": self.accepted,
                "dropped": self.dropped, "prompt_tokens": self.prompt_tokens, "t": round(self.t, 4)}


@dataclass
class _Run:
    source: str
    parent: str | None
    children: int = 0
    done: bool = False
    results: list[Chunk] = field(default_factory=list)


class ContextFeed:
    def __init__(self, session: SessionHandle, mode: Mode = "append", k: int | None = None, rrf_k: int = 60,
                 on_event: Callable[[FeedEvent], Awaitable[None]] | None = None) -> None:
        if mode not in ("append", "update"):
            raise ValueError(f"mode: {mode!r} is not 'append' or 'update'")
        self.session = session
        self.mode: Mode = mode
        self.k = k
        self.rrf_k = rrf_k
        self.events: list[FeedEvent] = []
        self.context: list[Chunk] = []  # what the session holds, as far as its receipts say
        self._on_event = on_event
        self._t0 = time.monotonic()
        self._runs: dict[str, _Run] = {}
        self._leaves: list[str] = []  # leaf runs in the order they ended
        self._seen: set[str] = set()
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._error: BaseException | None = None

    # -- what callbacks report ------------------------------------------------------------
    def started(self, key: str, source: str, parent: str | None = None, infer_parent: bool = False) -> None:
        """A retrieval began. `infer_parent`: the framework does not say; the oldest open one is it."""
        if infer_parent and parent is None:
            parent = next((k for k, run in self._runs.items() if run.parent is None and not run.done), None)
        if parent is not None and parent not in self._runs:
            parent = None  # its parent is not a retrieval (a chain, a query engine)
        self._runs[key] = _Run(source, parent)
        if parent is not None:
            self._runs[parent].children += 1

    def ended(self, key: str, chunks: Sequence[Chunk]) -> None:
        """A retrieval returned `chunks`, best first."""
        run = self._runs.setdefault(key, _Run(key, None))
        run.results, run.done = list(chunks), True
        run.source = run.source or key
        if run.children == 0:
            self._leaves.append(key)
        if self.mode == "append":
            new = [c for c in _unique(chunks) if c.id not in self._seen]
            self._seen.update(c.id for c in new)
            if new:
                self._push("append", new, run.source)
        elif run.children == 0:
            fused = reciprocal_rank_fusion([self._runs[k].results for k in self._leaves], k=self.k or 10**6, rrf_k=self.rrf_k)
            self._push("update", fused, run.source)
        elif run.parent is None:
            self._push("update", list(chunks)[: self.k] if self.k else list(chunks), run.source)

    @property
    def runs(self) -> int:
        """Retrievals reported so far."""
        return len(self._runs)

    def source_of(self, key: str) -> str:
        run = self._runs.get(key)
        return run.source if run is not None else key

    def failed(self, key: str) -> None:
        """A retrieval raised; its siblings go on, it simply contributes nothing."""
        run = self._runs.setdefault(key, _Run(key, None))
        run.results, run.done = [], True

    # -- lifecycle ------------------------------------------------------------------------
    async def close(self) -> None:
        """Wait for every push to reach the session, then tell it retrieval is done."""
        if self._worker is not None:
            self._queue.put_nowait(None)
            await self._worker
        if self._error is not None:
            raise self._error
        await self.session.finish_context()

    async def wait_pushed(self) -> None:
        """Wait until everything reported so far has reached the session."""
        if self._queue is not None:
            await self._queue.join()

    async def discard(self) -> None:
        """Drop what is still queued (the query is over; retrieval was cancelled)."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    # -- pushing --------------------------------------------------------------------------
    def _push(self, op: str, chunks: list[Chunk], source: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a sync retriever on a plain thread: push right here, in order
            receipt = self.session.push_sync(op, chunks)
            self._record(op, chunks, source, receipt)
            return
        if self._worker is None:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._work(), name="streamrag-context-feed")
        self._queue.put_nowait((op, chunks, source))

    async def _work(self) -> None:
        while (item := await self._queue.get()) is not None:
            try:
                if self._error is None:  # else the session refused earlier context; close() says so
                    await self._deliver(*item)
            finally:
                self._queue.task_done()

    async def _deliver(self, op: str, chunks: list[Chunk], source: str) -> None:
        try:
            call = self.session.append if op == "append" else self.session.update
            receipt = await call(chunks)
            event = self._record(op, chunks, source, receipt)
            if self._on_event is not None:
                await self._on_event(event)
        except Exception as error:  # e.g. PromptTooLongError: surfaced by close()
            self._error = error

    def _record(self, op: str, chunks: list[Chunk], source: str, receipt) -> FeedEvent:
        event = FeedEvent(op, source, tuple(c.id for c in chunks), receipt.accepted, receipt.dropped,
                          receipt.prompt_tokens, time.monotonic() - self._t0)
        self.events.append(event)
        if receipt.accepted:
            self.context = self.context + chunks if op == "append" else list(chunks)
        return event


def _unique(chunks: Sequence[Chunk]) -> list[Chunk]:
    seen: set[str] = set()
    return [c for c in chunks if not (c.id in seen or seen.add(c.id))]

