"""`ContextSurface`: the part of the session contract that a `SessionContext` answers alone.

Both backends' sessions (engine/local/session.py, engine/remote/session.py) keep their context in
a `SessionContext` and differ only in how they get it prefilled; this base hands the contract's
context half to `self._ctx`, so the two do not repeat it.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.session_context import SessionContext
from engine.types import ChunkLike, ContextReceipt, GateReason, SessionStats, State


class ContextSurface:
    """The contract's context methods, delegated to the subclass's `_ctx`."""

    _ctx: SessionContext

    @property
    def id(self) -> str:
        return self._ctx.id

    @property
    def state(self) -> State:
        return self._ctx.state

    @property
    def prompt_token_ids(self) -> list[int]:
        return self._ctx.prompt_token_ids

    @property
    def context_token_ids(self) -> list[int]:
        """The prompt without the closing template: what is prefilled before the gate."""
        return list(self._ctx.tokens)

    @property
    def chunks(self) -> tuple[ChunkLike, ...]:
        return tuple(self._ctx.chunks)

    @property
    def gate_is_open(self) -> bool:
        return self._ctx.gate_is_open

    @property
    def opened_at(self) -> float:
        """`time.monotonic()` when the session opened: the origin of the stats' times."""
        return self._ctx.stats.t0

    @property
    def stats(self) -> SessionStats:
        return self._ctx.snapshot()

    async def wait_gate(self) -> GateReason | None:
        return await self._ctx.wait_gate()

    async def append(self, chunks: Sequence[ChunkLike], last: bool = False) -> ContextReceipt:
        """As the contract says; `last=True` also ends the context (as `finish_context()`)."""
        return self._ctx.append(chunks, last)

    async def update(self, chunks: Sequence[ChunkLike], last: bool = False) -> ContextReceipt:
        """As the contract says; rankings that arrive while a piece prefills are coalesced."""
        return self._ctx.update(chunks, last)

    async def finish_context(self) -> None:
        self._ctx.finish()
