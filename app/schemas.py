"""Request bodies of the HTTP API (OpenAI's schema plus streamrag's extensions).

Pydantic validates them; a violation becomes a 400 whose `param` is the field's path. Every
body is strict: unknown fields, booleans where numbers go, non-finite numbers (`NaN`,
`Infinity`, `1e400`) and strings that cannot be encoded (a lone UTF-16 surrogate) are refused
with the field named, before anything is tokenized. Fields OpenAI defines that change nothing
here (`user`, `metadata`, `store`, `service_tier`) are accepted and have no effect.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from engine import Gate
from retrievers import Chunk, content_id

# Seeds span 64 bits (signed or not, as torch takes them). The bounds are round numbers that a
# double holds exactly and prints exactly, so a client that handles JSON numbers as doubles
# (most do) cannot round a seed it deems valid over the bound.
SEED_MIN, SEED_MAX = -9_223_372_000_000_000_000, 18_446_744_000_000_000_000
TOKEN_LIMIT = 2**31 - 1  # beyond any context; the route checks the real one


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"contains a character that cannot be encoded as UTF-8 at position {error.start} "
                         "(a lone surrogate?); send valid Unicode text") from None
    return text


def _whole_numbers(value: Any) -> Any:
    """JSON Schema counts 5.0 as an integer; strict pydantic would not. Whole floats become
    ints everywhere in a body (a float field takes an int in strict mode too); booleans stay
    booleans, so they are still refused where numbers go."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


Text = Annotated[str, AfterValidator(_encodable)]
StopText = Annotated[Text, Field(min_length=1)]  # also: a prompt


class Body(BaseModel):
    """The base of every request body: strict, closed, finite."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data: Any) -> Any:
        return _whole_numbers(data)


class GateSpec(Body):
    """`Gate` over HTTP: when decoding may start (see engine/gate.py)."""

    min_chunks: int | None = Field(None, ge=0, description="chunks needed; 0 lets a deadline open on an empty context")
    min_score: float | None = None
    stable_updates: int | None = Field(None, ge=1)
    stable_top_k: int = Field(3, ge=1, le=1000)
    max_wait_s: float | None = Field(None, ge=0, le=3600)

    def to_gate(self) -> Gate:
        return Gate(**self.model_dump())


class RetrievalSpec(Body):
    """The `retrieval` extension of chat completions: retrieve for the last user message."""

    collection: Text = Field(min_length=1, max_length=255)
    top_k: int = Field(4, ge=1, le=50)
    mode: Literal["append", "update"] = "update"
    queries: list[Text] = Field(default_factory=list, max_length=8)
    gate: GateSpec | None = None
    events: bool = Field(False, description="stream `event: context` and `event: gate` chunks (no choices) too")


class StreamOptions(Body):
    include_usage: bool = False


class TextPart(Body):
    type: Literal["text"]
    text: Text


class Message(Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = None
    name: Text | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class JsonSchemaSpec(Body):
    """OpenAI's `response_format.json_schema`: a named JSON Schema."""

    name: Text = Field(min_length=1, max_length=64)
    schema_: dict[Text, Any] = Field(alias="schema", description="the JSON Schema the answer must match")
    description: Text | None = None
    strict: bool | None = Field(None, description="accepted; the answer always matches the schema")


class TextFormat(Body):
    type: Literal["text"]


class JsonObjectFormat(Body):
    type: Literal["json_object"]


class JsonSchemaFormat(Body):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


# OpenAI's `response_format`: text, any JSON object, or JSON matching a schema (vLLM's structured outputs).
ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


