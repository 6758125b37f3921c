"""`RemoteEngine`: the engine's session surface over running vLLM OpenAI-compatible servers.

    async with RemoteEngine(["http://10.0.0.5:8001", "http://10.0.0.6:8001"], model="default") as engine:
        s = engine.open_session(question="...", gate=Gate(min_chunks=3, max_wait_s=2.0))
        await s.append([Chunk(text="...", id="doc-1", score=0.82)])   # warms the server's prefix cache
        await s.finish_context()
        async for delta in s.generate(max_tokens=64):
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

The parts: `remote_session.py` (the warming protocol of one session), `session_context.py`
(context, gate, stats: what any session has), `replica_router.py` (requests with failover),
`replicas.py` (the consistent-hash ring), `server_client.py` (one server's HTTP API).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from pathlib import Path

from engine.detokenizer import IncrementalDetokenizer
from engine.errors import ConfigError, PromptTooLongError, SessionStateError
from engine.gate import Gate
from engine.models import resolve_model
from engine.prompt import PromptTemplate
from engine.remote_session import RemoteSession
from engine.replica_router import ReplicaRouter
from engine.replicas import ReplicaSet, ReplicaStatus
from engine.server_client import ServerMetrics, Usage
from engine.types import Completion, Delta


class RemoteEngine:
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
        self._sessions: dict[str, RemoteSession] = {}
        self._started = False

    async def __aenter__(self) -> RemoteEngine:
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
    def open_session(self, question: str, system: str | None = None, gate: Gate | None = None,
                     update_mode: str | None = None) -> RemoteSession:
        """Open a session; its fixed prefix starts warming on its replica now."""
        self._require_started()
        if not question or not question.strip():
            raise ValueError("question: empty; a session needs the user's question")
        if update_mode not in (None, "lcp", "reopen"):
            raise ConfigError("update_mode", f"{update_mode!r}: use 'lcp' or 'reopen'")
        session = RemoteSession(
            self._router, f"sr-{uuid.uuid4().hex[:16]}", self.template, self.template.render(question, system),
            gate or Gate(), self._max_model_len, on_close=lambda s: self._sessions.pop(s.id, None),
        )
        self._sessions[session.id] = session
        return session

    def session(self, session_id: str) -> RemoteSession | None:
        return self._sessions.get(session_id)

    @property
    def live_sessions(self) -> int:
        return len(self._sessions)

    # -- one-shot completions -------------------------------------------------------------
    async def complete_stream(self, prompt_token_ids: list[int] | None = None, prompt: str | None = None,
                              max_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
                              seed: int | None = None, ignore_eos: bool = False,
                              replica: str | None = None) -> AsyncIterator[Delta]:
        """Stream a plain completion of a whole prompt, on `replica` or one the ring picks."""
        ids = self._one_shot_ids(prompt_token_ids, prompt)
        if max_tokens < 1:
            raise ValueError(f"max_tokens: {max_tokens} must be >= 1")
        request_id = f"cmpl-{uuid.uuid4().hex[:16]}"
        placement = self.replicas.place(request_id, replica)
        sampling = {"max_tokens": min(max_tokens, self._max_model_len - len(ids)), "temperature": temperature,
                    "top_p": top_p, "seed": seed, "ignore_eos": ignore_eos}
        detok = IncrementalDetokenizer(self.template.decode)
        async with aclosing(self._router.stream(placement, ids, sampling, request_id)) as items:
            async for item in items:
                if isinstance(item, Usage):
                    continue
                text = detok.push(item.token_ids) + (detok.flush() if item.finish_reason else "")
                yield Delta(text=text, token_ids=item.token_ids, finish_reason=item.finish_reason)

    async def complete(self, prompt_token_ids: list[int] | None = None, prompt: str | None = None,
                       **sampling) -> Completion:
        """One-shot completion of a whole prompt: token ids and text (as `StreamEngine.complete`)."""
        deltas = [d async for d in self.complete_stream(prompt_token_ids, prompt, **sampling)]
        finish = next((d.finish_reason for d in reversed(deltas) if d.finish_reason), None)
        return Completion("".join(d.text for d in deltas), tuple(t for d in deltas for t in d.token_ids),
                          len(self._one_shot_ids(prompt_token_ids, prompt)), finish)

    def _one_shot_ids(self, prompt_token_ids: list[int] | None, prompt: str | None) -> list[int]:
        self._require_started()
        if (prompt_token_ids is None) == (prompt is None):
            raise ValueError("give exactly one of prompt_token_ids and prompt")
        ids = self.template.encode(prompt) if prompt is not None else list(prompt_token_ids)
        if not ids:
            raise ValueError("prompt: empty; give at least one token")
        if len(ids) >= self._max_model_len:  # at least one token must be generated
            raise PromptTooLongError(len(ids) + 1, self._max_model_len)
        return ids

    # -- observability --------------------------------------------------------------------
    @property
    def replicas(self) -> ReplicaSet:
        return self._router.replicas

    def replica_status(self) -> tuple[ReplicaStatus, ...]:
        return self._router.replicas.status()

    def kv_blocks_in_use(self) -> int:
        """KV blocks the live servers hold, from their /metrics as of the last probe."""
        self._require_started()
        return self._router.blocks_in_use()

    async def server_metrics(self) -> dict[str, ServerMetrics]:
        """Scrape every live server's /metrics now (prefix-cache counters, blocks in use)."""
        self._require_started()
        return await self._router.scrape()

    async def wait_for_blocks(self, expected: int, timeout_s: float = 10.0) -> int:
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
            raise SessionStateError("the remote engine is not started; use `async with RemoteEngine(...)`")
