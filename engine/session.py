"""`StreamSession`: one question whose context streams in while vLLM prefills it.

A session is one vLLM streaming-input request. Its prompt grows at the end only:

    sent to vLLM ---------------------------->|  pending  |   (closing at the gate)
    [ prefix ][ chunk 1 ][ chunk 2 ][ chunk 3 ][ chunk 4  ][ closing ]
    |<------- acked: vLLM finished these -->|<- in flight ->|

At most one piece is in flight: vLLM prefills it and samples one token, which it throws away
when the next piece arrives (that token's output is our "ack"). Appends that come while a
piece is in flight wait in `pending` and go out together, so a burst costs one step.
When the gate opens and `generate()` has given the sampling parameters, what is pending plus
the closing template goes out as the last piece, and its sampled tokens are the answer.

Who frees the KV blocks: vLLM does, when the request finishes or is aborted. Every exit
path here (finished, `abort()`, a cancelled or abandoned `generate()`, engine close) ends
in `_consumer` being done, which means the vLLM request has finished or been aborted.
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
from engine.types import Chunk, ContextReceipt, Delta, GateReason, SessionStats

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM

State = Literal["open", "generating", "finished", "aborted"]
_END = object()  # end of the answer stream in `_answers`

# Intermediate pieces only need their KV computed; the one token vLLM samples is discarded.
_PREFILL_PARAMS = SamplingParams(
    max_tokens=1, temperature=0.0, detokenize=False, output_kind=RequestOutputKind.DELTA
)


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
        on_close: Callable[[StreamSession], None],
    ) -> None:
        self.id = session_id
        self.gate = gate
        self._llm = llm
        self._template = template
        self._closing = list(rendered.closing_ids)
        self._max_model_len = max_model_len
        self._on_close = on_close
        self._t0 = time.monotonic()

        self._tokens: list[int] = list(rendered.prefix_ids)  # prompt without closing
        self._chunks: list[Chunk] = []
        self._sent = 0  # tokens handed to vLLM
        self._inflight = 0  # tokens of the piece vLLM is prefilling now
        self._acked = 0  # tokens vLLM has finished prefilling
        self._final_params: SamplingParams | None = None
        self._final_sent = False

        self.state: State = "open"
        self._context_done = False
        self._generate_called = False
        self._gate_reason: GateReason | None = None
        self._gate_opened = asyncio.Event()
        self._prefill_settled = asyncio.Event()
        self._prefilled_before_gate = 0
        self._dropped_late = 0
        self._t_chunks: list[float] = []
        self._t_gate: float | None = None
        self._t_first_token: float | None = None
        self._generated = 0
        self._failure: Exception | None = None

        self._check_fits(len(self._tokens))
        self._feed: asyncio.Queue[StreamingInput | None] = asyncio.Queue()
        self._answers: asyncio.Queue = asyncio.Queue()
        self._consumer = asyncio.create_task(self._consume(), name=f"streamrag-{session_id}")
        self._deadline = None
        if gate.max_wait_s is not None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(gate.max_wait_s, self._open_gate, "deadline")
        self._pump()

    # -- public surface -------------------------------------------------------------------
    @property
    def prompt_token_ids(self) -> list[int]:
        """The prompt decoding starts from: everything accepted plus the closing template."""
        return self._tokens + self._closing

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        return tuple(self._chunks)

    @property
    def gate_is_open(self) -> bool:
        return self._gate_opened.is_set()

    @property
    def stats(self) -> SessionStats:
        return SessionStats(
            prompt_tokens=len(self.prompt_token_ids),
            prefilled_before_gate=self._prefilled_before_gate,
            tail_tokens=(len(self.prompt_token_ids) - self._prefilled_before_gate)
            if self.gate_is_open else 0,
            reused_tokens=0,
            recomputed_tokens=0,
            invalidated_tokens=0,
            chunks=len(self._chunks),
            chunks_dropped_late=self._dropped_late,
            gate_reason=self._gate_reason,
            t_chunks=tuple(self._t_chunks),
            t_gate=self._t_gate,
            t_first_token=self._t_first_token,
            generated_tokens=self._generated,
        )

    async def append(self, chunks: list[Chunk]) -> ContextReceipt:
        """Put chunks after the ones already there; they start prefilling at once.

        After the gate opened (deadline or criteria) chunks are dropped and counted, not
        an error: retrieval may legitimately still be running. After `finish_context()`
        it is an error: the caller said there would be no more.
        """
        self._check_open("append")
        chunks = list(chunks)
        if self.gate_is_open:
            self._dropped_late += len(chunks)
            return ContextReceipt(0, len(chunks), len(self.prompt_token_ids))
        pieces = [
            self._template.chunk_ids(c.text, len(self._chunks) + i + 1) for i, c in enumerate(chunks)
        ]
        self._check_fits(len(self._tokens) + sum(map(len, pieces)))
        now = self._now()
        for chunk, piece in zip(chunks, pieces):
            self._chunks.append(chunk)
            self._tokens.extend(piece)
            self._t_chunks.append(now)
        self._pump()
        self._check_criteria()
        return ContextReceipt(len(chunks), 0, len(self.prompt_token_ids))

    async def finish_context(self) -> None:
        """Retrieval is done: no more context will come; the gate opens if still closed."""
        self._check_open("finish_context")
        self._context_done = True
        self._open_gate("done")

    async def wait_prefilled(self) -> None:
        """Wait until vLLM has prefilled every accepted chunk (for tests and benchmarks)."""
        while self._acked < len(self._tokens) and self.state in ("open", "generating"):
            self._prefill_settled.clear()
            await self._prefill_settled.wait()
        self._raise_if_failed()

    async def generate(
        self,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        ignore_eos: bool = False,
    ) -> AsyncIterator[Delta]:
        """Wait for the gate, then stream the answer. Leaving early aborts the session."""
        if self._generate_called:
            raise SessionStateError(f"session {self.id}: generate() was already called once")
        if self.state != "open":
            raise SessionStateError(f"session {self.id} is {self.state}; open a new session")
        if max_tokens < 1:
            raise ValueError(f"max_tokens: {max_tokens} must be >= 1")
        self._generate_called = True
        detok = IncrementalDetokenizer(self._template.decode)
        try:
            await self._gate_opened.wait()
            self._raise_if_failed()
            self.state = "generating"
            budget = self._max_model_len - len(self.prompt_token_ids)
            self._final_params = SamplingParams(
                max_tokens=min(max_tokens, budget), temperature=temperature, top_p=top_p,
                seed=seed, ignore_eos=ignore_eos, detokenize=False,
                output_kind=RequestOutputKind.DELTA,
            )
            self._pump()
            while (item := await self._answers.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                out = item.outputs[0]
                ids = tuple(out.token_ids)
                if ids and self._t_first_token is None:
                    self._t_first_token = self._now()
                self._generated += len(ids)
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
        """End the session now; vLLM frees its KV blocks. Safe to call more than once."""
        if self.state in ("finished", "aborted"):
            return
        self.state = "aborted"
        self._open_gate_silently()
        self._consumer.cancel()  # vLLM's generate() aborts its request when cancelled
        await asyncio.gather(self._consumer, return_exceptions=True)
        self._close()

    # -- internals ------------------------------------------------------------------------
    def _pump(self) -> None:
        """Send the next piece to vLLM if none is in flight."""
        if self._inflight or self._final_sent or self.state in ("finished", "aborted"):
            return
        piece = self._tokens[self._sent :]
        if self._final_params is not None:
            self._final_sent = True
            self._feed.put_nowait(
                StreamingInput(TokensPrompt(prompt_token_ids=piece + self._closing), self._final_params)
            )
            self._feed.put_nowait(None)  # the input stream ends: this piece is the last
            self._sent = len(self._tokens)
        elif piece:
            self._inflight = len(piece)
            self._sent += len(piece)
            self._feed.put_nowait(StreamingInput(TokensPrompt(prompt_token_ids=piece), _PREFILL_PARAMS))

    async def _inputs(self) -> AsyncIterator[StreamingInput]:
        while (item := await self._feed.get()) is not None:
            yield item

    async def _consume(self) -> None:
        """Read vLLM's outputs: acks of prefilled pieces, then the answer's tokens."""
        try:
            async for out in self._llm.generate(self._inputs(), _PREFILL_PARAMS, self.id):
                if self._final_sent:
                    self._answers.put_nowait(out)
                    if out.finished:
                        break
                    continue
                # A piece finished prefilling (vLLM sampled its throw-away token).
                self._acked += self._inflight
                self._inflight = 0
                self._prefill_settled.set()
                self._pump()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # surfaced to whoever waits: generate / wait_prefilled
            self._failure = error
            self._answers.put_nowait(error)
            self._prefill_settled.set()
            self._open_gate_silently()
            return
        self._answers.put_nowait(_END)

    def _check_criteria(self) -> None:
        score = sum(c.score or 0.0 for c in self._chunks)
        reason = self.gate.criteria_reason(len(self._chunks), score, stable_count=0)
        if reason is not None:
            self._open_gate(reason)

    def _open_gate(self, reason: GateReason) -> None:
        if self.gate_is_open or self.state in ("finished", "aborted"):
            return
        self._gate_reason = reason
        self._t_gate = self._now()
        self._prefilled_before_gate = self._acked
        self._open_gate_silently()

    def _open_gate_silently(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._gate_opened.set()

    def _check_open(self, call: str) -> None:
        if self.state in ("finished", "aborted"):
            raise SessionStateError(f"session {self.id} is {self.state}; {call}() needs an open session")
        if self._context_done:
            raise ContextClosedError(
                f"session {self.id}: {call}() after finish_context(); context is closed"
            )

    def _check_fits(self, num_tokens: int) -> None:
        # The closing template and at least one generated token must still fit.
        total = num_tokens + len(self._closing) + 1
        if total > self._max_model_len:
            raise PromptTooLongError(total, self._max_model_len)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _close(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._on_close(self)
