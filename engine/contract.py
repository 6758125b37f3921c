"""The session contract: what every backend offers, whoever runs the model.

Three backends implement it, and the app, the integrations and eval are typed against it:

    engine.local.StreamEngine          vLLM in this process (streaming input, LCP replace)
    engine.remote.VLLMServersEngine    running vLLM OpenAI servers (prefix warming)
    integrations.StreamRAGClient       a streamrag server, over its HTTP API

One conformance suite (tests/test_contract.py) runs the same sequences against all three, so a
keyword added to one backend and not the others fails there.

A session's life, whatever the backend:

    s = await engine.open_session(question, system=None, gate=None, update_mode=None)
    await s.append(chunks)              # after the chunks already there; prefilled at once
    await s.update(chunks)              # the whole new ranking; keeps the common prefix
    await s.append(chunks, last=True)   # last chunks: the context is complete (as finish_context)
    await s.finish_context()            # retrieval is done; the gate opens if still closed
    async for delta in s.generate(Sampling(max_tokens=64)):   # waits for the gate
        ...
    await s.abort()                     # any time; safe twice; frees what the session holds
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from engine.gate import Gate
from engine.prompt import Turn
from engine.types import (
    ChunkLike,
    Completion,
    ContextReceipt,
    Delta,
    GateReason,
    Health,
    Sampling,
    SessionStats,
    State,
)


@runtime_checkable
class Session(Protocol):
    """One question whose context streams in while the model prefills it."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> State: ...

    @property
    def stats(self) -> SessionStats: ...

    @property
    def prompt_token_ids(self) -> list[int]:
        """The prompt decoding starts from: the context so far plus the closing template."""
        ...

    @property
    def gate_is_open(self) -> bool: ...

    async def append(self, chunks: Sequence[ChunkLike], last: bool = False) -> ContextReceipt:
        """Put chunks after the ones already there. After the gate opened they are dropped and
        counted; after the context was closed it is a `ContextClosedError`."""
        ...

    async def update(self, chunks: Sequence[ChunkLike], last: bool = False) -> ContextReceipt:
        """Replace the context with a new ranking (best first)."""
        ...

    async def finish_context(self) -> None:
        """No more context will come; the gate opens if it is still closed."""
        ...

    async def wait_gate(self) -> GateReason | None:
        """Wait until the gate opens; why it opened (None if the session ended first)."""
        ...

    def generate(self, sampling: Sampling | None = None) -> AsyncIterator[Delta]:
        """Wait for the gate, then stream the answer. Once per session; leaving early aborts."""
        ...

    async def abort(self) -> None:
        """End the session now and free what it holds. Safe to call more than once."""
        ...


@runtime_checkable
class Engine(Protocol):
    """Opens sessions and runs one-shot completions on some model. Use as `async with`."""

    @property
    def max_model_len(self) -> int: ...

    @property
    def live_sessions(self) -> int: ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Abort live sessions and release the model (or the connections to it)."""
        ...

    async def open_session(self, question: str, system: str | None = None, gate: Gate | None = None,
                           update_mode: str | None = None, history: Sequence[Turn] = ()) -> Session:
        """A session answering `question`; `history` holds the chat's earlier (role, text) turns."""
        ...

    def complete_stream(self, prompt_token_ids: Sequence[int] | None = None, prompt: str | None = None,
                        sampling: Sampling | None = None) -> AsyncIterator[Delta]:
        """A one-shot completion of a whole prompt (token ids or text), streamed."""
        ...

    async def complete(self, prompt_token_ids: Sequence[int] | None = None, prompt: str | None = None,
                       sampling: Sampling | None = None) -> Completion: ...

    def check_sampling(self, sampling: Sampling) -> None:
        """Raise ConfigError (naming the field) for what this backend can tell now that it
        would refuse in an answer with `sampling`; what only the model's server can judge is
        refused when the answer starts."""
        ...

    def health(self) -> Health:
        """Whether the engine can serve now (a dead engine process says why)."""
        ...

    def kv_blocks_in_use(self) -> int:
        """KV blocks the model side holds for live requests (0 when idle: nothing leaked)."""
        ...

    async def wait_for_blocks(self, expected: int = 0, timeout_s: float = 10.0) -> int:
        """Wait until `kv_blocks_in_use()` is `expected` (frees land a moment after an abort)."""
        ...
