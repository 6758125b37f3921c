"""Runs: one generation as a stream of events, whatever route asked for it.

A run yields, in this order on the wire:

    ContextInfo*   each context event the session took (or dropped), as retrieval delivers
    GateInfo       the gate opened (why, and when)                  -- session runs only
    TokenInfo*     generated tokens
    Finish         usage, and the TTFT breakdown in `streamrag`

For a session run two tasks feed one queue: `feed` moves retrieval events into the session,
`decode` waits for the gate and then for tokens. A context event is queued right after the
session took it (no await in between), and the gate can only open inside those calls, so a
client always sees the context that opened the gate before the gate, and the gate before the
first token. Leaving the run early (client gone, error) cancels both tasks and aborts the
session: its KV blocks are freed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from engine import Delta, Engine, Sampling, Session
from retrievers import Append, ContextStream, Done, Error, Update


@dataclass(frozen=True)
class ContextInfo:
    op: str
    chunk_ids: tuple[str | None, ...] = ()
    scores: tuple[float | None, ...] = ()
    prompt_tokens: int = 0
    dropped: int = 0
    error: str | None = None
    texts: tuple[str, ...] = ()  # what the client shows (and what an evaluation checks)
    sources: tuple[str, ...] = ()
    titles: tuple[str | None, ...] = ()  # the document's title and section, for people
    stage: str = ""  # which stage of a staged retriever ranked these ("dense", "hybrid", "rerank")


@dataclass(frozen=True)
class GateInfo:
    reason: str | None
    elapsed_ms: float
    warning: str | None = None  # the answer may miss context: it opened at the deadline


@dataclass(frozen=True)
class TokenInfo:
    delta: Delta


@dataclass(frozen=True)
class Finish:
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    streamrag: dict = field(default_factory=dict)


RunEvent = ContextInfo | GateInfo | TokenInfo | Finish


def _title(chunk) -> str | None:
    title, section = chunk.metadata.get("title"), chunk.metadata.get("section")
    if title and section and section != title:
        return f"{title} > {section}"
    return title or section


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


async def session_run(
    session: Session, sampling: Sampling, t_request: float,
    context: ContextStream | None = None, op: str = "update",
) -> AsyncIterator[RunEvent]:
    """Generate from `session`, first feeding it `context` (if given) in mode `op`."""
    t_opened = getattr(session, "opened_at", t_request)  # stats' times count from the session's opening
    queue: asyncio.Queue = asyncio.Queue()
    tokens = [0, None]  # completion tokens, finish reason

    async def feed() -> None:
        async for event in context:
            if isinstance(event, (Append, Update)):
                chunks = event.chunks
                push = session.append if isinstance(event, Append) else session.update
                receipt = await push(chunks)
                queue.put_nowait(ContextInfo(
                    event.op, tuple(c.id for c in chunks), tuple(c.score for c in chunks),
                    receipt.prompt_tokens, receipt.dropped, texts=tuple(c.text for c in chunks),
                    sources=tuple(c.source for c in chunks), titles=tuple(_title(c) for c in chunks),
                    stage=getattr(event, "stage", ""),
                ))
            elif isinstance(event, Error):
                queue.put_nowait(ContextInfo("error", error=f"{event.source}: {event.exception!r}"))
            elif isinstance(event, Done):
                break
        if session.state == "open":
            await session.finish_context()

    async def decode() -> None:
        reason = await session.wait_gate()
        if reason is not None:  # None: the session ended first; generate() says why
            warning = None
            if reason == "deadline":
                warning = (f"the gate opened at its deadline (max_wait_s) with {session.stats.chunks} chunks; "
                           "context that arrives later is not used")
            queue.put_nowait(GateInfo(reason, _ms(time.monotonic() - t_request), warning))
        async for delta in session.generate(sampling):
            tokens[0] += len(delta.token_ids)
            tokens[1] = delta.finish_reason or tokens[1]
            queue.put_nowait(TokenInfo(delta))
        queue.put_nowait(None)

    tasks = [asyncio.create_task(decode())]
    if context is not None:
        tasks.append(asyncio.create_task(feed()))
    for task in tasks:  # an exception in either task ends the run with that exception
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None or queue.put_nowait(t.exception()))
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
        yield Finish(len(session.prompt_token_ids), tokens[0], tokens[1], session_breakdown(session, t_request, t_opened))
    finally:
        for task in tasks:
            task.cancel()
        # abort() first: its synchronous part ends the session even if we are being cancelled.
        await session.abort()  # no-op when finished
        await asyncio.gather(*tasks, return_exceptions=True)


def session_breakdown(session: Session, t_request: float, t_opened: float) -> dict:
    """The `usage.streamrag` object: the session's stats (`SessionStats.to_dict()`, the one
    stats shape) plus where the time to first token went, in ms from the request."""
    s = session.stats
    since_request = t_opened - t_request
    late = s.chunks_dropped_late
    return {
        **s.to_dict(),
        "warning": f"{late} chunks arrived after the gate opened and were not used" if late else None,
        "session_id": session.id,
        "retrieval_wait_ms": _ms(None if s.t_gate is None else s.t_gate + since_request),
        "ttft_from_gate_ms": _ms(s.ttft_from_gate_s),
        "ttft_from_request_ms": _ms(None if s.t_first_token is None else s.t_first_token + since_request),
    }


async def completion_run(
    engine: Engine, prompt_ids: list[int], sampling: Sampling, t_request: float
) -> AsyncIterator[RunEvent]:
    """A plain completion of a whole prompt (no session, no gate)."""
    count, finish, first = 0, None, None
    async for delta in engine.complete_stream(prompt_token_ids=prompt_ids, sampling=sampling):
        if first is None and delta.token_ids:
            first = time.monotonic() - t_request
        count += len(delta.token_ids)
        finish = delta.finish_reason or finish
        yield TokenInfo(delta)
    yield Finish(len(prompt_ids), count, finish, {"ttft_from_request_ms": _ms(first)})
