"""`StreamRAGClient`: the session contract over a running streamrag server's HTTP API.

    async with StreamRAGClient("http://127.0.0.1:8000") as engine:
        s = await engine.open_session(question="...", gate=Gate(min_chunks=3))
        await s.append([Chunk(id="doc-1", text="...", score=0.8)])
        await s.finish_context()
        async for delta in s.generate(Sampling(max_tokens=64)):
            ...

It is the one client of streamrag's own API: the integrations (`base_url=`), eval (`--server`)
and the conformance tests use it. The routes it speaks:

    POST   /v1/sessions                  {question, system, gate, update_mode} -> {id}
    POST   /v1/sessions/{id}/context     {op: "append" | "update" | "done", chunks, last}
    POST   /v1/sessions/{id}/generate    OpenAI chat-completion SSE; usage.streamrag = stats
    GET    /v1/sessions/{id}             state, stats, prompt token ids (`?wait_gate_s=` waits)
    DELETE /v1/sessions/{id}
    POST   /v1/completions, /v1/chat/completions   one-shot, SSE

SSE is read with httpx-sse. What HTTP cannot give live is cached: a session's `stats` and
`prompt_token_ids` are what the server last reported (after each call, and final after
`generate`); `kv_blocks_in_use()` and `live_sessions` are as of the last `/health` (refreshed
by `wait_for_blocks` and `refresh_health`). `template` is there only when `model=` names the
served model's files on this machine (eval builds one-shot prompts with it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from engine import Delta, Gate, Health, Sampling
from engine.errors import SessionStateError
from engine.one_shot import collect
from engine.prompt import Turn
from engine.types import Completion
from integrations.client_session import ClientSession, delta_of, sampling_body
from integrations.server_errors import ServerError


class StreamRAGClient:
    """A streamrag server, as an `engine.Engine`. `start()`/`close()` or `async with`."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float | None = 300.0,
                 model: str | None = None, cache_dir: str | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: {base_url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8000")
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout_s
        self._model_files = model
        self._cache_dir = cache_dir
        self._client: httpx.AsyncClient | None = None
        self._health: dict = {}
        self.model_name = "streamrag"
        self._max_model_len: int | None = None
        self.template = None

    async def __aenter__(self) -> StreamRAGClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the connection pool, check /health and learn the served model."""
        # The client binds to the running loop: create it here, never in __init__. No pool
        # limit: an open-loop replay holds one connection per live query.
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout,
                                         limits=httpx.Limits(max_connections=None, max_keepalive_connections=32))
        try:
            await self.refresh_health()
            models = (await self.request("GET", "/v1/models")).get("data") or [{}]
            if self._model_files is not None:
                self.template = await asyncio.to_thread(_local_template, self._model_files, self._cache_dir)
        except BaseException:
            await self.close()
            raise
        self.model_name = str(models[0].get("id") or self.model_name)
        self._max_model_len = models[0].get("max_model_len")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def max_model_len(self) -> int:
        return self._max_model_len or 0

    @property
    def live_sessions(self) -> int:
        return int(self._health.get("sessions", 0))

    def health(self) -> Health:
        if self._client is None:
            return Health(False, "the client is not started")
        return Health(self._health.get("status") == "ok", self._health.get("reason"))

    def kv_blocks_in_use(self) -> int:
        return int(self._health.get("kv_blocks_in_use", 0))

    async def refresh_health(self) -> Health:
        response = await self._require_started().get("/health")
        self._health = response.json() if response.content else {}
        if response.status_code not in (200, 503):
            raise ServerError.of(response.status_code, _message(response), f"{self.base_url}/health", None)
        return self.health()

    async def wait_for_blocks(self, expected: int = 0, timeout_s: float = 10.0) -> int:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            await self.refresh_health()
            if self.kv_blocks_in_use() == expected or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        return self.kv_blocks_in_use()

    # -- sessions -------------------------------------------------------------------------
    async def open_session(self, question: str, system: str | None = None, gate: Gate | None = None,
                           update_mode: str | None = None, history: Sequence[Turn] = ()) -> ClientSession:
        body: dict[str, Any] = {"question": question, "system": system, "update_mode": update_mode,
                                "history": [{"role": role, "content": text} for role, text in history]}
        if gate is not None:
            body["gate"] = gate.to_dict()
        created = await self.request("POST", "/v1/sessions", json=body)
        return ClientSession(self, created["id"])

    def check_sampling(self, sampling: Sampling) -> None:
        """Nothing to check here: the server refuses what its engine cannot do (a 400)."""

    # -- one-shot -------------------------------------------------------------------------
    async def complete_stream(self, prompt_token_ids: Sequence[int] | None = None, prompt: str | None = None,
                              sampling: Sampling | None = None) -> AsyncIterator[Delta]:
        """`/v1/completions` of a whole prompt (token ids or text), streamed."""
        if (prompt_token_ids is None) == (prompt is None):
            raise ValueError("give exactly one of prompt_token_ids and prompt")
        body = {"model": self.model_name, "prompt": list(prompt_token_ids) if prompt is None else prompt,
                "stream": True, **sampling_body(sampling or Sampling())}
        async for event in self.events("/v1/completions", body):
            if event.get("choices"):
                yield delta_of(event["choices"][0])

    async def complete(self, prompt_token_ids: Sequence[int] | None = None, prompt: str | None = None,
                       sampling: Sampling | None = None) -> Completion:
        n = len(prompt_token_ids) if prompt_token_ids is not None else 0
        return await collect(self.complete_stream(prompt_token_ids, prompt, sampling), n)

    # -- HTTP -----------------------------------------------------------------------------
    async def events(self, path: str, body: Mapping[str, Any]) -> AsyncIterator[dict]:
        """POST `body` and yield each SSE data payload (JSON) until `[DONE]`; an `error` event raises."""
        import json

        client = self._require_started()
        async with aconnect_sse(client, "POST", path, json=dict(body)) as source:
            response = source.response
            if response.status_code >= 400:
                await response.aread()
                raise ServerError.of(response.status_code, _message(response), f"{self.base_url}{path}",
                                     *_code(response))
            async for sse in source.aiter_sse():
                if sse.data == "[DONE]":
                    return
                payload = json.loads(sse.data)
                if sse.event == "error" or "error" in payload:
                    error = payload.get("error") or {}
                    raise ServerError.of(0, str(error.get("message", error)), f"{self.base_url}{path}",
                                         error.get("code"), error.get("param"))
                yield payload

    async def request(self, method: str, path: str, **kwargs: Any) -> dict:
        response = await self._require_started().request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ServerError.of(response.status_code, _message(response), f"{self.base_url}{path}", *_code(response))
        return response.json() if response.content else {}

    def _require_started(self) -> httpx.AsyncClient:
        if self._client is None:
            raise SessionStateError("the client is not started; use `async with StreamRAGClient(url)`")
        return self._client


async def stream_text(client: StreamRAGClient, path: str, body: Mapping[str, Any]) -> AsyncIterator[Delta]:
    """The deltas of any generating route's SSE stream (chat or text completions)."""
    async with aclosing(client.events(path, body)) as events:
        async for event in events:
            for choice in event.get("choices") or ():
                yield delta_of(choice)


def _local_template(model: str, cache_dir: str | None):
    from transformers import AutoTokenizer

    from engine.models import resolve_model
    from engine.prompt import PromptTemplate

    return PromptTemplate(AutoTokenizer.from_pretrained(str(resolve_model(model, cache_dir))))


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    error = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
    return str(error.get("message", error) if isinstance(error, dict) else error)


def _code(response: httpx.Response) -> tuple[str | None, str | None]:
    """The error's (code, param), as OpenAI's error body names them."""
    try:
        error = response.json().get("error") or {}
        return error.get("code"), error.get("param")
    except (ValueError, AttributeError):
        return None, None
