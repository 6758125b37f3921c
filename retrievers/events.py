"""The context-stream protocol: what a streaming retriever hands to the engine and the app.

A context stream is an async generator of events for one question:

    Append(chunks)   new chunks go after the ones already delivered (append mode: crawls,
                     concurrent sources, retrievers that each return a result once)
    Update(chunks)   the whole current ranking, replacing what was delivered before (update mode:
                     fusion of several queries, shards that return one by one)
    Error(source, e) one source failed or timed out; the others go on
    Done()           the last event: nothing more will come

A stream uses one mode: Append and Update never mix in one stream, so a consumer never has to
decide whether an Append goes after an Update or before. Error events may come at any point
before Done. Exactly one Done ends every stream, also when every source failed, so a consumer
never waits on a stream that gave up silently. Closing the iterator early (`aclose()`) cancels
whatever the stream still had running.

               Append(a) Append(b) Error(s) Append(c) Done     delivered: a b c
    time ─────────┼─────────┼─────────┼────────┼───────┼──▶
               Update(x y) Update(y x z)         Done          delivered: y x z
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias


@dataclass(frozen=True)
class Chunk:
    """One piece of context.

    `id` is stable: the same text from the same document has the same id in every run and every
    collection, so fusion merges it and a ranking update can tell a kept chunk from a new one.
    `score` is the retriever's own (higher is better) or None when the source does not rank.
    `source` is where the text comes from: a document path, a URL, or the name of the retriever
    when it says nothing more precise. `metadata` is read-only by convention.
    """

    id: str
    text: str
    score: float | None = None
    source: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def with_score(self, score: float | None) -> Chunk:
        """The same chunk re-scored (fusion replaces a similarity by a fused rank score)."""
        return Chunk(self.id, self.text, score, self.source, self.metadata)


@dataclass(frozen=True)
class Append:
    """New chunks, to be placed after every chunk delivered so far, in this order."""

    chunks: tuple[Chunk, ...]
    op: Literal["append"] = "append"


@dataclass(frozen=True)
class Update:
    """The whole current ranking, best first; it replaces every chunk delivered so far.

    `stage` names the step of a staged retriever that produced it ("dense", "hybrid", "rerank");
    empty when the retriever has one kind of ranking."""

    chunks: tuple[Chunk, ...]
    op: Literal["update"] = "update"
    stage: str = ""


@dataclass(frozen=True)
class Error:
    """A source failed (or timed out, with a `TimeoutError`); the stream goes on without it."""

    source: str
    exception: BaseException
    op: Literal["error"] = "error"


@dataclass(frozen=True)
class Done:
    """The end of the stream."""

    op: Literal["done"] = "done"


ContextEvent: TypeAlias = Append | Update | Error | Done
# An async generator rather than any async iterator: `aclose()` is how a consumer stops the work.
ContextStream: TypeAlias = AsyncGenerator[ContextEvent, None]
Mode: TypeAlias = Literal["append", "update"]


class StreamingRetriever(Protocol):
    """Anything that turns a question into a context stream."""

    def stream(self, question: str) -> ContextStream: ...


async def collect(stream: ContextStream) -> tuple[tuple[Chunk, ...], tuple[Error, ...]]:
    """Drain a stream into what a consumer would hold at Done: the final chunks and the errors.

    A reference consumer of the protocol (and a convenience for tests and batch callers).
    """
    chunks: tuple[Chunk, ...] = ()
    errors: list[Error] = []
    async for event in stream:
        if isinstance(event, Append):
            chunks = chunks + event.chunks
        elif isinstance(event, Update):
            chunks = event.chunks
        elif isinstance(event, Error):
            errors.append(event)
        else:
            break
    return chunks, tuple(errors)
