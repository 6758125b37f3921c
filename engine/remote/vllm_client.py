"""`VLLMClient`: one vLLM OpenAI-compatible server, as the remote backend uses it.

Only four calls, all plain HTTP on a shared `httpx.AsyncClient`:

    GET  /v1/models        served model name and max_model_len
    GET  /metrics          KV blocks in use, block size, prefix-cache queries and hits
    POST /v1/completions   warm: the prompt so far as token ids, max_tokens=1, not streamed
    POST /v1/completions   final: stream=true, return_token_ids, usage in the last chunk

Prompts go as token-id lists, so the server computes exactly the tokens the in-process engine
would. The server's own count of prompt tokens it did not compute (`usage.prompt_tokens_details
.cached_tokens`, present when it runs with `--enable-prompt-tokens-details`) is what the
backend reports as reuse.

Failures split in two: `ReplicaDownError` (the server cannot be reached, dropped the
connection, or says it is unavailable) means try another replica; `ServerRequestError` (a 4xx
or an error in the stream) means this request is wrong and would fail anywhere.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx

from engine.errors import StreamRAGError
from engine.logprobs import from_completion
from engine.types import Sampling, TokenLogprob


class ReplicaDownError(StreamRAGError, ConnectionError):
    """The server at `url` did not answer (or dropped the request); another replica may."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"vLLM server {url} failed: {reason}")


class ServerRequestError(StreamRAGError, ValueError):
    """The server refused the request (e.g. the prompt is too long); retrying elsewhere won't help."""

    def __init__(self, url: str, status: int, message: str) -> None:
        self.url = url
        self.status = status
        super().__init__(f"vLLM server {url} answered {status}: {message}")


@dataclass(frozen=True)
class ServedModel:
    name: str
    max_model_len: int | None


@dataclass(frozen=True)
class ServerUsage:
    """A finished request's token counts; `cached_tokens` None when the server does not say."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None


@dataclass(frozen=True)
class Step:
    """Tokens one streamed chunk carried."""

    token_ids: tuple[int, ...]
    finish_reason: str | None
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class ServerMetrics:
    """What the server's /metrics says; None where this vLLM version exports nothing."""

    blocks_in_use: int | None
    num_blocks: int | None
    block_size: int | None
    prefix_cache_queries: float | None  # tokens looked up in the prefix cache, since start
    prefix_cache_hits: float | None  # of which found there


_UNAVAILABLE = {502, 503, 504}


class VLLMClient:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url

    async def served_model(self) -> ServedModel:
        data = (await self._get("/v1/models")).json()["data"][0]
        return ServedModel(data["id"], data.get("max_model_len"))

    async def healthy(self) -> bool:
        try:
            return (await self.http.get(f"{self.url}/health")).status_code == 200
        except httpx.TransportError:
            return False

    async def metrics(self) -> ServerMetrics:
        from prometheus_client.parser import text_string_to_metric_families

        values: dict[str, float] = {}
        labels: dict[str, str] = {}
        for family in text_string_to_metric_families((await self._get("/metrics")).text):
            for sample in family.samples:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
                if sample.name == "vllm:cache_config_info":
                    labels = dict(sample.labels)
        num_blocks = _int(labels.get("num_gpu_blocks"))
        usage = values.get("vllm:kv_cache_usage_perc")
        in_use = round(usage * num_blocks) if usage is not None and num_blocks else None
        return ServerMetrics(
            in_use, num_blocks, _int(labels.get("block_size")),
            values.get("vllm:prefix_cache_queries_total"), values.get("vllm:prefix_cache_hits_total"),
        )

    async def warm(self, body: dict) -> ServerUsage:
        """A non-streamed completion (the prefix-warming request); returns its usage."""
        try:
            response = await self.http.post(f"{self.url}/v1/completions", json=body)
        except httpx.TransportError as error:
            raise ReplicaDownError(self.url, repr(error)) from error
        self._raise_for_status(response.status_code, response.text)
        return _usage(response.json().get("usage") or {})

    async def stream(self, body: dict) -> AsyncIterator[Step | ServerUsage]:
        """A streamed completion: `Step`s as tokens come, then one `ServerUsage`."""
        body = {**body, "stream": True, "stream_options": {"include_usage": True}, "return_token_ids": True}
        finished = False
        try:
            async with self.http.stream("POST", f"{self.url}/v1/completions", json=body) as response:
                if response.status_code != 200:
                    self._raise_for_status(response.status_code, (await response.aread()).decode())
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if (payload := line[len("data: "):]) == "[DONE]":
                        finished = True
                        break
                    chunk = json.loads(payload)
                    if "error" in chunk:
                        error = chunk["error"]
                        raise ServerRequestError(self.url, error.get("code") or 500, error.get("message", ""))
                    for choice in chunk.get("choices") or ():
                        yield Step(tuple(choice.get("token_ids") or ()), choice.get("finish_reason"),
                                   from_completion(choice.get("logprobs"), body.get("logprobs")))
                    if chunk.get("usage"):
                        yield _usage(chunk["usage"])
        except httpx.TransportError as error:
            raise ReplicaDownError(self.url, repr(error)) from error
        if not finished:  # the connection ended cleanly but the answer did not
            raise ReplicaDownError(self.url, "the stream ended before [DONE]")

    async def _get(self, path: str) -> httpx.Response:
        try:
            response = await self.http.get(f"{self.url}{path}")
        except httpx.TransportError as error:
            raise ReplicaDownError(self.url, repr(error)) from error
        self._raise_for_status(response.status_code, response.text)
        return response

    def _raise_for_status(self, status: int, text: str) -> None:
        if status == 200:
            return
        if status in _UNAVAILABLE:
            raise ReplicaDownError(self.url, f"HTTP {status}: {text[:200]}")
        try:
            message = json.loads(text).get("error", {}).get("message") or text
        except (ValueError, AttributeError):
            message = text
        raise ServerRequestError(self.url, status, str(message)[:500])


def completion_body(model: str, prompt: Sequence[int], sampling: Sampling, request_id: str | None = None) -> dict:
    """The /v1/completions body for a token-id prompt (vLLM's extensions included)."""
    # Stop strings are applied by the session (engine/stops.py), the same on every backend.
    fields = {k: v for k, v in sampling.to_dict().items() if v is not None and k not in ("stop", "json_schema")}
    body = {"model": model, "prompt": list(prompt), **fields}
    if sampling.json_schema is not None:  # vLLM's field; compact JSON is the server's own setting
        body["structured_outputs"] = {"json": json.loads(sampling.json_schema)}
    if sampling.logprobs is not None:
        body["return_tokens_as_token_ids"] = True  # logprobs keyed by id, not by token string
    if request_id is not None:
        body["request_id"] = request_id  # shows in the server's logs next to ours
    return body


def _usage(raw: dict) -> ServerUsage:
    details = raw.get("prompt_tokens_details") or {}
    return ServerUsage(raw.get("prompt_tokens", 0), raw.get("completion_tokens", 0), details.get("cached_tokens"))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "None") else None
    except ValueError:
        return None
