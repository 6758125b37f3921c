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

Why not anyio's `BlockingPortal`: it serves sync callers only, and async callers on another loop
(`ainvoke` from the caller's own loop) need the same bridge in both directions, so one serves both.

Three ways to get a runner:
    EngineRunner.start(EngineConfig(...))   a StreamEngine on a background thread of its own
    EngineRunner.connect("http://host:port") a StreamRAGClient (HTTP) on a background thread
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
from integrations.producer import ERROR, ITEM, Producer

T = TypeVar("T")


class EngineLoopError(StreamRAGError, RuntimeError):
    """A call cannot reach the engine's event loop from where it was made."""


class EngineRunner:
    """Runs calls on the engine's loop. Owns that loop (and the engine) only when it started them."""

    def __init__(self, engine: Any, loop: asyncio.AbstractEventLoop | None = None,
                 thread: threading.Thread | None = None) -> None:
        self.engine = engine
        self._loop = loop  # None for an attached engine until its first call on a running loop
        self._thread = thread  # set only when this runner owns the loop and the engine
        self._ready: concurrent.futures.Future | None = None  # the engine's start(), when ours

    @classmethod
    def start(cls, config: EngineConfig | None = None) -> EngineRunner:
        """Start a StreamEngine on a new background thread; blocks until vLLM is up."""
        return cls._in_thread(StreamEngine(config), "streamrag-engine")

    @classmethod
    def connect(cls, base_url: str, api_key: str | None = None, timeout_s: float = 300.0,
                wait: bool = True) -> EngineRunner:
        """A client of a running streamrag server, on a background thread.

        `wait`: check /health and read the model now (errors surface here). With False the
        check runs in the background and the first call waits for it: for lazy clients built
        inside a running loop, which must not block on a server.
        """
        from integrations.http_client import StreamRAGClient

        engine = StreamRAGClient(base_url, api_key=api_key, timeout_s=timeout_s)
        return cls._in_thread(engine, "streamrag-remote", wait=wait)

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
    def loop_only(cls, name: str = "streamrag-sync") -> EngineRunner:
        """No engine, just a private loop on a thread of its own (see integrations/blocking.py)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_run_forever, args=(loop,), name=name, daemon=True)
        thread.start()
        return cls(None, loop, thread)

    @classmethod
    def _in_thread(cls, engine: Any, name: str, wait: bool = True) -> EngineRunner:
        runner = cls.loop_only(name)
        runner.engine = engine
        loop = runner._loop
        runner._ready = asyncio.run_coroutine_threadsafe(engine.start(), loop)
        if wait:
            try:
                runner._ready.result()
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
            if self._ready is not None and not self._ready.done():
                self._ready.cancel()  # still connecting: give up
            # Not through call_sync: closing must not wait for (or fail with) a start that failed.
            if self.engine is not None:
                asyncio.run_coroutine_threadsafe(_call(self.engine.close), self._loop).result(timeout=60)
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
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_call(fn, self._ready), self._loop))

    def call_sync(self, fn: Callable[[], Awaitable[T]]) -> T:
        """`await fn()` on the engine's loop, blocking this thread until it is done."""
        self._check_reachable(sync=True)
        future = asyncio.run_coroutine_threadsafe(_call(fn, self._ready), self._loop)
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

        producer = Producer(fn, post, self._ready)
        future = asyncio.run_coroutine_threadsafe(producer.run(), self._loop)
        try:
            while (message := await inbox.get())[0] == ITEM:
                yield message[1]
            if message[0] == ERROR:
                raise message[1]
        finally:
            if not future.done():
                self._stop(producer)
                await asyncio.wait([asyncio.wrap_future(future)], timeout=30)

    def stream_sync(self, fn: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """Iterate `fn()` on the engine's loop from a plain thread (blocking between items)."""
        self._check_reachable(sync=True)
        inbox: queue.Queue = queue.Queue()
        producer = Producer(fn, lambda kind, value=None: inbox.put((kind, value)), self._ready)
        future = asyncio.run_coroutine_threadsafe(producer.run(), self._loop)
        try:
            while (message := inbox.get())[0] == ITEM:
                yield message[1]
            if message[0] == ERROR:
                raise message[1]
        finally:
            if not future.done():
                self._stop(producer)
                concurrent.futures.wait([future], timeout=30)

    def _stop(self, producer: Producer) -> None:
        """The consumer left early: stop the producer; waiting on its future then waits for its
        cleanup (the generator closed on the engine's loop, e.g. a session aborted)."""
        try:
            self._loop.call_soon_threadsafe(producer.stop)
        except RuntimeError:  # the engine's loop is gone, and the producer with it
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


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


async def _call(fn: Callable[[], Awaitable[T]], ready: concurrent.futures.Future | None = None) -> T:
    if ready is not None:  # a client still connecting in the background: wait for it first
        await asyncio.wrap_future(ready)
    return await fn()
