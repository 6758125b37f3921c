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
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from pathlib import Path

import httpx

from engine.detokenizer import IncrementalDetokenizer
from engine.errors import ConfigError, PromptTooLongError, SessionStateError
from engine.gate import Gate
from engine.models import resolve_model
from engine.prompt import PromptTemplate
from engine.remote_session import RemoteSession
from engine.replicas import NoReplicaError, Placement, ReplicaSet, ReplicaStatus
from engine.server_client import ReplicaDownError, ServerClient, ServerMetrics, Step, Usage, completion_body
from engine.types import Completion, Delta

log = logging.getLogger(__name__)


class RemoteEngine:
    """Sessions over one or more vLLM servers, each session pinned to one. Use as `async with`."""

    def __init__(self, urls: Sequence[str], model: str = "default", block_size: int | None = None,
                 cache_dir: str | None = None, served_model_name: str | None = None,
                 request_timeout_s: float = 600.0, probe_interval_s: float = 2.0) -> None:
        if isinstance(urls, str):
            urls = [urls]
        self.replicas = ReplicaSet(urls)
        self.model = model
        self.block_size = block_size
        self.cache_dir = cache_dir
        self.served_model_name = served_model_name
        self.request_timeout_s = request_timeout_s
        self.probe_interval_s = probe_interval_s
        self.template: PromptTemplate | None = None
        self.tokenizer = None
        self.model_path: Path | None = None
        self._max_model_len: int | None = None
        self._sessions: dict[str, RemoteSession] = {}
        self._metrics: dict[str, ServerMetrics] = {}
        self._http: httpx.AsyncClient | None = None
        self._clients: dict[str, ServerClient] = {}
        self._probe: asyncio.Task | None = None

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
        # No pool limit: every live session may hold one request open for minutes.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.request_timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        self._clients = {url: ServerClient(self._http, url) for url in self.replicas.urls}
        await self._describe_servers()
        self._probe = asyncio.create_task(self._probe_forever(), name="streamrag-replica-probe")

    async def close(self) -> None:
        """Abort live sessions (their requests are cancelled), stop probing, close connections."""
        for session in list(self._sessions.values()):
            await session.abort()
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

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
            self, f"sr-{uuid.uuid4().hex[:16]}", self.template, self.template.render(question, system),
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
        self._require_started()
        if (prompt_token_ids is None) == (prompt is None):
            raise ValueError("give exactly one of prompt_token_ids and prompt")
        ids = list(prompt_token_ids) if prompt is None else self.template.encode(prompt)
        if not ids:
            raise ValueError("prompt: empty")
        if len(ids) + 1 > self._max_model_len:
            raise PromptTooLongError(len(ids) + 1, self._max_model_len)
        if max_tokens < 1:
            raise ValueError(f"max_tokens: {max_tokens} must be >= 1")
        request_id = f"cmpl-{uuid.uuid4().hex[:16]}"
        placement = self.replicas.place(request_id, replica)
        sampling = {"max_tokens": min(max_tokens, self._max_model_len - len(ids)), "temperature": temperature,
                    "top_p": top_p, "seed": seed, "ignore_eos": ignore_eos}
        detok = IncrementalDetokenizer(self.template.decode)
        async with aclosing(self.stream_tokens(placement, ids, sampling, request_id)) as items:
            async for item in items:
                if isinstance(item, Usage):
                    continue
                text = detok.push(item.token_ids) + (detok.flush() if item.finish_reason else "")
                yield Delta(text=text, token_ids=item.token_ids, finish_reason=item.finish_reason)

    async def complete(self, prompt_token_ids: list[int] | None = None, prompt: str | None = None,
                       **sampling) -> Completion:
        ids: list[int] = []
        text: list[str] = []
        finish = None
        async for delta in self.complete_stream(prompt_token_ids, prompt, **sampling):
            ids.extend(delta.token_ids)
            text.append(delta.text)
            finish = delta.finish_reason or finish
        n_prompt = len(prompt_token_ids) if prompt is None else len(self.template.encode(prompt))
        return Completion("".join(text), tuple(ids), n_prompt, finish)

    # -- requests with failover (used by RemoteSession) -----------------------------------
    async def warm(self, placement: Placement, prompt: list[int], request_id: str) -> Usage:
        """Prefill `prompt` on the placement's replica (one throw-away token); move on failure."""
        body = completion_body(self._served_name, prompt, 1, request_id=request_id)
        while True:
            url = placement.replica
            try:
                return await self._clients[url].warm(body)
            except ReplicaDownError as error:
                self._fail_over(placement, error)

    async def stream_tokens(self, placement: Placement, prompt: list[int], sampling: dict,
                            request_id: str) -> AsyncIterator[Step | Usage]:
        """Stream a completion; if the replica fails, resume on the next with what was produced."""
        produced: list[int] = []
        while True:
            url = placement.replica
            left = sampling["max_tokens"] - len(produced)
            if left < 1:  # the replica failed after the last token but before saying so
                yield Step((), "length")
                return
            body = completion_body(self._served_name, prompt + produced, **{**sampling, "max_tokens": left},
                                   request_id=f"{request_id}.{placement.moves}" if placement.moves else request_id)
            try:
                async with aclosing(self._clients[url].stream(body)) as items:
                    async for item in items:
                        if isinstance(item, Step):
                            produced.extend(item.token_ids)
                        yield item
                return
            except ReplicaDownError as error:
                self._fail_over(placement, error)

    def _fail_over(self, placement: Placement, error: ReplicaDownError) -> None:
        failed = placement.replica
        try:
            first = self.replicas.move(placement, failed)
        except NoReplicaError as none_left:
            raise none_left from error
        if first:
            log.warning("%s; taken out, its sessions move to other replicas", error)

    # -- observability --------------------------------------------------------------------
    def replica_status(self) -> tuple[ReplicaStatus, ...]:
        return self.replicas.status()

    def kv_blocks_in_use(self) -> int:
        """KV blocks the live servers hold, from their /metrics as of the last probe."""
        self._require_started()
        return sum(self._metrics[u].blocks_in_use or 0 for u in self.replicas.live if u in self._metrics)

    async def server_metrics(self) -> dict[str, ServerMetrics]:
        """Scrape every live server's /metrics now (prefix-cache counters, blocks in use)."""
        self._require_started()
        urls = self.replicas.live
        answers = await asyncio.gather(*(self._clients[u].metrics() for u in urls), return_exceptions=True)
        for url, answer in zip(urls, answers):
            if isinstance(answer, ServerMetrics):
                self._metrics[url] = answer
        return {u: self._metrics[u] for u in urls if u in self._metrics}

    async def wait_for_blocks(self, expected: int, timeout_s: float = 10.0) -> int:
        """Probe until the servers' blocks in use equal `expected` or the time is up."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            await self.server_metrics()
            used = self.kv_blocks_in_use()
            if used == expected or asyncio.get_running_loop().time() > deadline:
                return used
            await asyncio.sleep(0.1)

    # -- start-up and probing -------------------------------------------------------------
    async def _describe_servers(self) -> None:
        """Ask every server what it serves; those that do not answer start out taken out."""
        urls = self.replicas.urls
        models = await asyncio.gather(*(self._clients[u].served_model() for u in urls), return_exceptions=True)
        up = {u: m for u, m in zip(urls, models) if not isinstance(m, BaseException)}
        for url, answer in zip(urls, models):
            if isinstance(answer, BaseException):
                self.replicas.mark_down(url)
                log.warning("vLLM server %s is not answering (%s); it joins when it does", url, answer)
        if not up:
            raise NoReplicaError(f"no vLLM server answered GET /v1/models at {', '.join(urls)}; "
                                 "start them first (README: Beyond one machine) or fix the URLs")
        names = {m.name for m in up.values()}
        if len(names) > 1:
            raise ConfigError("vllm_urls", f"the servers serve different models {sorted(names)}; "
                              "every replica must serve the same model")
        self._served_name = self.served_model_name or names.pop()
        lengths = [m.max_model_len for m in up.values() if m.max_model_len]
        self._max_model_len = min(lengths) if lengths else 2048
        await self.server_metrics()
        sizes = {m.block_size for m in self._metrics.values() if m.block_size}
        if self.block_size is not None and sizes and sizes != {self.block_size}:
            raise ConfigError("block_size", f"{self.block_size} but the servers use {sorted(sizes)}; "
                              "pass theirs (or None to take it from them)")
        if self.block_size is None and len(sizes) == 1:
            self.block_size = sizes.pop()

    async def _probe_forever(self) -> None:
        """Refresh metrics of every server; bring back those that answer again, take out the rest."""
        while True:
            await asyncio.sleep(self.probe_interval_s)
            urls = self.replicas.urls
            answers = await asyncio.gather(*(self._clients[u].metrics() for u in urls), return_exceptions=True)
            for url, answer in zip(urls, answers):
                if isinstance(answer, ServerMetrics):
                    self._metrics[url] = answer
                    if not self.replicas.is_up(url):
                        log.warning("vLLM server %s answers again; new sessions may go there", url)
                        self.replicas.mark_up(url)
                elif self.replicas.mark_down(url):
                    log.warning("vLLM server %s stopped answering (%s); taken out", url, answer)

    def _require_started(self) -> None:
        if self._http is None:
            raise SessionStateError("the remote engine is not started; use `async with RemoteEngine(...)`")
