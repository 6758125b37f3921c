"""`VLLMServersSession`: a session whose prompt is prefilled on a vLLM server by prefix warming.

A vLLM server keeps no session between requests; what carries over is its prefix cache (the
full KV blocks earlier requests computed). So the session turns context into requests:

    warm 1   [prefix.....]                                  max_tokens=1   cached 0
    warm 2   [prefix.....][chunk 1....][chunk 2..]          max_tokens=1   cached = warm 1, to the block
    final    [prefix.....][chunk 1....][chunk 2..][3][closing]  streamed   cached = warm 2, to the block

Context arriving while a warm runs only changes the prompt; when the warm returns, one warm
carries all of it (never more than one in flight per session). At the gate `generate()` waits
for the warm in flight (its blocks are what the final request reuses), then sends the prompt
and the closing template as the final request, streamed. The server then computes only the
tail since the last warm, plus the partial last block every request recomputes.

Every request goes to one replica (`ReplicaSet.pick` of the session id). When it fails because
the replica is down, the replica is taken out and the request is re-sent whole to the next
live one: a request always carries the whole prompt so far, and a final that had streamed k
tokens resumes with prompt + those k tokens and max_tokens - k, so the client sees one answer.

Who frees KV blocks: the server, when a request ends. Between requests a session holds none,
only prefix-cache entries the server may evict. `abort()` cancels the request in flight, which
closes its connection; vLLM aborts a request whose client went away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from engine.answer_text import AnswerText
from engine.context_surface import ContextSurface
from engine.errors import SessionStateError
from engine.gate import Gate
from engine.prompt import PromptTemplate, RenderedPrompt
from engine.remote.vllm_client import ServerUsage
from engine.session_context import SessionContext, common_prefix_len
from engine.types import (
    Delta,
    Sampling,
)

if TYPE_CHECKING:
    from engine.remote.router import ReplicaRouter

_END = object()  # end of the answer stream in `_answers`


@dataclass(frozen=True)
class ServerRequest:
    """One request a session sent, with the server's own count of prompt tokens it reused."""

    kind: Literal["warm", "final"]
    replica: str
    prompt_tokens: int
    cached_tokens: int | None  # None: the server runs without --enable-prompt-tokens-details


