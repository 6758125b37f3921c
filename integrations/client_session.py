"""`ClientSession`: one session on a streamrag server, as an `engine.Session` (see http_client.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import httpx

from engine import ChunkLike, ContextReceipt, Delta, Sampling, SessionStats
from engine.errors import SessionStateError
from engine.logprobs import from_chat, from_completion
from engine.structured_output import to_response_format
from engine.types import GateReason, State
from integrations.server_errors import ServerError, ServerInvalidRequestError

if TYPE_CHECKING:
    from integrations.http_client import StreamRAGClient


class ClientSession:
    """A server-side session, as an `engine.Session`. See the module docstring."""

    def __init__(self, client: StreamRAGClient, session_id: str) -> None:
        self.id = session_id
        self._client = client
        self._path = f"/v1/sessions/{session_id}"
        self._state: State = "open"
        self._gate_open = False
        self._generating = False
        self._stats = SessionStats()
        self._prompt_token_ids: list[int] = []

    @property
    def state(self) -> State:
        return self._state

    @property
    def stats(self) -> SessionStats:
        return self._stats

    @property
    def prompt_token_ids(self) -> list[int]:
        """As of the last `refresh()` (final after `generate`)."""
        return list(self._prompt_token_ids)

    @property
    def gate_is_open(self) -> bool:
        return self._gate_open

    async def append(self, chunks: Sequence[ChunkLike], last: bool = False) -> ContextReceipt:
        return await self._context("append", chunks, last)

    async def update(self, chunks: Sequence[ChunkLike], last: bool = False) -> ContextReceipt:
        return await self._context("update", chunks, last)

    async def finish_context(self) -> None:
        await self._context("done", [], False)

    async def wait_gate(self) -> GateReason | None:
        await self.refresh(wait_gate_s=30)
        while self._state in ("open", "generating") and not self._gate_open:
            await self.refresh(wait_gate_s=30)
        return self._stats.gate_reason

    async def generate(self, sampling: Sampling | None = None) -> AsyncIterator[Delta]:
        """Wait for the gate (on the server), then stream the answer; leaving early deletes it."""
        if self._generating:
            raise SessionStateError(f"session {self.id}: generate() was already called once")
        self._generating = True
        body = {"stream": True, "stream_options": {"include_usage": True}, **sampling_body(sampling or Sampling())}
        try:
            async for event in self._client.events(f"{self._path}/generate", body):
                for choice in event.get("choices") or ():
                    self._state, self._gate_open = "generating", True
                    yield delta_of(choice)
            self._state = "finished"
            await self.refresh()  # the server keeps a finished session's record for a while
        except ServerInvalidRequestError as error:
            if error.status:  # refused with an HTTP 400, before the server claimed the answer
                self._generating = False
            raise
        finally:
            if self._state != "finished" and self._generating:
                await self.abort()

    async def refresh(self, wait_gate_s: float | None = None) -> None:
        """Fetch state, stats and prompt token ids (optionally waiting up to `wait_gate_s` for the gate)."""
        params = {"wait_gate_s": wait_gate_s} if wait_gate_s else None
        body = await self._client.request("GET", self._path, params=params)
        self._state = body.get("state", self._state)
        self._gate_open = bool(body.get("gate_open", self._gate_open))
        self._stats = SessionStats.from_dict(body.get("stats") or {})
        self._prompt_token_ids = list(body.get("prompt_token_ids") or self._prompt_token_ids)

    async def abort(self) -> None:
        if self._state in ("finished", "aborted"):
            return
        self._state = "aborted"
        try:
            await self._client.request("DELETE", self._path)
        except ServerError as error:
            if error.status != 404:  # already gone on the server: nothing left to free
                raise
        except httpx.HTTPError:
            pass  # the server is unreachable; its TTL ends the session

    async def _context(self, op: str, chunks: Sequence[ChunkLike], last: bool) -> ContextReceipt:
        body = {"op": op, "last": last, "chunks": [chunk_body(c) for c in chunks]}
        receipt = await self._client.request("POST", f"{self._path}/context", json=body)
        self._gate_open = bool(receipt.get("gate_open", self._gate_open))
        return ContextReceipt(int(receipt.get("accepted", 0)), int(receipt.get("dropped", 0)),
                              int(receipt.get("prompt_tokens", 0)))


def chunk_body(chunk: ChunkLike) -> dict:
    return {"id": chunk.id, "text": chunk.text, "score": chunk.score}


def sampling_body(sampling: Sampling) -> dict:
    """`Sampling` as OpenAI request fields (vLLM's `ignore_eos` extension included); logprobs
    with tokens named by id, so that they map back to ids exactly."""
    body = {k: v for k, v in sampling.to_dict().items() if v is not None and k != "json_schema"}
    if sampling.json_schema is not None:
        body["response_format"] = to_response_format(sampling.json_schema)
    if sampling.logprobs is not None:
        body["return_tokens_as_token_ids"] = True
    return body


def delta_of(choice: dict) -> Delta:
    # Chat chunks carry {"delta": {"content"}}, completion chunks {"text"}; token ids as an extension.
    text = choice["text"] if "text" in choice else (choice.get("delta") or {}).get("content")
    read = from_completion if "text" in choice else from_chat
    return Delta(text=text or "", token_ids=tuple(choice.get("token_ids") or ()),
                 finish_reason=choice.get("finish_reason"), logprobs=read(choice.get("logprobs"), None))
