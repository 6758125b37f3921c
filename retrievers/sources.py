"""Sources: named async jobs that each return chunks, run concurrently and streamed as they finish.

Every streaming retriever here is this loop with a different set of jobs (one per query and
collection, per shard, per URL, per framework retriever) and a different way to combine results:

    jobs ──start all──▶ [a 0.05 s] [b 0.4 s] [c raises] [d 1.5 s]
                              │         │         │          │
    events (completion order) Append(a) Append(b) Error(c)   Append(d)  Done

A job never holds back another: the stream yields each outcome the moment it completes, a job that
raises becomes an `Error` event, and a job that exceeds its timeout is cancelled and becomes an
`Error` carrying a `TimeoutError`. Closing the stream cancels every job still running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from retrievers.events import Append, Chunk, ContextStream, Done, Error, Mode, Update

T = TypeVar("T")

Job: TypeAlias = Callable[[], Awaitable[T]]
Merge: TypeAlias = Callable[[Sequence[Sequence[Chunk]]], Sequence[Chunk]]


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """How one job ended: `value` when it returned, `error` when it raised or timed out."""

    name: str
    value: T | None
    error: BaseException | None
    seconds: float


async def in_completion_order(
    jobs: Mapping[str, Job[T]], *, timeout: float | None = None
) -> AsyncGenerator[Outcome[T], None]:
    """Start every job at once and yield their outcomes in the order they finish.

    `timeout` (seconds, per job, counted from the common start) bounds each job alone.
    """
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
    start = time.monotonic()
    pending = {asyncio.ensure_future(_outcome(name, job, timeout, start)) for name, job in jobs.items()}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            # Several jobs can finish in the same loop iteration; keep their completion order.
            for task in sorted(done, key=lambda t: t.result().seconds):
                yield task.result()
    finally:
        # Reached when the consumer stops early (aclose, break, cancellation): no job outlives
        # the stream that started it.
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def stream_sources(
    jobs: Mapping[str, Job[Sequence[Chunk]]],
    *,
    mode: Mode,
    merge: Merge | None = None,
    timeout: float | None = None,
) -> ContextStream:
    """Run chunk-returning jobs concurrently as a context stream.

    In append mode each result is appended as its job finishes; a chunk id already delivered is
    not delivered twice (it would only cost prefill). In update mode every finished job triggers
    an `Update` with `merge(all results so far)`: the ranking of everything known at that moment.
    """
    if mode not in ("append", "update"):
        raise ValueError(f"mode must be 'append' or 'update', got {mode!r}")
    if mode == "update" and merge is None:
        raise ValueError("mode='update' needs merge=, the function that ranks the results so far")
    seen: set[str] = set()
    results: list[Sequence[Chunk]] = []
    # aclosing: when our consumer stops early, the jobs are cancelled now, not at garbage collection.
    async with aclosing(in_completion_order(jobs, timeout=timeout)) as outcomes:
        async for outcome in outcomes:
            if outcome.error is not None:
                yield Error(outcome.name, outcome.error)
                continue
            chunks = tuple(outcome.value or ())
            if mode == "update":
                assert merge is not None
                results.append(chunks)
                yield Update(tuple(merge(results)))
                continue
            fresh = tuple(chunk for chunk in chunks if chunk.id not in seen)
            seen.update(chunk.id for chunk in fresh)
            if fresh:
                yield Append(fresh)
    yield Done()


async def _outcome(name: str, job: Job[T], timeout: float | None, start: float) -> Outcome[T]:
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            value = await job()
    except TimeoutError as exc:
        error: BaseException = exc
        if deadline.expired():  # ours, not one the job raised itself: say whose and which
            error = TimeoutError(f"source {name!r} did not finish within its timeout of {timeout} s")
        return Outcome(name, None, error, time.monotonic() - start)
    except Exception as exc:  # any failure of one source is that source's event, not the stream's
        return Outcome(name, None, exc, time.monotonic() - start)
    return Outcome(name, value, None, time.monotonic() - start)
