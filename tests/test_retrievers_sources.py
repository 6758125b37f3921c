"""Concurrent sources: completion order, errors, timeouts and cancellation, with controlled latencies.

Latencies are far apart (0.05 s, 0.4 s, 1.5 s) and bounds generous, so a busy machine (a vLLM
engine may be running beside the tests) cannot reorder them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import pytest

from retrievers.events import Append, Chunk, ContextStream, Done, Error, Update, collect
from retrievers.sources import in_completion_order, stream_sources

FAST, MEDIUM, SLOW = 0.05, 0.4, 1.5


def chunks(*ids: str) -> list[Chunk]:
    return [Chunk(i, f"text of {i}", 1.0, "test") for i in ids]


def after(
    delay: float, result: object = None, *, error: Exception | None = None, log: list[str] | None = None
) -> Callable[[], Awaitable[object]]:
    async def job() -> object:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if log is not None:
                log.append("cancelled")
            raise
        if error is not None:
            raise error
        return result

    return job


async def test_outcomes_arrive_in_completion_order_not_in_declaration_order() -> None:
    jobs = {"slow": after(SLOW, "s"), "fast": after(FAST, "f"), "medium": after(MEDIUM, "m")}
    start = time.monotonic()
    arrivals = [(outcome.name, time.monotonic() - start) async for outcome in in_completion_order(jobs)]
    assert [name for name, _ in arrivals] == ["fast", "medium", "slow"]
    # The slow job cannot finish before SLOW: the first outcome did not wait for it.
    assert arrivals[0][1] < SLOW
    assert arrivals[-1][1] >= SLOW


async def test_a_raising_source_is_an_error_event_and_the_stream_still_ends_with_done() -> None:
    boom = RuntimeError("index offline")
    jobs = {"broken": after(FAST, error=boom), "good": after(MEDIUM, chunks("a", "b"))}
    events = [event async for event in stream_sources(jobs, mode="append")]
    assert events == [Error("broken", boom), Append(tuple(chunks("a", "b"))), Done()]


async def test_a_source_past_its_timeout_is_an_error_and_holds_nobody_back() -> None:
    jobs = {"hangs": after(60.0, chunks("never")), "fast": after(FAST, chunks("a"))}
    start = time.monotonic()
    events = [
        (event, time.monotonic() - start) async for event in stream_sources(jobs, mode="append", timeout=0.5)
    ]
    assert [type(event) for event, _ in events] == [Append, Error, Done]
    error = events[1][0]
    assert isinstance(error, Error) and error.source == "hangs"
    assert isinstance(error.exception, TimeoutError) and "'hangs'" in str(error.exception)
    assert events[-1][1] < 10.0  # the hanging source would take 60 s


async def test_every_source_failing_still_ends_with_done() -> None:
    jobs = {"a": after(FAST, error=ValueError("a")), "b": after(FAST, error=KeyError("b"))}
    kept, errors = await collect(stream_sources(jobs, mode="update", merge=lambda results: []))
    assert kept == () and {error.source for error in errors} == {"a", "b"}


async def test_closing_the_stream_early_cancels_the_sources_still_running() -> None:
    log: list[str] = []
    jobs = {"fast": after(FAST, chunks("a")), "slow": after(SLOW, chunks("b"), log=log)}
    stream = stream_sources(jobs, mode="append")
    first = await anext(stream)
    assert first == Append(tuple(chunks("a")))
    start = time.monotonic()
    await stream.aclose()
    assert log == ["cancelled"] and time.monotonic() - start < SLOW


async def test_append_mode_delivers_a_chunk_id_once() -> None:
    jobs = {
        "first": after(FAST, chunks("a", "b")),
        "second": after(MEDIUM, chunks("b", "c")),
        "third": after(MEDIUM * 2, chunks("a")),
    }
    events = [event async for event in stream_sources(jobs, mode="append")]
    assert events == [Append(tuple(chunks("a", "b"))), Append(tuple(chunks("c"))), Done()]


async def test_update_mode_emits_the_merge_of_every_result_so_far() -> None:
    seen: list[int] = []

    def merge(results: Sequence[Sequence[Chunk]]) -> list[Chunk]:  # the simplest merge: concatenate
        seen.append(len(results))
        return [chunk for result in results for chunk in result]

    jobs = {"slow": after(MEDIUM, chunks("s")), "fast": after(FAST, chunks("f"))}
    events = [event async for event in stream_sources(jobs, mode="update", merge=merge)]
    assert events == [Update(tuple(chunks("f"))), Update(tuple(chunks("f", "s"))), Done()]
    assert seen == [1, 2]


async def test_no_sources_is_just_done() -> None:
    assert [event async for event in stream_sources({}, mode="append")] == [Done()]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"mode": "replace"}, "mode must be"), ({"mode": "update"}, "needs merge=")],
)
async def test_bad_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await anext(stream_sources({"a": after(FAST)}, **kwargs))


async def test_collect_applies_appends_and_updates_like_a_consumer() -> None:
    async def stream() -> ContextStream:
        yield Update(tuple(chunks("x", "y")))
        yield Update(tuple(chunks("y", "x", "z")))
        yield Error("s", RuntimeError())
        yield Done()

    kept, errors = await collect(stream())
    assert [chunk.id for chunk in kept] == ["y", "x", "z"] and len(errors) == 1