class VLLMServersSession(ContextSurface):
    """Created by `VLLMServersEngine.open_session`; see the module docstring for the protocol."""

    def __init__(self, router: ReplicaRouter, session_id: str, template: PromptTemplate,
                 rendered: RenderedPrompt, gate: Gate, max_model_len: int,
                 on_close: Callable[[VLLMServersSession], None]) -> None:
        self.gate = gate
        self._router = router
        self._on_close = on_close
        self._placement = router.replicas.place(session_id)
        self._moves_seen = 0
        self._warmed: list[int] = []  # the prompt of the last request the current replica finished
        self._warm_task: asyncio.Task | None = None
        self._final_task: asyncio.Task | None = None
        self._finalizing = False  # generate() took over: no more warms
        self._failure: Exception | None = None
        self._progress = asyncio.Event()  # set whenever a warm ends
        self._answers: asyncio.Queue = asyncio.Queue()
        self._requests: list[ServerRequest] = []
        self._ctx = SessionContext(session_id, template, rendered, gate, max_model_len,
                                   on_change=self._pump, prefilled=self._prefilled)
        self._pump()

    # -- the rest of the session contract (engine/contract.py) -----------------------------
    # `stats` counts reuse from the server's reports: each request after the first is a replace
    # whose kept tokens are its `cached_tokens`.

    @property
    def replica(self) -> str:
        """The server this session's requests go to now."""
        return self._placement.replica

    @property
    def failovers(self) -> int:
        return self._placement.moves

    @property
    def server_requests(self) -> tuple[ServerRequest, ...]:
        return tuple(self._requests)

    async def wait_prefilled(self) -> None:
        """Wait until the server has warmed the whole current context (tests, benchmarks)."""
        while (not self._ctx.closed and self._failure is None and not self._finalizing
               and (self._warm_task is not None or self._warmed != self._ctx.tokens)):
            self._progress.clear()
            await self._progress.wait()
        self._raise_if_failed()

    async def generate(self, sampling: Sampling | None = None) -> AsyncIterator[Delta]:
        """Wait for the gate, then stream the answer. Leaving early aborts the session."""
        sampling = self._ctx.claim_generate(sampling)
        answer = AnswerText(self._ctx.template.decode, sampling.stop)
        try:
            await self._ctx.gate_opened.wait()
            self._raise_if_failed()
            sampling = self._ctx.start_generating(sampling)
            self._finalizing = True
            if self._warm_task is not None:  # its blocks are what the final request reuses
                await asyncio.wait({self._warm_task})
            self._raise_if_failed()
            prompt = self._ctx.prompt_token_ids
            self._final_task = asyncio.create_task(self._final(prompt, sampling), name=f"{self.id}.final")
            while (item := await self._answers.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                if item.token_ids:
                    self._ctx.stats.tokens_generated(len(item.token_ids))
                if (delta := answer.delta(item.token_ids, item.finish_reason, item.logprobs)) is not None:
                    yield delta
                if answer.done:  # a stop string: end the server's request
                    self._final_task.cancel()
                    await asyncio.gather(self._final_task, return_exceptions=True)
                    break
            if self._ctx.close("finished"):
                self._on_close(self)
        finally:
            if self.state != "finished":
                await self.abort()

    async def abort(self) -> None:
        """End the session now; the request in flight is cancelled. Safe to call twice.

        Everything that must happen is done before the first await, so a caller whose own
        cancellation interrupts the wait still ends the session.
        """
        if not self._ctx.close("aborted"):
            return
        self._on_close(self)
        self._answers.put_nowait(SessionStateError(f"session {self.id} was aborted"))
        tasks = [t for t in (self._warm_task, self._final_task) if t is not None]
        for task in tasks:
            task.cancel()  # closes the HTTP request; the server aborts it and frees its KV
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- requests -------------------------------------------------------------------------
    def _pump(self) -> None:
        """Warm the prompt so far, unless a warm is in flight (it re-pumps when it returns)."""
        if self._warm_task is not None or self._finalizing or self._ctx.closed or self._failure:
            return
        if self._ctx.tokens == self._warmed:
            return
        target = list(self._ctx.tokens)
        n = len(self._requests) + 1
        self._warm_task = asyncio.create_task(self._warm(target, f"{self.id}.w{n}"), name=f"{self.id}.w{n}")

    async def _warm(self, target: list[int], request_id: str) -> None:
        try:
            usage = await self._router.warm(self._placement, target, request_id)
            self._record("warm", target, usage)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # surfaced to whoever waits: generate / wait_prefilled
            self._fail(error)
        finally:
            self._warm_task = None
            self._progress.set()
        self._pump()

    async def _final(self, prompt: list[int], sampling: Sampling) -> None:
        try:
            stream = self._router.stream(self._placement, prompt, sampling, f"{self.id}.final")
            async with aclosing(stream) as items:
                async for item in items:
                    if isinstance(item, ServerUsage):
                        self._record("final", prompt, item)
                    else:
                        self._answers.put_nowait(item)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._answers.put_nowait(error)
            return
        self._answers.put_nowait(_END)

    def _record(self, kind: Literal["warm", "final"], prompt: list[int], usage: ServerUsage) -> None:
        stats = self._ctx.stats
        if self._placement.moves != self._moves_seen:  # moved: the old replica's cache is gone
            self._moves_seen = self._placement.moves
            if self._warmed:
                stats.replaced(old=len(self._warmed), new=len(self._warmed), kept=0)
            self._warmed = []
        if self._warmed and usage.cached_tokens is not None:
            old, new = len(self._warmed), len(prompt)
            stats.replaced(old=old, new=new, kept=min(usage.cached_tokens, old, new))
        sent = usage.prompt_tokens or len(prompt)  # a resumed final also carried its answer so far
        self._requests.append(ServerRequest(kind, self._placement.replica, sent, usage.cached_tokens))
        self._warmed = list(prompt)

    def _prefilled(self) -> int:
        if self._placement.moves != self._moves_seen:
            return 0
        return common_prefix_len(self._warmed, self._ctx.tokens)

    def _fail(self, error: Exception) -> None:
        self._failure = error
        self._progress.set()
        self._ctx.gate_opened.set()  # wakes generate(), which raises the failure

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure
