"""`EngineRunner`: an engine and the event loop it lives on, callable from any thread or loop.

vLLM's `AsyncLLM` and every session's queues, events and tasks belong to the event loop that
created them; touching them from another loop fails or hangs. LangChain and LlamaIndex call
models from anywhere: `invoke()` from a plain thread, `ainvoke()` from the caller's loop,
`batch()` from a thread pool. So an integration never calls the engine directly: it hands the
runner a zero-argument coroutine function (or async-generator function), and the runner runs it
on the engine's loop and carries the result (or each item) back.

      caller (any thread, any loop)                    engine loop (one thread)
    await runner.call(fn)    ──run_coroutine_threadsafe──▶  await fn()   (direct on the same loop)
    runner.call_sync(fn)     ───────── .result() ───────▶  await fn()
    runner.stream(gen_fn)    ◀──call_soon_threadsafe──────  async for item in gen_fn()
    runner.stream_sync(fn)   ◀────── queue.Queue ─────────  async for item in gen_fn()

Leaving a bridged stream early cancels its producer on the engine loop, which closes the
generator there: a session's `generate()` then aborts its vLLM request and frees its blocks.

Three ways to get a runner:
    EngineRunner.start(EngineConfig(...))   a StreamEngine on a background thread of its own
    EngineRunner.connect("http://host:port") a RemoteEngine (HTTP) on a background thread
    EngineRunner.attach(engine)             an engine already started on a loop you run;
                                            sync calls then work only while that loop runs
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from typing import Any, TypeVar

from engine import EngineConfig, StreamEngine, StreamRAGError

T = TypeVar("T")
_ITEM, _END, _ERROR = "item", "end", "error"


class EngineLoopError(StreamRAGError, RuntimeError):
    """A call cannot reach the engine's event loop from where it was made."""


