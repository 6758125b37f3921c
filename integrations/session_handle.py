"""`SessionHandle`: one streaming-context session, reachable from any thread or event loop.

It wraps an in-process `StreamSession` or a `RemoteSession` (HTTP) and routes every call through
the `EngineRunner` to the loop the session lives on. The integrations only ever hold handles,
so the same pipeline code runs against an engine in this process or a streamrag server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from engine import Chunk, ContextReceipt, Delta, SessionStats
from integrations.runner import EngineRunner


class SessionHandle:
    def __init__(self, session: Any, runner: EngineRunner) -> None:
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
        if self.runner.is_remote:
            return self.session.stats.gate_reason is not None
        return self.session.gate_is_open

    # -- context --------------------------------------------------------------------------
    async def append(self, chunks: Iterable[Chunk]) -> ContextReceipt:
        chunks = list(chunks)
        return await self.runner.call(lambda: self.session.append(chunks))

    async def update(self, chunks: Iterable[Chunk]) -> ContextReceipt:
        chunks = list(chunks)
        return await self.runner.call(lambda: self.session.update(chunks))

    async def finish_context(self) -> None:
        await self.runner.call(self.session.finish_context)

    def push_sync(self, op: str, chunks: Iterable[Chunk]) -> ContextReceipt:
        """`append` or `update` from a thread without an event loop (sync retriever callbacks)."""
        chunks = list(chunks)
        return self.runner.call_sync(lambda: getattr(self.session, op)(chunks))

    def finish_context_sync(self) -> None:
        self.runner.call_sync(self.session.finish_context)

    # -- answer ---------------------------------------------------------------------------
    def generate(self, **sampling: Any) -> AsyncIterator[Delta]:
        """The answer, once the gate is open; `sampling`: max_tokens, temperature, top_p, seed."""
        return self.runner.stream(lambda: self.session.generate(**sampling))

    def generate_sync(self, **sampling: Any) -> Iterator[Delta]:
        return self.runner.stream_sync(lambda: self.session.generate(**sampling))

    async def abort(self) -> None:
        await self.runner.call(self.session.abort)

    def abort_sync(self) -> None:
        self.runner.call_sync(self.session.abort)

    async def refresh(self) -> None:
        """Remote: fetch stats and prompt token ids from the server. In-process: nothing to do."""
        if self.runner.is_remote:
            await self.runner.call(self.session.refresh)

    async def wait_prefilled(self) -> None:
        """In-process only: wait until vLLM has prefilled all context delivered so far."""
        if not self.runner.is_remote:
            await self.runner.call(self.session.wait_prefilled)
