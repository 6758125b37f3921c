"""Sync faces of async pipelines: run them on a private event loop in a helper thread.

`invoke()`, `stream()` and `query()` are sync, but the pipelines behind them (retrievers running
concurrently, a streaming session) are async. They run on a fresh loop of their own, so they work
whether or not the calling thread has a loop; the engine keeps its own loop and is reached
through its `EngineRunner` like from anywhere else. Context variables of the calling thread are
carried over, as asyncio does for tasks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

from integrations.runner import EngineRunner

T = TypeVar("T")


def iterate_blocking(fn: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """Iterate the async generator `fn()` from sync code."""
    private = EngineRunner.loop_only()
    try:
        yield from private.stream_sync(fn)
    finally:
        private.close()


def call_blocking(fn: Callable[[], Awaitable[T]]) -> T:
    """`await fn()` from sync code."""
    private = EngineRunner.loop_only()
    try:
        return private.call_sync(fn)
    finally:
        private.close()