class EngineRunner:
    """Runs calls on the engine's loop. Owns that loop (and the engine) only when it started them."""

    def __init__(self, engine: Any, loop: asyncio.AbstractEventLoop | None = None,
                 thread: threading.Thread | None = None) -> None:
        self.engine = engine
        self._loop = loop  # None for an attached engine until its first call on a running loop
        self._thread = thread  # set only when this runner owns the loop and the engine

    @classmethod
    def start(cls, config: EngineConfig | None = None) -> EngineRunner:
        """Start a StreamEngine on a new background thread; blocks until vLLM is up."""
        return cls._in_thread(StreamEngine(config), "streamrag-engine")

    @classmethod
    def connect(cls, base_url: str, api_key: str | None = None, timeout_s: float = 300.0) -> EngineRunner:
        """A client of a running streamrag server, on a background thread (checks /health)."""
        from integrations.remote import RemoteEngine

        return cls._in_thread(RemoteEngine(base_url, api_key=api_key, timeout_s=timeout_s), "streamrag-remote")

    @classmethod
    def attach(cls, engine: Any, loop: asyncio.AbstractEventLoop | None = None) -> EngineRunner:
        """Wrap an engine already started on `loop`: by default the running loop when attached
        from async code, else the loop of the first async call."""
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        return cls(engine, loop)

    @classmethod
    def _in_thread(cls, engine: Any, name: str) -> EngineRunner:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_run_forever, args=(loop,), name=name, daemon=True)
        thread.start()
        runner = cls(engine, loop, thread)
        try:
            runner.call_sync(engine.start)
        except BaseException:
            runner._stop_loop()
            raise
        return runner

    @property
    def is_remote(self) -> bool:
        return not isinstance(self.engine, StreamEngine)

    @property
    def owns_engine(self) -> bool:
        return self._thread is not None

    def close(self) -> None:
        """Close the engine and stop its thread (a no-op for an attached engine: its owner closes it)."""
        if self._thread is None:
            return
        try:
            self.call_sync(self.engine.close)
        finally:
            self._stop_loop()

    def __enter__(self) -> EngineRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ----------------------------------------------------------------------------
    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """`await fn()` on the engine's loop, awaited from whichever loop calls this."""
        if self._here():
            return await fn()
        self._check_reachable()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_call(fn), self._loop))

    def call_sync(self, fn: Callable[[], Awaitable[T]]) -> T:
        """`await fn()` on the engine's loop, blocking this thread until it is done."""
        self._check_reachable(sync=True)
        future = asyncio.run_coroutine_threadsafe(_call(fn), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def stream(self, fn: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Iterate `fn()` on the engine's loop; items arrive on the caller's loop."""
        if self._here():
            async with aclosing(fn()) as items:
                async for item in items:
                    yield item
            return
        self._check_reachable()
        consumer = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()

        def post(kind: str, value: Any = None) -> None:
            try:
                consumer.call_soon_threadsafe(inbox.put_nowait, (kind, value))
            except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
                pass

        future = asyncio.run_coroutine_threadsafe(_produce(fn, post), self._loop)
        try:
            while (message := await inbox.get())[0] == _ITEM:
                yield message[1]
            if message[0] == _ERROR:
                raise message[1]
        finally:
            await _settle(future)

    def stream_sync(self, fn: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """Iterate `fn()` on the engine's loop from a plain thread (blocking between items)."""
        self._check_reachable(sync=True)
        inbox: queue.Queue = queue.Queue()
        future = asyncio.run_coroutine_threadsafe(_produce(fn, lambda k, v=None: inbox.put((k, v))), self._loop)
        try:
            while (message := inbox.get())[0] == _ITEM:
                yield message[1]
            if message[0] == _ERROR:
                raise message[1]
        finally:
            if not future.done():
                future.cancel()
            try:
                future.result(timeout=30)
            except (concurrent.futures.CancelledError, Exception):
                pass

    # -- where are we ---------------------------------------------------------------------
    def _here(self) -> bool:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._loop is None:
            self._loop = running  # an attached engine: the first async call shows its loop
        return running is self._loop

    def _check_reachable(self, sync: bool = False) -> None:
        if self._loop is None:
            raise EngineLoopError(
                "engine: an attached StreamEngine is reachable only from the loop that started it, "
                "and no call has come from that loop yet; call an async method (ainvoke, achat, "
                "aquery) from it, or build the model with EngineRunner.start(config) instead"
            )
        if self._loop.is_closed() or not self._loop.is_running():
            raise EngineLoopError(
                "engine: its event loop is not running, so this call cannot reach it; use the async "
                "method from the loop that runs the engine, or EngineRunner.start(config), which "
                "keeps the engine on a thread of its own"
            )
        if sync and self._here():
            raise EngineLoopError(
                "a blocking call (invoke, complete, chat, query...) was made on the engine's own "
                "event loop and would deadlock it; use the async twin (ainvoke, acomplete, achat, aquery)"
            )

    def _stop_loop(self) -> None:
        try:  # async generators left suspended get their `finally` run while the loop still runs
            asyncio.run_coroutine_threadsafe(self._loop.shutdown_asyncgens(), self._loop).result(timeout=10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
        self._thread = None


def iterate_blocking(fn: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """Iterate an async generator from sync code, on a private loop in a helper thread.

    For the sync faces of async pipelines (`invoke`, `stream`, `query`): the pipeline's own tasks
    run on the private loop and reach the engine through its runner like any other caller.
    Context variables of the calling thread are carried over, as asyncio does for tasks.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_run_forever, args=(loop,), name="streamrag-sync", daemon=True)
    thread.start()
    private = EngineRunner(None, loop, thread)
    try:
        yield from private.stream_sync(fn)
    finally:
        private._stop_loop()


def call_blocking(fn: Callable[[], Awaitable[T]]) -> T:
    """`await fn()` from sync code, on a private loop in a helper thread (see `iterate_blocking`)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_run_forever, args=(loop,), name="streamrag-sync", daemon=True)
    thread.start()
    private = EngineRunner(None, loop, thread)
    try:
        return private.call_sync(fn)
    finally:
        private._stop_loop()


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


async def _produce(fn: Callable[[], AsyncIterator[Any]], post: Callable[..., None]) -> None:
    try:
        async with aclosing(fn()) as items:
            async for item in items:
                post(_ITEM, item)
    except asyncio.CancelledError:
        post(_END)  # the consumer left; it reads nothing more
        raise
    except BaseException as error:  # handed to the consumer, raised there
        post(_ERROR, error)
        return
    post(_END)


async def _settle(future: concurrent.futures.Future) -> None:
    """Cancel a producer the consumer left early and wait until it has cleaned up."""
    if not future.done():
        future.cancel()
    try:
        await asyncio.wrap_future(future)
    except (asyncio.CancelledError, concurrent.futures.CancelledError, Exception):
        pass
