"""`SessionContext`: the transport-free half of a session: context, prompt, gate, state, stats.

A session has two halves. This one decides *what* the prompt is and *when* decoding may
start; the other (a backend's session class) decides how the prompt reaches a model and
calls back here. The contract:

    append / update  -> the chunks and `tokens` change, then `on_change()` (the backend
                        sends the difference), then the gate criteria are checked
    gate opens       -> `prefilled()` is asked how many leading tokens of `tokens` the model
                        has computed, for the stats; `wait_gate()` returns
    close(state)     -> the session is finished or aborted; `on_close(owner)` runs once

`tokens` is [prefix][chunk 1]...[chunk n] as `PromptTemplate` renders it; the closing
template is added only in `prompt_token_ids`. Chunk pieces are tokenized once and kept, so
an update that keeps a chunk at its position re-uses its ids (same tokens, same prefix).
Context arriving after the gate opened is dropped and counted; after `finish()` it is an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from engine.errors import ContextClosedError, PromptTooLongError, SessionStateError
from engine.gate import Gate
from engine.prompt import PromptTemplate, RenderedPrompt
from engine.session_stats import StatsRecorder
from engine.types import Chunk, ContextReceipt, GateReason, SessionStats

State = Literal["open", "generating", "finished", "aborted"]


class SessionContext:
    def __init__(self, session_id: str, template: PromptTemplate, rendered: RenderedPrompt, gate: Gate,
                 max_model_len: int, on_change: Callable[[], None], prefilled: Callable[[], int]) -> None:
        self.id = session_id
        self.gate = gate
        self.template = template
        self.max_model_len = max_model_len
        self.stats = StatsRecorder()
        self.state: State = "open"
        self.prefix = list(rendered.prefix_ids)
        self.closing = list(rendered.closing_ids)
        self.tokens: list[int] = list(self.prefix)
        self.chunks: list[Chunk] = []
        self._pieces: list[list[int]] = []
        self._on_change = on_change
        self._prefilled = prefilled
        self._top: tuple[str | None, ...] | None = None
        self._stable = 0  # consecutive updates whose top-k ids did not change
        self.context_done = False
        self.generate_claimed = False
        self.gate_opened = asyncio.Event()
        self.check_fits(len(self.tokens))
        self._deadline = None
        if gate.max_wait_s is not None:
            self._deadline = asyncio.get_running_loop().call_later(gate.max_wait_s, self.open_gate, "deadline")

    @property
    def prompt_token_ids(self) -> list[int]:
        return self.tokens + self.closing

    @property
    def gate_is_open(self) -> bool:
        return self.gate_opened.is_set()

    @property
    def closed(self) -> bool:
        return self.state in ("finished", "aborted")

    def snapshot(self) -> SessionStats:
        return self.stats.snapshot(len(self.prompt_token_ids), len(self.chunks), self.gate_is_open)

    # -- context ----------------------------------------------------------------------
    def append(self, chunks: list[Chunk]) -> ContextReceipt:
        if (late := self._late("append", chunks)) is not None:
            return late
        first = len(self.chunks) + 1
        pieces = [self.template.chunk_ids(c.text, first + i) for i, c in enumerate(chunks)]
        self.check_fits(len(self.tokens) + sum(len(p) for p in pieces))
        self.chunks.extend(chunks)
        self._pieces.extend(pieces)
        self.tokens.extend(t for p in pieces for t in p)
        self.stats.chunks_arrived(len(chunks))
        return self._changed(len(chunks))

    def update(self, chunks: list[Chunk]) -> ContextReceipt:
        if (late := self._late("update", chunks)) is not None:
            return late
        pieces = []
        for position, chunk in enumerate(chunks):
            same = position < len(self.chunks) and self.chunks[position].text == chunk.text
            pieces.append(self._pieces[position] if same else self.template.chunk_ids(chunk.text, position + 1))
        self.check_fits(len(self.prefix) + sum(len(p) for p in pieces))
        self.chunks, self._pieces = list(chunks), pieces
        self.tokens = self.prefix + [t for p in pieces for t in p]
        top = tuple(c.id for c in chunks[: self.gate.stable_top_k])
        self._stable = self._stable + 1 if top == self._top else 0
        self._top = top
        self.stats.update_arrived(len(chunks))
        return self._changed(len(chunks))

    def finish(self) -> None:
        """Retrieval is done; the gate opens if it is still closed."""
        self.check_open("finish_context")
        self.context_done = True
        self.open_gate("done")

    def _changed(self, accepted: int) -> ContextReceipt:
        self._on_change()
        score = sum(c.score or 0.0 for c in self.chunks)
        if (reason := self.gate.criteria_reason(len(self.chunks), score, self._stable)) is not None:
            self.open_gate(reason)
        return ContextReceipt(accepted, 0, len(self.prompt_token_ids))

    def _late(self, call: str, chunks: list[Chunk]) -> ContextReceipt | None:
        self.check_open(call)
        if not self.gate_is_open:
            return None
        self.stats.dropped_late(len(chunks))
        return ContextReceipt(0, len(chunks), len(self.prompt_token_ids))

    # -- gate and state ---------------------------------------------------------------
    def open_gate(self, reason: GateReason) -> None:
        if self.gate_is_open or self.closed:
            return
        self.stats.gate_opened(reason, prefilled=self._prefilled())
        if self._deadline is not None:
            self._deadline.cancel()
        self.gate_opened.set()

    async def wait_gate(self) -> GateReason | None:
        await self.gate_opened.wait()
        return self.stats.gate_reason

    def claim_generate(self, max_tokens: int) -> None:
        """The checks `generate()` makes before it may start; it may start once per session."""
        check_generate(self.id, self.state, self.generate_claimed, max_tokens)
        self.generate_claimed = True

    def close(self, state: Literal["finished", "aborted"]) -> bool:
        """End the session; True the first time (the caller then releases what it holds)."""
        if self.closed:
            return False
        self.state = state
        if self._deadline is not None:
            self._deadline.cancel()
        self.gate_opened.set()  # nobody waits forever on a gate that can no longer open
        return True

    def check_open(self, call: str) -> None:
        if self.closed:
            raise SessionStateError(f"session {self.id} is {self.state}; {call}() needs an open session")
        if self.context_done:
            raise ContextClosedError(f"session {self.id}: {call}() after finish_context(); context is closed")

    def check_fits(self, num_tokens: int) -> None:
        # The closing template and at least one generated token must still fit.
        total = num_tokens + len(self.closing) + 1
        if total > self.max_model_len:
            raise PromptTooLongError(total, self.max_model_len)


def check_generate(session_id: str, state: str, already_called: bool, max_tokens: int) -> None:
    """Raise unless a session in `state` may start `generate()` (once per session)."""
    if already_called:
        raise SessionStateError(f"session {session_id}: generate() was already called once")
    if state != "open":
        raise SessionStateError(f"session {session_id} is {state}; open a new session")
    if max_tokens < 1:
        raise ValueError(f"max_tokens: {max_tokens} must be >= 1")
