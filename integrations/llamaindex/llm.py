"""`StreamRAGLLM`: a LlamaIndex `LLM` served by streamrag, in-process or over HTTP.

    from llama_index.core import Settings
    Settings.llm = StreamRAGLLM(engine=EngineRunner.start(EngineConfig()))   # or engine="http://host:port"

A plain chat model in any pipeline: messages go through the model's own chat template and are
answered one-shot. Its truly async methods never block the caller's loop (the engine runs on its
own loop; see integrations/runner.py). Streaming-context sessions, where retrieved nodes are
prefilled while retrieval still runs, are `StreamingQueryEngine`'s business: it opens them
through `llm.client`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.llm import LLM

from engine import Sampling
from integrations.client import ChatDelta, EngineClient, to_sampling

DEFAULT_CONTEXT_WINDOW = 4096  # only when a server does not report its max_model_len


class StreamRAGLLM(LLM):
    """streamrag's engine as a LlamaIndex chat LLM.

    Args:
        engine: an `EngineRunner` (`EngineRunner.start(config)`), a `StreamEngine` already started
            on the loop you will call from, an `EngineClient`, or a server URL.
        base_url: the URL of a streamrag server (instead of `engine`).
        api_key: the server's API key, if it has one.
        max_tokens: the answer's token budget (LlamaIndex's `num_output`).
        temperature: 0.0 is greedy.
        context_window: override the engine's `max_model_len`.
    """

    engine: Any = Field(default=None, exclude=True, description="EngineRunner, StreamEngine, EngineClient or URL.")
    base_url: str | None = Field(default=None, description="URL of a streamrag server.")
    api_key: str | None = Field(default=None, exclude=True, description="API key of the server.")
    max_tokens: int = Field(default=256, gt=0, description="Maximum tokens to generate.")
    temperature: float = Field(default=0.0, ge=0.0, description="Sampling temperature; 0 is greedy.")
    context_window: int | None = Field(default=None, gt=0, description="Override of the engine's context window.")
    _client: EngineClient = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        if (self.engine is None) == (self.base_url is None):
            raise ValueError("engine / base_url: give exactly one: an EngineRunner (or started StreamEngine), or a server URL")
        self._client = EngineClient.of(self.engine if self.engine is not None else self.base_url, api_key=self.api_key)

    @classmethod
    def class_name(cls) -> str:
        return "StreamRAGLLM"

    @property
    def client(self) -> EngineClient:
        """The engine this LLM answers with; `StreamingQueryEngine` opens sessions on it."""
        return self._client

    @property
    def metadata(self) -> LLMMetadata:
        window = self.context_window or self._client.context_window or DEFAULT_CONTEXT_WINDOW
        return LLMMetadata(context_window=window, num_output=self.max_tokens, is_chat_model=True,
                           model_name=self._client.model_name, system_role=MessageRole.SYSTEM)

    # -- chat -----------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _collect(self.stream_chat_deltas(messages, **kwargs))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        deltas = self.stream_chat_deltas(messages, **kwargs)

        def gen() -> ChatResponseGen:
            text = ""
            for delta in deltas:
                text += delta.text
                yield _chat_response(text, delta)

        return gen()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        last, text = None, ""
        async for delta in self.astream_chat_deltas(messages, **kwargs):
            text, last = text + delta.text, delta
        return _chat_response(text, last, final=True)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        deltas = self.astream_chat_deltas(messages, **kwargs)

        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for delta in deltas:
                text += delta.text
                yield _chat_response(text, delta)

        return gen()

    # -- completion: the prompt is one user message, as with other chat-model LLMs -------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _as_completion(_collect(self.stream_chat_deltas(_user(prompt), **kwargs)))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        deltas = self.stream_chat_deltas(_user(prompt), **kwargs)

        def gen() -> CompletionResponseGen:
            text = ""
            for delta in deltas:
                text += delta.text
                yield _as_completion(_chat_response(text, delta))

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        last, text = None, ""
        async for delta in self.astream_chat_deltas(_user(prompt), **kwargs):
            text, last = text + delta.text, delta
        return _as_completion(_chat_response(text, last, final=True))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        deltas = self.astream_chat_deltas(_user(prompt), **kwargs)

        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            async for delta in deltas:
                text += delta.text
                yield _as_completion(_chat_response(text, delta))

        return gen()

    # -- the engine calls (undecorated: the public methods above carry the callbacks) -----
    def stream_chat_deltas(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Iterator[ChatDelta]:
        return self._client.chat_stream_sync(self._payload(messages), **self._sampling(kwargs))

    def astream_chat_deltas(self, messages: Sequence[ChatMessage], **kwargs: Any) -> AsyncIterator[ChatDelta]:
        return self._client.chat_stream(self._payload(messages), **self._sampling(kwargs))

    def sampling(self, **overrides: Any) -> Sampling:
        """A session's sampling: this LLM's settings, then `overrides`."""
        return to_sampling(self._sampling(overrides))

    def _payload(self, messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
        return [{"role": _role(m.role), "content": m.content or ""} for m in self._extend_messages(list(messages))]

    def _sampling(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        params.update({k: kwargs[k] for k in ("max_tokens", "temperature", "top_p", "seed", "stop", "frequency_penalty", "presence_penalty", "repetition_penalty")
                       if k in kwargs})
        return params


def _role(role: MessageRole) -> str:
    # Chat templates know system / user / assistant; other LlamaIndex roles map onto them.
    value = role.value if isinstance(role, MessageRole) else str(role)
    return {"chatbot": "assistant", "model": "assistant", "developer": "system"}.get(value, value)


def _user(prompt: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=prompt)]


def _chat_response(text: str, delta: ChatDelta | None, final: bool = False) -> ChatResponse:
    usage = delta.usage if delta is not None else None
    extra = {"finish_reason": delta.finish_reason} if delta is not None and delta.finish_reason else {}
    if usage is not None:
        extra |= {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                  "total_tokens": usage.total_tokens}
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                        delta=None if final or delta is None else delta.text, additional_kwargs=extra, raw=extra)


def _collect(deltas: Iterator[ChatDelta]) -> ChatResponse:
    last, text = None, ""
    for delta in deltas:
        text, last = text + delta.text, delta
    return _chat_response(text, last, final=True)


def _as_completion(response: ChatResponse) -> CompletionResponse:
    return CompletionResponse(text=response.message.content or "", delta=response.delta,
                              additional_kwargs=response.additional_kwargs, raw=response.raw)
