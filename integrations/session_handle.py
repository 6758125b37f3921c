"""`SessionHandle`: one streaming-context session, reachable from any thread or event loop.

It wraps any `engine.Session` (in-process, over vLLM servers, or a streamrag server's) and routes every call through
the `EngineRunner` to the loop the session lives on. The integrations only ever hold handles,
so the same pipeline code runs against an engine in this process or a streamrag server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

from engine import ChunkLike, ContextReceipt, Delta, Sampling, Session, SessionStats
from integrations.runner import EngineRunner


class SessionHandle:
    def __init__(self, session: Session, runner: EngineRunner) -> None:
        self.session = session
        self.runner = runner

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def stats(self) -> SessionStats:
        """In-process: live. Remote: as last reported (after `generate`, or `await refresh()`)."""
        return self.session.stats

    @property
    def prompt_token_ids(self) -> list[int]:
        """The prompt decoding starts (or started) from: context plus the closing template."""
        return list(self.session.prompt_token_ids)

    @property
    def gate_is_open(self) -> bool:
        return self.session.gate_is_open

    # -- context --------------------------------------------------------------------------
    async def append(self, chunks: Iterable[ChunkLike]) -> ContextReceipt:
        chunks = list(chunks)
        return await self.runner.call(lambda: self.session.append(chunks))

    async def update(self, chunks: Iterable[ChunkLike]) -> ContextReceipt:
        chunks = list(chunks)
        return await self.runner.call(lambda: self.session.update(chunks))

    async def finish_context(self) -> None:
        await self.runner.call(self.session.finish_context)

    def push_sync(self, op: str, chunks: Iterable[ChunkLike]) -> ContextReceipt:
        """`append` or `update` from a thread without an event loop (sync retriever callbacks)."""
        chunks = list(chunks)
        return self.runner.call_sync(lambda: getattr(self.session, op)(chunks))

    def finish_context_sync(self) -> None:
        self.runner.call_sync(self.session.finish_context)

    # -- answer ---------------------------------------------------------------------------
    def generate(self, sampling: Sampling | None = None) -> AsyncIterator[Delta]:
        """The answer, once the gate is open."""
        return self.runner.stream(lambda: self.session.generate(sampling))

    def generate_sync(self, sampling: Sampling | None = None) -> Iterator[Delta]:
        return self.runner.stream_sync(lambda: self.session.generate(sampling))

    async def abort(self) -> None:
        await self.runner.call(self.session.abort)

    def abort_sync(self) -> None:
        self.runner.call_sync(self.session.abort)

    async def refresh(self) -> None:
        """Over HTTP: fetch stats and prompt token ids from the server. Elsewhere they are live."""
        if hasattr(self.session, "refresh"):
            await self.runner.call(self.session.refresh)

    async def wait_prefilled(self) -> None:
        """Where the backend can tell: wait until all context delivered so far is prefilled."""
        if hasattr(self.session, "wait_prefilled"):
            await self.runner.call(self.session.wait_prefilled)
