"""What the HTTP API answers, as models: the OpenAPI document describes them, and schemathesis
(tests/test_app_schema.py) checks every answer against them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# -- errors ------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """Every error, OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

    error: ErrorDetail


ERROR_TEXT = {400: "invalid request: `param` names the field", 401: "missing or wrong API key",
              404: "no such model, session, collection or route", 405: "method not allowed",
              409: "the session's state does not allow this", 413: "request too large",
              429: "too many open sessions", 500: "a bug in streamrag (the log has the traceback)",
              503: "the engine is unavailable (dead, restarting) or the server is shutting down"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody, "description": ERROR_TEXT[s]} for s in statuses}


# -- generation ----------------------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    streamrag: dict[str, Any] = Field(default_factory=dict, description="the session's stats and TTFT breakdown")


class ChatMessageOut(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: Any = None
    finish_reason: str | None
    token_ids: list[int]


class ChatCompletion(BaseModel):
    """`stream: false`. With `stream: true` the body is `text/event-stream` of chunks."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    streamrag: dict[str, Any] | None = None


class TextChoice(BaseModel):
    index: int
    text: str
    logprobs: Any = None
    finish_reason: str | None
    token_ids: list[int]


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage


# One server-sent event, as OpenAPI before 3.2 has `schema` describe each event of a stream:
# `data` is a JSON chunk (or `[DONE]`); `event` is absent for answer chunks and names
# streamrag's own events (`context`, `gate`, `error`).
SSE_EVENT = {
    "type": "object", "required": ["data"],
    "properties": {"data": {"type": "string"}, "id": {"type": "string"}, "retry": {"type": "integer"},
                   "event": {"enum": ["message", "context", "gate", "error"]}},
}
SSE = {"text/event-stream": {"schema": SSE_EVENT,
                             "description": "with `stream: true`: `data:` chunks, then `data: [DONE]`"}}

# -- sessions ------------------------------------------------------------------------------


class SessionCreated(BaseModel):
    id: str
    object: Literal["session"]
    prompt_tokens: int


class ContextReceiptOut(BaseModel):
    accepted: int
    dropped: int
    prompt_tokens: int
    gate_open: bool


class ChunkOut(BaseModel):
    id: str | None
    text: str
    score: float | None


class SessionOut(BaseModel):
    id: str
    object: Literal["session"]
    state: Literal["open", "generating", "finished", "aborted"]
    gate_open: bool
    stats: dict[str, Any]
    prompt_token_ids: list[int]
    chunks: list[ChunkOut]


class Deleted(BaseModel):
    id: str
    object: Literal["session"]
    deleted: bool


# -- system --------------------------------------------------------------------------------


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    reason: str | None
    model: str
    restarts: int
    sessions: int
    kv_blocks_in_use: int | None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    owned_by: str
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class CollectionCard(BaseModel):
    name: str
    points: int


class CollectionList(BaseModel):
    object: Literal["list"]
    data: list[CollectionCard]


class StoredChunk(BaseModel):
    id: str
    object: Literal["chunk"]
    collection: str
    text: str
    source: str
    title: str | None
    section: str | None
    document_id: str | None
    chunk_index: int | None


class DeletedCollection(BaseModel):
    id: str
    object: Literal["collection"]
    deleted: bool


class DeletedDocument(BaseModel):
    id: str
    object: Literal["document"]
    collection: str
    deleted: bool
    chunks: int


class IngestOut(BaseModel):
    collection: str
    documents: int
    chunks: int
    embedded: int
    unchanged: int


class TokenizeOut(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeOut(BaseModel):
    prompt: str


class VersionOut(BaseModel):
    version: str
