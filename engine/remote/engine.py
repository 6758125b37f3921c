"""`VLLMServersEngine`: the engine's session surface over running vLLM OpenAI-compatible servers.

    async with VLLMServersEngine(["http://10.0.0.5:8001", "http://10.0.0.6:8001"], model="default") as engine:
        s = await engine.open_session(question="...", gate=Gate(min_chunks=3, max_wait_s=2.0))
        await s.append([Chunk(id="doc-1", text="...", score=0.82)])   # warms the server's prefix cache
        await s.finish_context()
        async for delta in s.generate(Sampling(max_tokens=64)):
            ...

It mirrors `StreamEngine` (sessions, one-shot `complete`/`complete_stream`, `template`,
`tokenizer`, `max_model_len`, `live_sessions`, `kv_blocks_in_use`), so the app and the
integrations take either. The servers do the model work; this process renders and tokenizes
prompts with the same model folder's tokenizer (`model` resolves as in `EngineConfig`) and
sends token ids, so the prompts are exactly the in-process engine's. Start the servers with
prefix caching (the default), `--enable-prompt-tokens-details` (so each answer says how many
prompt tokens the cache supplied) and the same model; see README, "Beyond one machine".

Differences from the in-process engine, all forced by the servers' API:
  - an update cannot cut a running request back to the common prefix: each request is new
    and reuses what the server's prefix cache still holds (block-granular, evictable), so
    `update_mode` is accepted for compatibility and ignored;
  - `kv_blocks_in_use()` is the sum over live servers of their /metrics gauge as of the last
    probe (every `probe_interval_s`), not a live count; `wait_for_blocks` probes afresh.

The parts: `session.py` (the warming protocol of one session), `engine/session_context.py`
(context, gate, stats: what any session has), `router.py` (requests with failover),
`replicas.py` (the consistent-hash ring), `vllm_client.py` (one server's HTTP API).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from pathlib import Path

from engine.answer_text import AnswerText
from engine.config import check_update_mode
from engine.errors import ConfigError, SessionStateError
from engine.gate import Gate
from engine.models import resolve_model
from engine.one_shot import collect, one_shot_ids
from engine.prompt import PromptTemplate, Turn, check_history
from engine.remote.replicas import ReplicaSet, ReplicaStatus
from engine.remote.router import ReplicaRouter
from engine.remote.session import VLLMServersSession
from engine.remote.vllm_client import ServerMetrics, ServerUsage
from engine.types import Completion, Delta, Health, Sampling


class VLLMServersEngine:
    """Sessions over one or more vLLM servers, each session pinned to one. Use as `async with`.

    block_size: the servers' KV block size; None takes it from their /metrics, a number is
        checked against it. served_model_name: None takes it from their /v1/models.
    """

    def __init__(self, urls: Sequence[str], model: str = "default", block_size: int | None = None,
                 cache_dir: str | None = None, served_model_name: str | None = None,
                 request_timeout_s: float = 600.0, probe_interval_s: float = 2.0) -> None:
        self._router = ReplicaRouter([urls] if isinstance(urls, str) else urls, request_timeout_s,
                                     probe_interval_s)
        self.model = model
        self.block_size = block_size
        self.cache_dir = cache_dir
        self.served_model_name = served_model_name
        self.template: PromptTemplate | None = None
        self.tokenizer = None
        self.model_path: Path | None = None
        self._max_model_len: int | None = None
        self._sessions: dict[str, VLLMServersSession] = {}
        self._started = False

    async def __aenter__(self) -> VLLMServersEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self) -> None:
        from transformers import AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
        self.model_path = resolve_model(self.model, Path(self.cache_dir) if self.cache_dir else None)
        self.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, str(self.model_path))
        self.template = PromptTemplate(self.tokenizer)
        served = await self._router.open()
        if self.served_model_name is not None:
            self._router.model = self.served_model_name
        self.served_model_name = self._router.model
        self._max_model_len = served.max_model_len or 2048
        sizes = self._router.block_sizes()
        if self.block_size is not None and sizes and sizes != {self.block_size}:
            raise ConfigError("block_size", f"{self.block_size} but the servers use {sorted(sizes)}; "
                              "pass theirs (or None to take it from them)")
        if self.block_size is None and len(sizes) == 1:
            self.block_size = sizes.pop()
        self._started = True

    async def close(self) -> None:
        """Abort live sessions (their requests are cancelled), stop probing, close connections."""
        for session in list(self._sessions.values()):
            await session.abort()
        self._started = False
        await self._router.close()

    @property
    def max_model_len(self) -> int:
        self._require_started()
        return self._max_model_len

    # -- sessions -------------------------------------------------------------------------
    async def open_session(self, question: str, system: str | None = None, gate: Gate | None = None,
                           update_mode: str | None = None, history: Sequence[Turn] = ()) -> VLLMServersSession:
        """Open a session; its fixed prefix starts warming on its replica now."""
        self._require_started()
        if not question or not question.strip():
            raise ValueError("question: empty; a session needs the user's question")
        if update_mode is not None:
            check_update_mode(update_mode)
        session = VLLMServersSession(
            self._router, f"sr-{uuid.uuid4().hex[:16]}", self.template, self.template.render(question, system, check_history(history)),
            gate or Gate(), self._max_model_len, on_close=lambda s: self._sessions.pop(s.id, None),
        )
        self._sessions[session.id] = session
        return session

    def session(self, session_id: str) -> VLLMServersSession | None:
        return self._sessions.get(session_id)

    @property
    def live_sessions(self) -> int:
        return len(self._sessions)

    def check_sampling(self, sampling: Sampling) -> None:
        """Nothing to check here: the vLLM servers judge a JSON schema when the answer starts
        (a 400 from them raises ServerRequestError)."""

    # -- one-shot completions -------------------------------------------------------------
    async def complete_stream(self, prompt_token_ids: Sequence[int] | None = None, prompt: str | None = None,
                              sampling: Sampling | None = None, replica: str | None = None) -> AsyncIterator[Delta]:
        """Stream a plain completion of a whole prompt, on `replica` or one the ring picks."""
        ids = self._one_shot_ids(prompt_token_ids, prompt)
        sampling = (sampling or Sampling()).with_max_tokens(self._max_model_len - len(ids))
        request_id = f"cmpl-{uuid.uuid4().hex[:16]}"
        placement = self.replicas.place(request_id, replica)
        answer = AnswerText(self.template.decode, sampling.stop)
        async with aclosing(self._router.stream(placement, ids, sampling, request_id)) as items:
            async for item in items:
                if isinstance(item, ServerUsage):
                    continue
                if (delta := answer.delta(item.token_ids, item.finish_reason, item.logprobs)) is not None:
                    yield delta
                if answer.done:
                    return  # closing the stream ends the server's request

    async def complete(self, prompt_token_ids: Sequence[int] | None = None, prompt: str | None = None,
                       sampling: Sampling | None = None, replica: str | None = None) -> Completion:
        """One-shot completion of a whole prompt: token ids and text."""
        ids = self._one_shot_ids(prompt_token_ids, prompt)
        return await collect(self.complete_stream(ids, None, sampling, replica), len(ids))

    def _one_shot_ids(self, prompt_token_ids: Sequence[int] | None, prompt: str | None) -> list[int]:
        self._require_started()
        return one_shot_ids(self.template, self._max_model_len, prompt_token_ids, prompt)

    # -- observability --------------------------------------------------------------------
    @property
    def replicas(self) -> ReplicaSet:
        return self._router.replicas

    def replica_status(self) -> tuple[ReplicaStatus, ...]:
        return self._router.replicas.status()

    def health(self) -> Health:
        """Healthy while at least one server answers its probes."""
        if not self._started:
            return Health(False, "the remote engine is not started")
        live = self._router.replicas.live
        return Health(True) if live else Health(False, "no vLLM server answers")

    def kv_blocks_in_use(self) -> int:
        """KV blocks the live servers hold, from their /metrics as of the last probe."""
        self._require_started()
        return self._router.blocks_in_use()

    async def server_metrics(self) -> dict[str, ServerMetrics]:
        """Scrape every live server's /metrics now (prefix-cache counters, blocks in use)."""
        self._require_started()
        return await self._router.scrape()

    async def wait_for_blocks(self, expected: int = 0, timeout_s: float = 10.0) -> int:
        """Scrape until the servers' blocks in use equal `expected` or the time is up."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            await self._router.scrape()
            used = self._router.blocks_in_use()
            if used == expected or asyncio.get_running_loop().time() > deadline:
                return used
            await asyncio.sleep(0.1)

    def _require_started(self) -> None:
        if not self._started:
            raise SessionStateError("the remote engine is not started; use `async with VLLMServersEngine(...)`")
