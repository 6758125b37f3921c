"""Request bodies of the HTTP API (OpenAI's schema plus streamrag's extensions).

Pydantic validates them; a violation becomes a 400 whose `param` is the field's path.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine import Gate
from retrievers import Chunk, content_id


class GateSpec(BaseModel):
    """`Gate` over HTTP: when decoding may start (see engine/gate.py)."""

    model_config = ConfigDict(extra="forbid")
    min_chunks: int | None = Field(None, ge=1)
    min_score: float | None = None
    stable_updates: int | None = Field(None, ge=1)
    stable_top_k: int = Field(3, ge=1)
    max_wait_s: float | None = Field(None, ge=0)

    def to_gate(self) -> Gate:
        return Gate(**self.model_dump())


class RetrievalSpec(BaseModel):
    """The `retrieval` extension of chat completions: retrieve for the last user message."""

    model_config = ConfigDict(extra="forbid")
    collection: str = Field(min_length=1)
    top_k: int = Field(4, ge=1, le=50)
    mode: Literal["append", "update"] = "update"
    queries: list[str] = Field(default_factory=list, max_length=8)
    gate: GateSpec | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class SamplingFields(BaseModel):
    """Sampling fields shared by every generating route (OpenAI defaults; `ignore_eos` is vLLM's)."""

    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    ignore_eos: bool = False
    n: int = 1
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported")
        return n

    @field_validator("stop")
    @classmethod
    def _no_stop(cls, stop):
        if stop:  # vLLM's streaming-input sessions do not support stop strings
            raise ValueError("stop sequences are not supported; stop on max_tokens or EOS")
        return None

    def token_limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingFields):
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    retrieval: RetrievalSpec | None = None


class CompletionRequest(SamplingFields):
    model: str | None = None
    prompt: str | list[int] | list[str] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt):
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            if len(prompt) != 1:
                raise ValueError("one prompt per request (a string or a list of token ids)")
            prompt = prompt[0]
        if not prompt:
            raise ValueError("empty prompt")
        return prompt


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1)
    system: str | None = None
    gate: GateSpec | None = None
    model: str | None = None
    update_mode: Literal["lcp", "reopen"] | None = None


class ChunkIn(BaseModel):
    id: str | None = None
    text: str = Field(min_length=1)
    score: float | None = None
    source: str = ""

    def to_chunk(self) -> Chunk:
        """The one `Chunk`; without an id the content names it (the same text, the same id)."""
        return Chunk(self.id or content_id(self.text), self.text, self.score, self.source)


class ContextPush(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["append", "update", "done"]
    chunks: list[ChunkIn] = Field(default_factory=list)
    last: bool = False  # these chunks end the context (as a following "done")


class GenerateRequest(SamplingFields):
    pass


class DocumentIn(BaseModel):
    id: str | None = None
    text: str = Field(min_length=1)
    metadata: dict[str, str] = Field(default_factory=dict)


class DocumentsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: list[DocumentIn] = Field(min_length=1)
