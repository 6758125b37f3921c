"""`Producer`: an async generator iterated on one event loop, its items posted to a consumer elsewhere.

`EngineRunner.stream` / `stream_sync` use it to carry a generator that must run on the engine's
loop (a session's `generate()`, a one-shot completion) to a caller on another loop or thread.
Each item is posted as `(ITEM, item)`; the end as `(END, None)` or `(ERROR, exception)`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

ITEM, END, ERROR = "item", "end", "error"


class Producer:
    """Iterates a generator on the engine's loop and posts each item to the consumer.

    Not stopped by cancelling its concurrent future (that would mark it done at once, before
    the generator's cleanup ran) but by `stop()`, called on the engine's loop.
    """

    def __init__(self, fn: Callable[[], AsyncIterator[Any]], post: Callable[..., None],
                 ready: concurrent.futures.Future | None) -> None:
        self._fn, self._post, self._ready = fn, post, ready
        self._task: asyncio.Task | None = None
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        self._task = asyncio.current_task()
        if self._stopped:  # stopped before it started
            return
        try:
            if self._ready is not None:
                await asyncio.wrap_future(self._ready)
            async with aclosing(self._fn()) as items:
                async for item in items:
                    self._post(ITEM, item)
        except asyncio.CancelledError:
            self._post(END)  # the consumer left; it reads nothing more
            return
        except BaseException as error:  # handed to the consumer, raised there
            self._post(ERROR, error)
            return
        self._post(END)
