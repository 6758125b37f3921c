"""`RemoteEngine`: the replay's view of a streamrag server, over its HTTP API.

It offers what eval/systems.py uses of a `StreamEngine` (`template`, `open_session`,
`complete_stream`), so the same systems replay against a server URL:

    POST   /v1/sessions                  {question, system, update_mode} -> {id}
    POST   /v1/sessions/{id}/context     {op: "append" | "update" | "done", chunks: [...]}
    POST   /v1/sessions/{id}/generate    OpenAI chat-completion SSE; the usage chunk carries
                                         `usage.streamrag` (reused/recomputed/... tokens)
    DELETE /v1/sessions/{id}
    POST   /v1/completions               prompt as token ids, SSE (the one-shot baseline)

Prompts for one-shot are built locally with the served model's tokenizer and chat template,
so the model's files must be on this machine too (`--model` names them). No session can be
awaited as prefilled over HTTP, so the floor uses `systems.floor_warmed`. Times include the
HTTP round trips, which the in-process replay does not have.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx

from engine import Chunk, Delta, SessionStats


class RemoteError(RuntimeError):
    """The server answered with an error; the message carries its status and body."""


class RemoteSession:
    """One server-side session. Creation starts at once (the server prefills the prefix);
    every call waits for it first, as `StreamSession`'s calls never race its opening."""

    def __init__(self, client: httpx.AsyncClient, question: str, system: str | None,
                 update_mode: str | None) -> None:
        self._client = client
        body = {"question": question, "system": system, "update_mode": update_mode}
        self._created = asyncio.create_task(_post(client, "/v1/sessions", body))
        self._usage: dict = {}
        self._done = False

    async def _id(self) -> str:
        return (await self._created)["id"]

    async def append(self, chunks: list[Chunk]) -> dict:
        return await self._context("append", chunks)

    async def update(self, chunks: list[Chunk]) -> dict:
        return await self._context("update", chunks)

    async def finish_context(self) -> None:
        await self._context("done", [])

    async def _context(self, op: str, chunks: list[Chunk]) -> dict:
        body = {"op": op, "chunks": [{"id": c.id, "text": c.text, "score": c.score} for c in chunks]}
        return await _post(self._client, f"/v1/sessions/{await self._id()}/context", body)

    async def generate(self, max_tokens: int = 256, ignore_eos: bool = False) -> AsyncIterator[Delta]:
        # ignore_eos has no HTTP field; with max_tokens=1 (a TTFT study) it does not matter.
        body = {"max_tokens": max_tokens, "temperature": 0.0, "stream": True,
                "stream_options": {"include_usage": True}}
        async for data in _sse(self._client, f"/v1/sessions/{await self._id()}/generate", body):
            if data.get("usage"):
                self._usage = data["usage"]
            for choice in data.get("choices", []):
                yield Delta(choice.get("delta", {}).get("content") or "",
                            tuple(choice.get("token_ids") or ()), choice.get("finish_reason"))
        self._done = True

    @property
    def stats(self) -> SessionStats:
        """What the server reported in `usage.streamrag`; fields it does not report are 0."""
        sr = self._usage.get("streamrag") or {}
        return SessionStats(
            prompt_tokens=self._usage.get("prompt_tokens", 0),
            prefilled_before_gate=sr.get("prefilled_before_gate", 0),
            tail_tokens=sr.get("tail_prefill_tokens", 0), reused_tokens=sr.get("reused_tokens", 0),
            recomputed_tokens=sr.get("recomputed_tokens", 0),
            invalidated_tokens=sr.get("invalidated_tokens", 0), updates=0, replaces=0,
            chunks=sr.get("chunks", 0), chunks_dropped_late=sr.get("chunks_dropped_late", 0),
            gate_reason=sr.get("gate_reason"), t_chunks=(), t_gate=None, t_first_token=None,
            generated_tokens=self._usage.get("completion_tokens", 0),
        )

    async def abort(self) -> None:
        if self._done or not self._created.done() or self._created.exception() is not None:
            return
        try:
            await self._client.delete(f"/v1/sessions/{await self._id()}")
        except httpx.HTTPError:
            pass  # the server ends idle sessions on its own (session TTL)


class RemoteEngine:
    """A streamrag server at `url`, used as `async with RemoteEngine(url, model) as engine`."""

    def __init__(self, url: str, model: str = "default", api_key: str | None = None,
                 cache_dir: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self._cache_dir = cache_dir
        self._client: httpx.AsyncClient | None = None
        self.template = None

    async def __aenter__(self) -> RemoteEngine:
        from transformers import AutoTokenizer

        from engine.models import resolve_model
        from engine.prompt import PromptTemplate

        path = resolve_model(self.model, self._cache_dir)
        self.template = PromptTemplate(AutoTokenizer.from_pretrained(str(path)))
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        # No pool limit: an open-loop replay holds one connection per live query.
        self._client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=None,
                                         limits=httpx.Limits(max_connections=None))
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

    def open_session(self, question: str, system: str | None = None, gate=None,
                     update_mode: str | None = None) -> RemoteSession:
        return RemoteSession(self._client, question, system, update_mode)

    async def complete_stream(self, prompt_token_ids: list[int], max_tokens: int = 256,
                              ignore_eos: bool = False) -> AsyncIterator[Delta]:
        body = {"prompt": list(prompt_token_ids), "max_tokens": max_tokens, "temperature": 0.0,
                "stream": True}
        async for data in _sse(self._client, "/v1/completions", body):
            for choice in data.get("choices", []):
                yield Delta(choice.get("text") or "", tuple(choice.get("token_ids") or ()),
                            choice.get("finish_reason"))


async def _post(client: httpx.AsyncClient, path: str, body: dict) -> dict:
    response = await client.post(path, json=body)
    if response.status_code >= 400:
        raise RemoteError(f"POST {path}: {response.status_code} {response.text[:300]}")
    return response.json()


async def _sse(client: httpx.AsyncClient, path: str, body: dict) -> AsyncIterator[dict]:
    """The JSON payloads of a server-sent-event stream, up to `[DONE]`."""
    async with client.stream("POST", path, json=body) as response:
        if response.status_code >= 400:
            raise RemoteError(f"POST {path}: {response.status_code} {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # event names, ids, pings and blank separators
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            data = json.loads(payload)
            if "error" in data:
                raise RemoteError(f"POST {path}: {data['error'].get('message')}")
            yield data