class SamplingFields(Body):
    """Sampling fields shared by every generating route (OpenAI's; `ignore_eos` is vLLM's)."""

    max_tokens: int | None = Field(None, ge=1, le=TOKEN_LIMIT)
    max_completion_tokens: int | None = Field(None, ge=1, le=TOKEN_LIMIT)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    ignore_eos: bool = False
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    repetition_penalty: float = Field(1.0, gt=0, le=2, description="vLLM's: > 1 discourages repeating any "
                                      "token of the prompt or the answer; 1 is off")
    n: int = Field(1, ge=1, le=1)
    stop: StopText | Annotated[list[StopText], Field(max_length=4)] | None = Field(
        None, description="the answer ends before the first of these strings (up to 4)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = Field(None, description="json_schema: the answer matches the schema")
    return_tokens_as_token_ids: bool = Field(False, description="vLLM's: logprobs name each token "
                                             '"token_id:<id>" instead of its text')
    user: Text | None = None
    metadata: dict[Text, Text] | None = None
    store: bool | None = None
    service_tier: Text | None = None

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def token_limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default

    @property
    def logprob_count(self) -> int | None:
        """How many alternatives each token's logprob comes with (None: no logprobs)."""
        return getattr(self, "logprobs", None)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# With `retrieval`, some user message must say something: it is what is retrieved for. Written
# into the schema so that the document declares what the route refuses.
_SAYS_SOMETHING = {"type": "string", "pattern": r"\S"}
_RETRIEVAL_NEEDS_A_QUESTION = {
    "if": {"properties": {"retrieval": {"type": "object"}}, "required": ["retrieval"]},
    "then": {"properties": {"messages": {"contains": {
        "type": "object", "required": ["role", "content"],
        "properties": {"role": {"const": "user"}, "content": {"anyOf": [
            _SAYS_SOMETHING,
            {"type": "array", "contains": {"type": "object", "properties": {"text": _SAYS_SOMETHING}}}]}}}}}},
}


class ChatCompletionRequest(SamplingFields):
    model_config = ConfigDict(json_schema_extra=_RETRIEVAL_NEEDS_A_QUESTION)

    model: Text | None = None
    messages: list[Message] = Field(min_length=1)
    retrieval: RetrievalSpec | None = None
    logprobs: bool = Field(False, description="each answer token's logprob in `choices[].logprobs.content`")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="alternatives per token (implies logprobs)")

    @property
    def logprob_count(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs or self.top_logprobs is not None else None

    @property
    def question(self) -> str:
        """The last user message that says something (what retrieval is for); "" when none does."""
        return next((m.text for m in reversed(self.messages) if m.role == "user" and m.text.strip()), "")


class CompletionRequest(SamplingFields):
    model: Text | None = None
    prompt: (StopText | Annotated[list[int], Field(min_length=1)]
             | Annotated[list[StopText], Field(min_length=1, max_length=1)]
             | Annotated[list[Annotated[list[int], Field(min_length=1)]], Field(min_length=1, max_length=1)])
    max_tokens: int | None = Field(16, ge=1, le=TOKEN_LIMIT)  # OpenAI's default for completions
    logprobs: int | None = Field(None, ge=0, le=20, description="each token's logprob and this many alternatives")

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: Any):
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            if len(prompt) != 1:
                raise ValueError("one prompt per request (a string or a list of token ids)")
            prompt = prompt[0]
        if not prompt:
            raise ValueError("empty prompt")
        return prompt


class HistoryTurn(Body):
    role: Literal["user", "assistant", "tool"]
    content: Text


class SessionCreate(Body):
    question: Text = Field(min_length=1)
    system: Text | None = None
    history: list[HistoryTurn] = Field(default_factory=list, max_length=256,
                                       description="the chat's earlier turns, oldest first, before the question")
    gate: GateSpec | None = None
    model: Text | None = None
    update_mode: Literal["lcp", "reopen"] | None = None


class ChunkIn(Body):
    id: Text | None = Field(None, max_length=255)
    text: Text = Field(min_length=1)
    score: float | None = None
    source: Text = ""

    def to_chunk(self) -> Chunk:
        """The one `Chunk`; without an id the content names it (the same text, the same id)."""
        return Chunk(self.id or content_id(self.text), self.text, self.score, self.source)


class ContextPush(Body):
    op: Literal["append", "update", "done"]
    chunks: list[ChunkIn] = Field(default_factory=list)
    last: bool = False  # these chunks end the context (as a following "done")


class GenerateRequest(SamplingFields):
    logprobs: int | None = Field(None, ge=0, le=20, description="each token's logprob and this many alternatives "
                                 "(in the chat format's `choices[].logprobs.content`)")


class DocumentIn(Body):
    id: Text | None = Field(None, max_length=255)
    text: Text = Field(min_length=1)
    metadata: dict[Text, Text] = Field(default_factory=dict)


class DocumentsIn(Body):
    documents: list[DocumentIn] = Field(min_length=1)


class TokenizeRequest(Body):
    """vLLM's `/tokenize`: a prompt, or chat messages rendered with the model's template."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [  # one of the two, declared
        {"required": ["prompt"], "properties": {"prompt": {"type": "string"}, "messages": {"type": "null"}}},
        {"required": ["messages"], "properties": {"messages": {"type": "array"}, "prompt": {"type": "null"}}}]})

    model: Text | None = None
    prompt: Text | None = None
    messages: list[Message] | None = Field(None, min_length=1)
    add_special_tokens: bool = True
    add_generation_prompt: bool = True

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt and messages")
        return self


class DetokenizeRequest(Body):
    model: Text | None = None
    tokens: list[Annotated[int, Field(ge=0, le=TOKEN_LIMIT)]] = Field(max_length=1_000_000)
