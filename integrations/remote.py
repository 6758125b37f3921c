"""`RemoteEngine`: the engine's session surface over a running streamrag server (HTTP).

    async with RemoteEngine("http://127.0.0.1:8000") as engine:
        s = await engine.open_session(question="...", gate=Gate(min_chunks=3))
        await s.append([Chunk(text="...", id="doc-1", score=0.8)])
        await s.finish_context()
        async for delta in s.generate(max_tokens=64):
            ...

It mirrors `StreamEngine` so that the integrations take either. Two differences follow from
HTTP: `open_session` is awaited (the server names the session), and a `RemoteSession`'s
`stats` and `prompt_token_ids` are what the server last reported (refreshed after `generate`,
or on demand with `refresh()`). Streams are the server's SSE; the client only reads `data:`
lines, so it stays a plain httpx client.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx

from engine import Chunk, Completion, ContextReceipt, Delta, Gate, SessionStats, SessionStateError, StreamRAGError


class RemoteError(StreamRAGError, RuntimeError):
    """The server answered with an error status; carries it and the server's message."""

    def __init__(self, status: int, message: str, url: str):
        self.status = status
        super().__init__(f"{url}: HTTP {status}: {message}")


class RemoteEngine:
    """An httpx client with `StreamEngine`'s surface. `start()`/`close()` or `async with`."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 300.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: {base_url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8000")
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout_s
        self._client: httpx.AsyncClient | None = None
        self.model_name = "streamrag"
        self.max_model_len: int | None = None

    async def __aenter__(self) -> RemoteEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the connection pool, check /health and learn the served model."""
        # The client binds to the running loop: create it here, never in __init__.
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout)
        try:
            await self._request("GET", "/health")
            models = (await self._request("GET", "/v1/models")).get("data") or [{}]
        except BaseException:
            await self.close()
            raise
        self.model_name = str(models[0].get("id") or self.model_name)
        self.max_model_len = models[0].get("max_model_len")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def open_session(self, question: str, system: str | None = None, gate: Gate | None = None) -> RemoteSession:
        body: dict[str, Any] = {"question": question, "system": system}
        if gate is not None:
            fields = ("min_chunks", "min_score", "stable_updates", "stable_top_k", "max_wait_s")
            body["gate"] = {f: getattr(gate, f) for f in fields}
        created = await self._request("POST", "/v1/sessions", json=body)
        return RemoteSession(self, created["id"], gate or Gate())

    async def complete_stream(self, prompt_token_ids: list[int] | None = None, prompt: str | None = None,
                              max_tokens: int = 256, temperature: float = 0.0, **sampling: Any) -> AsyncIterator[Delta]:
        """`/v1/completions` of a whole prompt (token ids or text), streamed."""
        if (prompt_token_ids is None) == (prompt is None):
            raise ValueError("give exactly one of prompt_token_ids and prompt")
        body = {"model": self.model_name, "prompt": list(prompt_token_ids) if prompt is None else prompt,
                "max_tokens": max_tokens, "temperature": temperature, "stream": True, **sampling}
        async for event in self.events("/v1/completions", body):
            if event.get("choices"):
                yield _delta(event["choices"][0], "text")

    async def complete(self, prompt_token_ids: list[int] | None = None, prompt: str | None = None, **sampling: Any) -> Completion:
        deltas = [d async for d in self.complete_stream(prompt_token_ids, prompt, **sampling)]
        finish = next((d.finish_reason for d in reversed(deltas) if d.finish_reason), None)
        n_prompt = len(prompt_token_ids) if prompt_token_ids is not None else 0
        return Completion("".join(d.text for d in deltas), tuple(t for d in deltas for t in d.token_ids), n_prompt, finish)

    async def events(self, path: str, body: Mapping[str, Any]) -> AsyncIterator[dict]:
        """POST `body` and yield each SSE `data:` payload as JSON until `[DONE]`."""
        client = self._require_started()
        async with client.stream("POST", path, json=dict(body)) as response:
            if response.status_code >= 400:
                await response.aread()
                raise RemoteError(response.status_code, _message(response), f"{self.base_url}{path}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # comments (pings), event names, blank separators
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                payload = json.loads(data)
                if "error" in payload:
                    raise RemoteError(500, str(payload["error"]), f"{self.base_url}{path}")
                yield payload

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict:
        client = self._require_started()
        response = await client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RemoteError(response.status_code, _message(response), f"{self.base_url}{path}")
        return response.json() if response.content else {}

    def _require_started(self) -> httpx.AsyncClient:
        if self._client is None:
            raise SessionStateError("RemoteEngine is not started; use `async with RemoteEngine(url)`")
        return self._client


class RemoteSession:
    """A server-side session; same calls as `StreamSession`. See the module docstring."""

    def __init__(self, engine: RemoteEngine, session_id: str, gate: Gate) -> None:
        self.id = session_id
        self.gate = gate
        self.state = "open"
        self._engine = engine
        self._path = f"/v1/sessions/{session_id}"
        self._stats: SessionStats = stats_from_json({})
        self._prompt_token_ids: list[int] = []
        self._deleted = False  # after that, stats and prompt token ids are final

    @property
    def stats(self) -> SessionStats:
        return self._stats

    @property
    def prompt_token_ids(self) -> list[int]:
        return list(self._prompt_token_ids)

    async def append(self, chunks: Iterable[Chunk]) -> ContextReceipt:
        return await self._context("append", chunks)

    async def update(self, chunks: Iterable[Chunk]) -> ContextReceipt:
        return await self._context("update", chunks)

    async def finish_context(self) -> None:
        await self._context("done", [])

    async def generate(self, max_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
                       seed: int | None = None, ignore_eos: bool = False) -> AsyncIterator[Delta]:
        if ignore_eos:
            raise ValueError("ignore_eos: the server's generate API has no such option; leave it False over HTTP")
        body = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
                "stream": True, "stream_options": {"include_usage": True}}
        self.state = "generating"
        last: Delta | None = None
        try:
            async for event in self._engine.events(f"{self._path}/generate", body):
                if event.get("choices"):
                    delta = _delta(event["choices"][0], "delta")
                    if delta.finish_reason is None:
                        yield delta
                    else:
                        last = delta
            # The finishing delta waits for the end of the stream (usage comes after it) and the
            # final stats, so whoever sees it can read the session's stats and prompt token ids.
            self.state = "finished"
            await self.refresh()
            await self._delete()  # the server keeps finished sessions until a TTL; we are done
            if last is not None:
                yield last
        finally:
            if self.state != "finished":
                await self.abort()

    async def refresh(self) -> None:
        """Fetch state, stats and prompt token ids from the server (final once it is deleted)."""
        if self._deleted:
            return
        body = await self._engine._request("GET", self._path)
        self.state = body.get("state", self.state)
        self._stats = stats_from_json(body.get("stats") or {})
        self._prompt_token_ids = list(body.get("prompt_token_ids") or [])

    async def abort(self) -> None:
        if self.state in ("finished", "aborted"):
            return
        self.state = "aborted"
        await self._delete()

    async def _delete(self) -> None:
        self._deleted = True
        try:
            await self._engine._request("DELETE", self._path)
        except RemoteError as error:
            if error.status != 404:  # already gone on the server: nothing left to free
                raise

    async def _context(self, op: str, chunks: Iterable[Chunk]) -> ContextReceipt:
        body = {"op": op, "chunks": [{"id": c.id, "text": c.text, "score": c.score} for c in chunks]}
        receipt = await self._engine._request("POST", f"{self._path}/context", json=body)
        return ContextReceipt(int(receipt.get("accepted", 0)), int(receipt.get("dropped", 0)),
                              int(receipt.get("prompt_tokens", 0)))


def stats_from_json(data: Mapping[str, Any]) -> SessionStats:
    """`SessionStats` from the server's JSON; fields it does not send are zero or None."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(SessionStats):
        value = data.get(field.name)
        if field.name == "t_chunks":
            value = tuple(value or ())
        elif value is None and field.type in ("int",):
            value = 0
        values[field.name] = value
    return SessionStats(**values)


def _delta(choice: Mapping[str, Any], key: str) -> Delta:
    # Chat chunks carry {"delta": {"content"}}, completion chunks {"text"}; token ids if the server sends them.
    text = choice.get("text") or "" if key == "text" else (choice.get("delta") or {}).get("content") or ""
    return Delta(text=text, token_ids=tuple(choice.get("token_ids") or ()), finish_reason=choice.get("finish_reason"))


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    error = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
    return str(error.get("message", error) if isinstance(error, dict) else error)
