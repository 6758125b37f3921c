"""`SessionContext`: the model-free half of every session: context, prompt, gate, state, stats.

A session has two halves. This one decides *what* the prompt is and *when* decoding may
start; the other (a backend's session class) decides how the prompt reaches a model and
calls back here. The contract:

    append / update  -> the chunks and `tokens` change, then `on_change()` (the backend
                        sends the difference), then the gate criteria are checked.
                        With `last=True` the context is complete: `on_change` is not called
                        (the last chunks go with the closing template in the answer's own
                        request) and the gate opens with reason "done".
    gate opens       -> `prefilled()` is asked how many leading tokens of `tokens` the model
                        has computed, for the stats; `wait_gate()` returns
    close(state)     -> the session is finished or aborted; True the first time only

`tokens` is [prefix][chunk 1]...[chunk n] as `PromptTemplate` renders it; the closing
template is added only in `prompt_token_ids`. Chunk pieces are tokenized once and kept, so
an update that keeps a chunk at its position re-uses its ids (same tokens, same prefix).
Context arriving after the gate opened is dropped and counted; after the context was closed
(`finish()` or `last=True`) it is an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from engine.errors import ContextClosedError, PromptTooLongError, SessionStateError
from engine.gate import Gate
from engine.prompt import PromptTemplate, RenderedPrompt
from engine.session_stats import StatsRecorder
from engine.types import (
    ChunkLike,
    ContextReceipt,
    GateReason,
    Sampling,
    SessionStats,
    State,
)


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


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
        self.chunks: list[ChunkLike] = []
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
        self._deadline_passed = False  # it found no context: the first chunk opens the gate
        if gate.max_wait_s is not None:
            self._deadline = asyncio.get_running_loop().call_later(gate.max_wait_s, self._on_deadline)

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
    def append(self, chunks: Sequence[ChunkLike], last: bool = False) -> ContextReceipt:
        chunks = list(chunks)
        if (late := self._late("append", chunks, last)) is not None:
            return late
        first = len(self.chunks) + 1
        pieces = [self.template.chunk_ids(c.text, first + i) for i, c in enumerate(chunks)]
        self.check_fits(len(self.tokens) + sum(len(p) for p in pieces))
        self.chunks.extend(chunks)
        self._pieces.extend(pieces)
        self.tokens.extend(t for p in pieces for t in p)
        self.stats.chunks_arrived(len(chunks))
        return self._changed(len(chunks), last)

    def update(self, chunks: Sequence[ChunkLike], last: bool = False) -> ContextReceipt:
        chunks = list(chunks)
        if (late := self._late("update", chunks, last)) is not None:
            return late
        pieces = []
        for position, chunk in enumerate(chunks):
            same = position < len(self.chunks) and self.chunks[position].text == chunk.text
            pieces.append(self._pieces[position] if same else self.template.chunk_ids(chunk.text, position + 1))
        self.check_fits(len(self.prefix) + sum(len(p) for p in pieces))
        self.chunks, self._pieces = chunks, pieces
        self.tokens = self.prefix + [t for p in pieces for t in p]
        top = tuple(c.id for c in chunks[: self.gate.stable_top_k])
        self._stable = self._stable + 1 if top == self._top else 0
        self._top = top
        self.stats.update_arrived(len(chunks))
        return self._changed(len(chunks), last)

    def finish(self) -> None:
        """Retrieval is done; the gate opens if it is still closed."""
        self.check_open("finish_context")
        self.context_done = True
        self.open_gate("done")

    def _changed(self, accepted: int, last: bool) -> ContextReceipt:
        self.context_done = last
        if not last:  # the last chunks go with the closing template, in the answer's request
            self._on_change()
        score = sum(c.score or 0.0 for c in self.chunks)
        if (reason := self.gate.criteria_reason(len(self.chunks), score, self._stable)) is not None:
            self.open_gate(reason)
        if self._deadline_passed and self.gate.deadline_may_open(len(self.chunks)):
            self.open_gate("deadline")
        if last:
            self.open_gate("done")
        return ContextReceipt(accepted, 0, len(self.prompt_token_ids))

    def _late(self, call: str, chunks: list[ChunkLike], last: bool) -> ContextReceipt | None:
        self.check_open(call)
        if not self.gate_is_open:
            return None
        self.stats.dropped_late(len(chunks))
        if last:
            self.context_done = True
        return ContextReceipt(0, len(chunks), len(self.prompt_token_ids))

    # -- gate and state ---------------------------------------------------------------
    def _on_deadline(self) -> None:
        self._deadline = None
        if self.gate.deadline_may_open(len(self.chunks)):
            self.open_gate("deadline")
        else:
            self._deadline_passed = True

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

    def claim_generate(self, sampling: Sampling | None) -> Sampling:
        """The checks `generate()` makes before it may start (once per session); the sampling
        to use, `max_tokens` capped at what the context leaves."""
        if self.generate_claimed:
            raise SessionStateError(f"session {self.id}: generate() was already called once")
        if self.state != "open":
            raise SessionStateError(f"session {self.id} is {self.state}; open a new session")
        self.generate_claimed = True
        return sampling or Sampling()

    def start_generating(self, sampling: Sampling) -> Sampling:
        """Called once the gate is open: the session generates from now on. Returns `sampling`
        with `max_tokens` capped at what `max_model_len` leaves after the final prompt."""
        if self.state != "open":
            raise SessionStateError(f"session {self.id} was {self.state} before the gate opened")
        self.state = "generating"
        return sampling.with_max_tokens(self.max_model_len - len(self.prompt_token_ids))

    def close(self, state: State) -> bool:
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
            raise ContextClosedError(f"session {self.id}: {call}() after the context was closed "
                                     "(finish_context() or last=True)")

    def check_fits(self, num_tokens: int) -> None:
        # The closing template and at least one generated token must still fit.
        total = num_tokens + len(self.closing) + 1
        if total > self.max_model_len:
            raise PromptTooLongError(total, self.max_model_len)
