"""`StreamSession`: one question whose context streams in while vLLM prefills it.

A session is one vLLM streaming-input request. The prompt it asks for (`_tokens`) is

    [ prefix ][ chunk 1 ][ chunk 2 ] ... [ chunk n ]   (+ closing template at the gate)

and vLLM holds `_vllm_tokens`, what was handed to it so far. At most one piece is in flight:
vLLM prefills it and samples one token, which it throws away when the next piece comes (that
token's output is our "ack"). Whatever arrives meanwhile just changes `_tokens`; when the
ack comes, `_pump` sends the difference in one piece, so a burst of appends costs one step
and a burst of updates applies only the newest ranking.

The difference is sent one of two ways:
  - `_tokens` extends `_vllm_tokens`: the new tail is appended (vLLM's own streaming input);
  - they diverge at token `lcp`: update mode "lcp" sends the new tokens from `lcp` on with a
    replace marker, and streamrag's scheduler cuts the request back to the block boundary
    at or below `lcp` (engine/vllm_scheduler.py); update mode "reopen" (the baseline) ends
    the vLLM request and opens a new one with the whole prompt, leaving reuse to vLLM's
    prefix cache.
When the gate opens and `generate()` has the sampling parameters, the difference plus the
closing template goes out as the last piece, and its sampled tokens are the answer.

Who frees the KV blocks: vLLM does, when the request finishes or is aborted. Every exit
path here (finished, `abort()`, a cancelled or abandoned `generate()`, engine close) ends
with the current `_consumer` done, which means its vLLM request finished or was aborted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Literal

from vllm.engine.protocol import StreamingInput
from vllm.inputs import TokensPrompt
from vllm.sampling_params import RequestOutputKind, SamplingParams

from engine.detokenizer import IncrementalDetokenizer
from engine.errors import ContextClosedError, PromptTooLongError, SessionStateError
from engine.gate import Gate
from engine.prompt import PromptTemplate, RenderedPrompt
from engine.session_context import check_generate
from engine.session_stats import StatsRecorder
from engine.types import Chunk, ContextReceipt, Delta, GateReason, SessionStats
from engine.vllm_scheduler import final_marker, replace_marker

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM

State = Literal["open", "generating", "finished", "aborted"]
_END = object()  # end of the answer stream in `_answers`


def _prefill_params(extra_args: dict | None = None) -> SamplingParams:
    # Intermediate pieces only need their KV computed; the one sampled token is discarded.
    return SamplingParams(max_tokens=1, temperature=0.0, detokenize=False,
                          output_kind=RequestOutputKind.DELTA, extra_args=extra_args)


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class StreamSession:
    """Created by `StreamEngine.open_session`; see the module docstring for the protocol."""

    def __init__(
        self,
        llm: AsyncLLM,
        template: PromptTemplate,
        rendered: RenderedPrompt,
        session_id: str,
        gate: Gate,
        max_model_len: int,
        block_size: int,
        update_mode: Literal["lcp", "reopen"],
        on_close: Callable[[StreamSession], None],
        max_piece_tokens: int | None = None,
    ) -> None:
        self.id = session_id
        self.gate = gate
        self._llm = llm
        self._template = template
        self._prefix = list(rendered.prefix_ids)
        self._closing = list(rendered.closing_ids)
        self._max_model_len = max_model_len
        self._block_size = block_size
        self._update_mode = update_mode
        self._max_piece = max_piece_tokens
        self._on_close = on_close
        self._stats = StatsRecorder()

        self._chunks: list[Chunk] = []
        self._pieces: list[list[int]] = []  # token ids of each chunk at its position
        self._tokens: list[int] = list(self._prefix)  # the prompt asked for, without closing
        self._vllm_tokens: list[int] = []  # what the current vLLM request was given
        self._computed = 0  # leading tokens of _vllm_tokens vLLM has prefilled
        self._inflight = False
        self._final_params: SamplingParams | None = None
        self._final_sent = False
        self._requests = 0  # vLLM requests opened (more than one only in "reopen" mode)
        self._last_top: tuple[str | None, ...] | None = None
        self._stable_count = 0

        self.state: State = "open"
        self._context_done = False
        self._generate_called = False
        self._failure: Exception | None = None
        self._gate_opened = asyncio.Event()
        self._progress = asyncio.Event()  # set on every ack and on failure
        self._check_fits(len(self._tokens))
        self._answers: asyncio.Queue = asyncio.Queue()
        self._feed: asyncio.Queue[StreamingInput | None] = asyncio.Queue()
        self._consumer = self._start_request(self._feed)
        self._reopening: asyncio.Task | None = None
        self._deadline = None
        if gate.max_wait_s is not None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(gate.max_wait_s, self._open_gate, "deadline")
        self._pump()

    # -- public surface -------------------------------------------------------------------
    @property
    def prompt_token_ids(self) -> list[int]:
        """The prompt decoding starts from: the current context plus the closing template."""
        return self._tokens + self._closing

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        return tuple(self._chunks)

    @property
    def gate_is_open(self) -> bool:
        return self._gate_opened.is_set()

    @property
    def opened_at(self) -> float:
        """`time.monotonic()` when the session opened: the origin of the stats' times."""
        return self._stats.t0

    async def wait_gate(self) -> GateReason | None:
        """Wait until the gate opens; return why (None if the session ended first)."""
        await self._gate_opened.wait()
        return self._stats.gate_reason

    @property
    def stats(self) -> SessionStats:
        return self._stats.snapshot(len(self.prompt_token_ids), len(self._chunks), self.gate_is_open)

    async def append(self, chunks: list[Chunk], last: bool = False) -> ContextReceipt:
        """Put chunks after the ones already there; they start prefilling at once.

        After the gate opened (deadline or criteria) chunks are dropped and counted, not
        an error: retrieval may legitimately still be running. After `finish_context()`
        it is an error: the caller said there would be no more.

        `last=True` folds `finish_context()` in. These chunks then wait for `generate()` and
        go to vLLM with the closing template in the answer's own request: one prefill step
        on the TTFT path instead of two, ranked by a policy with the complete contexts. Call
        `generate()` right after (or have it waiting at the gate).
        """
        chunks = list(chunks)
        if (dropped := self._drop_if_late("append", chunks)) is not None:
            return await self._finish_if(last, dropped)
        start = len(self._chunks)
        pieces = [self._template.chunk_ids(c.text, start + i + 1) for i, c in enumerate(chunks)]
        self._check_fits(len(self._tokens) + sum(map(len, pieces)))
        self._chunks += chunks
        self._pieces += pieces
        for piece in pieces:
            self._tokens += piece
        self._stats.chunks_arrived(len(chunks))
        self._context_done = last
        if not last:  # the last chunks go with the closing template, see `append`
            self._pump()
        self._check_criteria()
        return await self._finish_if(last, ContextReceipt(len(chunks), 0, len(self.prompt_token_ids)))

    async def update(self, chunks: list[Chunk], last: bool = False) -> ContextReceipt:
        """Replace the context with a new ranking (the whole current list, best first).

        The prompt is re-rendered; vLLM keeps the KV of the longest common prefix (to the
        block) and prefills only the rest. Updates that arrive while a piece is prefilling
        are coalesced: only the newest is sent. `last=True`: as for `append`.
        """
        chunks = list(chunks)
        if (dropped := self._drop_if_late("update", chunks)) is not None:
            return await self._finish_if(last, dropped)
        pieces = [
            old if i < len(self._chunks) and self._chunks[i].text == c.text
            else self._template.chunk_ids(c.text, i + 1)
            for i, (c, old) in enumerate(zip(chunks, self._pieces + [None] * len(chunks)))
        ]
        self._check_fits(len(self._prefix) + sum(map(len, pieces)))
        self._chunks, self._pieces = chunks, pieces
        self._tokens = self._prefix + [t for piece in pieces for t in piece]
        top = tuple(c.id for c in chunks[: self.gate.stable_top_k])
        self._stable_count = self._stable_count + 1 if top == self._last_top else 0
        self._last_top = top
        self._stats.update_arrived(len(chunks))
        self._context_done = last
        if not last:
            self._pump()
        self._check_criteria()
        return await self._finish_if(last, ContextReceipt(len(chunks), 0, len(self.prompt_token_ids)))

    async def finish_context(self) -> None:
        """Retrieval is done: no more context will come; the gate opens if still closed."""
        self._check_open("finish_context")
        self._context_done = True
        self._open_gate("done")

    async def _finish_if(self, last: bool, receipt: ContextReceipt) -> ContextReceipt:
        if last:
            self._context_done = True
            self._open_gate("done")
        return receipt

    async def wait_prefilled(self) -> None:
        """Wait until vLLM has prefilled the whole current context (tests, benchmarks)."""
        while self.state in ("open", "generating") and self._failure is None and not self._settled():
            self._progress.clear()
            await self._progress.wait()
        self._raise_if_failed()

    async def generate(
        self,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        ignore_eos: bool = False,
    ) -> AsyncIterator[Delta]:
        """Wait for the gate, then stream the answer. Leaving early aborts the session.

        Use `contextlib.aclosing(session.generate(...))` to abort at once on an early exit;
        otherwise the event loop's async-generator finalizer does it a moment later.
        """
        check_generate(self.id, self.state, self._generate_called, max_tokens)
        self._generate_called = True
        detok = IncrementalDetokenizer(self._template.decode)
        try:
            await self._gate_opened.wait()
            self._raise_if_failed()
            if self.state != "open":  # aborted while waiting at the gate
                raise SessionStateError(f"session {self.id} was {self.state} before the gate opened")
            self.state = "generating"
            budget = self._max_model_len - len(self.prompt_token_ids)
            self._final_params = SamplingParams(
                max_tokens=min(max_tokens, budget), temperature=temperature, top_p=top_p,
                seed=seed, ignore_eos=ignore_eos, detokenize=False,
                output_kind=RequestOutputKind.DELTA, extra_args=final_marker(),
            )
            self._pump()
            while (item := await self._answers.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                out = item.outputs[0]
                ids = tuple(out.token_ids)
                if ids:
                    self._stats.tokens_generated(len(ids))
                text = detok.push(ids)
                if out.finish_reason is not None:
                    text += detok.flush()
                if ids or out.finish_reason is not None:
                    yield Delta(text=text, token_ids=ids, finish_reason=out.finish_reason)
            self.state = "finished"
            self._close()
        finally:
            if self.state != "finished":
                await self.abort()

    async def abort(self) -> None:
        """End the session now; vLLM frees its KV blocks. Safe to call more than once.

        Everything that must happen is done before the first await, so a caller whose own
        cancellation interrupts the wait (a dropped HTTP stream) still ends the session.
        """
        if self.state in ("finished", "aborted"):
            return
        self.state = "aborted"
        self._gate_opened.set()
        self._close()
        tasks = [t for t in (self._reopening, self._consumer) if t is not None]
        for task in tasks:
            task.cancel()  # vLLM's generate() aborts its request when cancelled
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- sending pieces -------------------------------------------------------------------
    def _pump(self) -> None:
        """Send vLLM the difference between `_tokens` and what it has, if nothing is in flight."""
        if self._inflight or self._final_sent or self.state in ("finished", "aborted"):
            return
        final = self._final_params is not None
        target = self.prompt_token_ids if final else self._tokens
        lcp = common_prefix_len(self._vllm_tokens, target)
        if lcp == len(self._vllm_tokens) and lcp < len(target):  # a plain append
            end = self._piece_end(lcp, len(target), final)
            self._send(target[lcp:end], self._final_params or self._piece_params(), final)
            self._vllm_tokens = target[:end]
            return
        if lcp == len(self._vllm_tokens) == len(target) and not final:
            return  # vLLM has exactly this already
        keep = min(lcp, len(target) - 1)  # vLLM must compute at least one token to sample
        if self._update_mode == "reopen":
            self._inflight = True
            self._reopening = asyncio.create_task(self._reopen(list(target), final))
            return
        cut = min(keep, self._computed)
        cut -= cut % self._block_size  # the scheduler's rule: whole blocks only
        self._stats.replaced(old=len(self._vllm_tokens), new=len(target), kept=cut)
        params = self._final_params.clone() if final else self._piece_params()
        params.extra_args = {**(params.extra_args or {}), **replace_marker(keep)}
        end = self._piece_end(keep, len(target), final)
        self._send(target[keep:end], params, final)
        self._vllm_tokens = target[:end]
        self._computed = cut

    def _piece_end(self, start: int, length: int, final: bool) -> int:
        """Where a piece starting at `start` ends. Context pieces are at most
        `max_piece_tokens` long: a piece in flight cannot be recalled, so a long one would
        hold up the next ranking, and the last piece, until it is done; the rest follows
        piece by piece, re-diffed against the newest context each time."""
        if final or self._max_piece is None or self._update_mode == "reopen":
            return length  # "reopen" is the baseline: vLLM's own streaming, unchanged
        return min(length, start + self._max_piece)

    def _piece_params(self) -> SamplingParams:
        # Once the context is complete, vLLM's scheduler is told with the piece (policies
        # rank complete contexts first); the piece with the closing template says it too.
        return _prefill_params(final_marker() if self._context_done else None)

    def _send(self, tokens: list[int], params: SamplingParams, final: bool) -> None:
        self._inflight = not final
        self._final_sent = final
        self._feed.put_nowait(StreamingInput(TokensPrompt(prompt_token_ids=tokens), params))
        if final:
            self._feed.put_nowait(None)  # the input stream ends: this piece is the last

    async def _reopen(self, target: list[int], final: bool) -> None:
        """Baseline update: end the vLLM request, open one with the whole prompt."""
        old = self._consumer
        old.cancel()  # aborts the request; its full blocks stay in vLLM's prefix cache
        await asyncio.gather(old, return_exceptions=True)
        self._stats.reopened(old=len(self._vllm_tokens), new=len(target))
        self._feed = asyncio.Queue()
        self._consumer = self._start_request(self._feed)
        self._vllm_tokens, self._computed = [], 0
        self._send(target, self._final_params or self._piece_params(), final)
        self._vllm_tokens = list(target)
        self._reopening = None

    def _start_request(self, feed: asyncio.Queue) -> asyncio.Task:
        self._requests += 1
        request_id = self.id if self._requests == 1 else f"{self.id}.r{self._requests}"
        return asyncio.create_task(self._consume(request_id, feed), name=f"streamrag-{request_id}")

    async def _inputs(self, feed: asyncio.Queue) -> AsyncIterator[StreamingInput]:
        while (item := await feed.get()) is not None:
            yield item

    async def _consume(self, request_id: str, feed: asyncio.Queue) -> None:
        """Read one vLLM request's outputs: acks of prefilled pieces, then the answer."""
        first = True
        try:
            async for out in self._llm.generate(self._inputs(feed), _prefill_params(), request_id):
                if first and self._requests > 1:
                    self._stats.reopen_cached(out.num_cached_tokens or 0)
                first = False
                if self._final_sent:
                    self._answers.put_nowait(out)
                    if out.finished:
                        break
                    continue
                self._computed = len(self._vllm_tokens)  # the piece in flight is prefilled
                self._inflight = False
                self._progress.set()
                self._pump()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # surfaced to whoever waits: generate / wait_prefilled
            self._failure = error
            self._answers.put_nowait(error)
            self._progress.set()
            self._gate_opened.set()
            return
        self._answers.put_nowait(_END)

    # -- gate and checks ------------------------------------------------------------------
    def _settled(self) -> bool:
        return not self._inflight and self._vllm_tokens == self._tokens and self._computed == len(self._tokens)

    def _check_criteria(self) -> None:
        score = sum(c.score or 0.0 for c in self._chunks)
        reason = self.gate.criteria_reason(len(self._chunks), score, self._stable_count)
        if reason is not None:
            self._open_gate(reason)

    def _open_gate(self, reason: GateReason) -> None:
        if self.gate_is_open or self.state in ("finished", "aborted"):
            return
        valid = min(self._computed, common_prefix_len(self._vllm_tokens, self._tokens))
        self._stats.gate_opened(reason, prefilled=valid)
        if self._deadline is not None:
            self._deadline.cancel()
        self._gate_opened.set()

    def _drop_if_late(self, call: str, chunks: list[Chunk]) -> ContextReceipt | None:
        self._check_open(call)
        if not self.gate_is_open:
            return None
        self._stats.dropped_late(len(chunks))
        return ContextReceipt(0, len(chunks), len(self.prompt_token_ids))

    def _check_open(self, call: str) -> None:
        if self.state in ("finished", "aborted"):
            raise SessionStateError(f"session {self.id} is {self.state}; {call}() needs an open session")
        if self._context_done:
            raise ContextClosedError(f"session {self.id}: {call}() after finish_context(); context is closed")

    def _check_fits(self, num_tokens: int) -> None:
        # The closing template and at least one generated token must still fit.
        total = num_tokens + len(self._closing) + 1
        if total > self._max_model_len:
            raise PromptTooLongError(total, self._max_model_len)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _close(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._on_close(self)
