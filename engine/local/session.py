"""`StreamSession`: one question whose context streams in while vLLM prefills it.

A session is one vLLM streaming-input request. Its `SessionContext` (engine/session_context.py)
holds the prompt asked for (`ctx.tokens`):

    [ prefix ][ chunk 1 ][ chunk 2 ] ... [ chunk n ]   (+ closing template at the gate)

and this class holds `_vllm_tokens`, what was handed to vLLM so far. At most one piece is in
flight: vLLM prefills it and samples one token, which it throws away when the next piece
comes (that token's output is our "ack"). Whatever arrives meanwhile just changes the context;
when the ack comes, `_pump` sends the difference in one piece, so a burst of appends costs
one step and a burst of updates applies only the newest ranking.

The difference is sent one of two ways:
  - the context extends `_vllm_tokens`: the new tail is appended (vLLM's own streaming input);
  - they diverge at token `lcp`: update mode "lcp" sends the new tokens from `lcp` on with a
    replace marker, and streamrag's scheduler cuts the request back to the block boundary
    at or below `lcp` (engine/local/replace.py); update mode "reopen" (the baseline) ends
    the vLLM request and opens a new one with the whole prompt, leaving reuse to vLLM's
    prefix cache.
When the gate opens and `generate()` has the sampling parameters, the difference plus the
closing template goes out as the last piece, and its sampled tokens are the answer. That last
piece may go while a context piece is still in flight, when it only appends (`_may_follow`):
the ack that comes next is that piece's, and is taken off what follows (`_without_ack`).

Who frees the KV blocks: vLLM does, when the request finishes or is aborted. Every exit
path here (finished, `abort()`, a cancelled or abandoned `generate()`, engine close or death)
ends with the current `_consumer` done, which means its vLLM request finished or was aborted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Literal

from vllm.engine.protocol import StreamingInput
from vllm.inputs import TokensPrompt
from vllm.sampling_params import SamplingParams

from engine.answer_text import AnswerText
from engine.context_surface import ContextSurface
from engine.errors import EngineDeadError, SessionStateError
from engine.gate import Gate
from engine.local.markers import final_marker, replace_marker
from engine.local.params import answer_params, check_answer_params, prefill_params, token_logprobs
from engine.prompt import PromptTemplate, RenderedPrompt
from engine.session_context import SessionContext, common_prefix_len
from engine.types import Delta, Sampling

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM

_END = object()  # end of the answer stream in `_answers`


class StreamSession(ContextSurface):
    """Created by `StreamEngine.open_session`; see the module docstring for the protocol."""

    def __init__(self, llm: AsyncLLM, template: PromptTemplate, rendered: RenderedPrompt, session_id: str,
                 gate: Gate, max_model_len: int, block_size: int, update_mode: Literal["lcp", "reopen"],
                 on_close: Callable[[StreamSession], None], max_piece_tokens: int | None = None) -> None:
        self._llm = llm
        self._block_size = block_size
        self._update_mode = update_mode
        self._max_piece = max_piece_tokens
        self._on_close = on_close
        self._vllm_tokens: list[int] = []  # what the current vLLM request was given
        self._computed = 0  # leading tokens of _vllm_tokens vLLM has prefilled
        self._inflight = False
        self._final_params: SamplingParams | None = None
        self._final_sent = False
        self._requests = 0  # vLLM requests opened (more than one only in "reopen" mode)
        self._failure: Exception | None = None
        self._progress = asyncio.Event()  # set on every ack and on failure
        self._answers: asyncio.Queue = asyncio.Queue()
        self._reopening: asyncio.Task | None = None
        self._ctx = SessionContext(session_id, template, rendered, gate, max_model_len,
                                   on_change=self._pump, prefilled=self._prefilled)
        self._feed: asyncio.Queue[StreamingInput | None] = asyncio.Queue()
        self._consumer = self._start_request(self._feed)
        self._pump()

    # -- the rest of the session contract (engine/contract.py) -----------------------------
    async def wait_prefilled(self) -> None:
        """Wait until vLLM has prefilled the whole current context (tests, benchmarks)."""
        while not self._ctx.closed and self._failure is None and not self._settled():
            self._progress.clear()
            await self._progress.wait()
        self._raise_if_failed()

    async def generate(self, sampling: Sampling | None = None) -> AsyncIterator[Delta]:
        """Wait for the gate, then stream the answer. Leaving early aborts the session (at once
        under `contextlib.aclosing`, else when the loop finalizes the generator)."""
        self._raise_if_failed()
        check_answer_params(self._llm, sampling or Sampling())  # refused before the claim: no harm done
        sampling = self._ctx.claim_generate(sampling)
        answer = AnswerText(self._ctx.template.decode, sampling.stop)
        try:
            await self._ctx.gate_opened.wait()
            self._raise_if_failed()
            sampling = self._ctx.start_generating(sampling)
            self._final_params = answer_params(sampling, final_marker())
            self._pump()
            while (item := await self._answers.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                out = item.outputs[0]
                if out.token_ids:
                    self._ctx.stats.tokens_generated(len(out.token_ids))
                logprobs = token_logprobs(out, sampling.logprobs)
                if (delta := answer.delta(out.token_ids, out.finish_reason, logprobs)) is not None:
                    yield delta
                if answer.done:  # a stop string: the rest of vLLM's answer is not wanted
                    self._consumer.cancel()
                    break
            if self._ctx.close("finished"):
                self._on_close(self)
                await asyncio.gather(self._consumer, return_exceptions=True)
        finally:
            if self.state != "finished":
                await self.abort()

    async def abort(self) -> None:
        """End the session now; vLLM frees its KV blocks. Safe twice. All that must happen is
        done before the first await, so a caller cancelled while waiting still ends it."""
        if not self._ctx.close("aborted"):
            return
        self._on_close(self)
        # A generate() waiting for tokens (its client still there) ends with an error, not silently.
        self._answers.put_nowait(self._failure or SessionStateError(f"session {self.id} was aborted"))
        tasks = [t for t in (self._reopening, self._consumer) if t is not None]
        for task in tasks:
            task.cancel()  # vLLM's generate() aborts its request when cancelled
        await asyncio.gather(*tasks, return_exceptions=True)

    def fail(self, error: Exception) -> None:
        """End the session with `error`: every waiter (gate, prefill, tokens) raises it."""
        if self._failure is None:
            self._failure = error
        self._answers.put_nowait(error)
        self._progress.set()
        if isinstance(error, EngineDeadError) and self._ctx.close("aborted"):
            self._on_close(self)  # nothing of it survives in the dead engine
            for task in (self._reopening, self._consumer):
                if task is not None:
                    task.cancel()

    # -- sending pieces -------------------------------------------------------------------
    def _pump(self) -> None:
        """Send vLLM the difference between the context and what it has, if nothing is in flight
        (the answer's piece may follow a piece in flight, see `_may_follow`)."""
        if self._final_sent or self._ctx.closed or self._failure is not None:
            return
        final = self._final_params is not None
        target = self._ctx.prompt_token_ids if final else self._ctx.tokens
        if self._inflight and not (final and self._may_follow(target)):
            return
        if final and self._final_params.structured_outputs is not None:
            # vLLM sets a request's grammar up from its first piece only and ignores it on a
            # later one: a structured answer goes out as a new request, which finds what this
            # one prefilled in the prefix cache (all but the last partial block).
            self._inflight = True
            self._reopening = asyncio.create_task(self._reopen(list(target), final=True, count=False))
            return
        lcp = common_prefix_len(self._vllm_tokens, target)
        if lcp == len(self._vllm_tokens) and lcp < len(target):  # a plain append
            end = self._piece_end(lcp, len(target), final)
            self._send(target[lcp:end], self._final_params if final else self._piece_params(), final)
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
        self._ctx.stats.replaced(old=len(self._vllm_tokens), new=len(target), kept=cut)
        params = self._final_params.clone() if final else self._piece_params()
        params.extra_args = {**(params.extra_args or {}), **replace_marker(keep)}
        end = self._piece_end(keep, len(target), final)
        self._send(target[keep:end], params, final)
        self._vllm_tokens = target[:end]
        self._computed = cut

    def _may_follow(self, target: list[int]) -> bool:
        """Whether the answer's piece can go now, behind the piece in flight, rather than after its
        ack: when it only appends to what vLLM was given. vLLM queues a session's next input
        behind the one it computes (its scheduler's `streaming_queue`, its output processor's
        `input_chunk_queue`), and our scheduler learns at once that the context is complete, so
        the piece in flight ranks as complete too: no round trip through this process, and no
        wait behind other sessions' answers while ranked as partial."""
        return (self._update_mode == "lcp" and self._reopening is None
                and self._final_params.structured_outputs is None
                and common_prefix_len(self._vllm_tokens, target) == len(self._vllm_tokens))

    def _piece_end(self, start: int, length: int, final: bool) -> int:
        """Where a piece starting at `start` ends: context pieces are at most `max_piece_tokens`
        (a piece in flight cannot be recalled; a long one would hold up the next ranking)."""
        if final or self._max_piece is None or self._update_mode == "reopen":
            return length  # "reopen" is the baseline: vLLM's own streaming, unchanged
        return min(length, start + self._max_piece)

    def _piece_params(self) -> SamplingParams:
        # Once the context is complete, vLLM's scheduler is told with the piece (policies
        # rank complete contexts first); the piece with the closing template says it too.
        return prefill_params(final_marker() if self._ctx.context_done else None)

    def _send(self, tokens: list[int], params: SamplingParams, final: bool) -> None:
        if final:
            self._final_sent = True  # a context piece may still be in flight (`_may_follow`)
        else:
            self._inflight = True
        self._feed.put_nowait(StreamingInput(TokensPrompt(prompt_token_ids=tokens), params))
        if final:
            self._feed.put_nowait(None)  # the input stream ends: this piece is the last

    async def _reopen(self, target: list[int], final: bool, count: bool = True) -> None:
        """Baseline update, and a structured answer: end the vLLM request, open one with the
        whole prompt (vLLM's prefix cache keeps the full blocks the old one computed).
        `count`: a replace in the session's stats (a structured answer's reopen is not one)."""
        old = self._consumer
        old.cancel()  # aborts the request; its full blocks stay in vLLM's prefix cache
        await asyncio.gather(old, return_exceptions=True)
        if count:
            self._ctx.stats.reopened(old=len(self._vllm_tokens), new=len(target))
        self._feed = asyncio.Queue()
        self._consumer = self._start_request(self._feed)
        self._vllm_tokens, self._computed, self._inflight = [], 0, False
        self._send(target, self._final_params if final else self._piece_params(), final)  # final: as it began
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
            async for out in self._llm.generate(self._inputs(feed), prefill_params(), request_id):
                if first and self._requests > 1:
                    self._ctx.stats.reopen_cached(out.num_cached_tokens or 0)
                first = False
                if self._final_sent and self._inflight:  # the ack the answer's piece followed
                    self._inflight = False
                    out = _without_ack(out)
                if self._final_sent:
                    if out is not None:
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
            if self._llm.errored:
                error = EngineDeadError(f"the vLLM engine died while serving session {self.id}: {error!r}")
            self.fail(error)
            return
        self._answers.put_nowait(_END)

    # -- what vLLM has --------------------------------------------------------------------
    def _settled(self) -> bool:
        tokens = self._ctx.tokens
        return not self._inflight and self._vllm_tokens == tokens and self._computed == len(tokens)

    def _prefilled(self) -> int:
        return min(self._computed, common_prefix_len(self._vllm_tokens, self._ctx.tokens))

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure


def _without_ack(out):
    """A context piece's output (its one discarded token) stripped from what vLLM delivered:
    None if that is all, else the answer's tokens that came merged with it (vLLM merges the
    outputs of a request that its reader has not taken yet)."""
    completion = out.outputs[0]
    if len(completion.token_ids) <= 1:
        return None
    completion.token_ids = list(completion.token_ids)[1:]
    if completion.logprobs:
        completion.logprobs = completion.logprobs[1:]
    return out
