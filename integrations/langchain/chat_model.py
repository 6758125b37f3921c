"""`StreamRAGChatModel`: streamrag's engine as a LangChain chat model, in-process or over HTTP.

    model = StreamRAGChatModel(engine=EngineRunner.start(EngineConfig()))      # in this process
    model = StreamRAGChatModel(base_url="http://127.0.0.1:8000", api_key="...")  # a streamrag server

A plain chat model: messages go through the model's own chat template and are answered
one-shot. `_agenerate`/`_astream` are natively async (the engine runs on its own loop, see
integrations/runner.py); `_generate`/`_stream` block the calling thread only. The last streamed
chunk carries the usage. Retrieval overlap is `StreamingRAG`'s business (it opens sessions
through `model.client`). `with_structured_output` constrains the answer to a JSON Schema through
vLLM's structured outputs (engine/structured_output.py), then parses it; there is no tool calling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import LangSmithParams
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ChatMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils import from_env, secret_from_env
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from engine import Sampling
from engine.structured_output import from_response_format
from integrations.client import ChatDelta, EngineClient, to_sampling
from integrations.runner import EngineRunner

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}


class StreamRAGChatModel(BaseChatModel):
    """streamrag chat model.

    Setup:
        In-process: `engine=EngineRunner.start(EngineConfig(...))` (or a `StreamEngine` started on
        the loop you call from, async methods only). Remote: `base_url=` a streamrag server, or
        the env vars `STREAMRAG_BASE_URL` and `STREAMRAG_API_KEY`.

    Key init args — completion params:
        model: the served model's name (informational: an engine serves one model).
        temperature: sampling temperature (0 is greedy).
        max_tokens: maximum tokens to generate.
        top_p, seed: sampling controls.
        frequency_penalty, presence_penalty, repetition_penalty: what keeps an answer from looping.
        stop: default stop sequences.

    Key init args — client params:
        engine: EngineRunner | StreamEngine | EngineClient.
        base_url: URL of a streamrag server.
        api_key: its API key.
        timeout: seconds before an HTTP request gives up.
        max_retries: accepted for compatibility; calls are not retried.

    Instantiate:
        .. code-block:: python

            model = StreamRAGChatModel(engine=EngineRunner.start(EngineConfig(model="default")))

    Invoke:
        .. code-block:: python

            model.invoke([("system", "Be brief."), ("human", "What is a KV cache?")])

    Stream / async:
        .. code-block:: python

            for chunk in model.stream("Hello"): ...
            await model.ainvoke("Hello")

    Structured output:
        .. code-block:: python

            class Verdict(BaseModel):
                answer: Literal["yes", "no"]

            model.with_structured_output(Verdict).invoke("Is Python interpreted?")  # Verdict(answer=...)

        `method="json_schema"` (default: the answer matches the schema of a pydantic class,
        TypedDict or JSON Schema dict; "function_calling" is the same here) or `"json_mode"`
        (any JSON object); `include_raw=True` returns {"raw", "parsed", "parsing_error"}. Also
        `model.invoke(..., response_format=...)`.

    Token usage:
        `AIMessage.usage_metadata` on invoke, and on the last chunk of a stream.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    model: str | None = Field(default=None, alias="model_name")
    engine: Any = Field(default=None, exclude=True)
    base_url: str | None = Field(default_factory=from_env("STREAMRAG_BASE_URL", default=None))
    api_key: SecretStr | None = Field(default_factory=secret_from_env("STREAMRAG_API_KEY", default=None))
    temperature: float = 0.0
    max_tokens: int | None = 256
    top_p: float | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    timeout: float | None = None
    max_retries: int = 2
    streaming: bool = False
    _client: EngineClient | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_target(self) -> StreamRAGChatModel:
        if self.engine is None and self.base_url is None:
            raise ValueError(
                "engine / base_url: give one: engine=EngineRunner.start(EngineConfig(...)) for an engine "
                "in this process, or base_url='http://host:port' (or STREAMRAG_BASE_URL) for a server"
            )
        return self

    @property
    def client(self) -> EngineClient:
        """The engine; a server is connected to on first use, not at construction."""
        if self._client is None:
            if self.engine is not None:
                self._client = EngineClient.of(self.engine)
            else:
                key = self.api_key.get_secret_value() if self.api_key else None
                # wait=False: this may run inside the caller's loop, which must not block on a server.
                runner = EngineRunner.connect(self.base_url, api_key=key, timeout_s=self.timeout or 300.0, wait=False)
                self._client = EngineClient(runner)
        return self._client

    @property
    def _llm_type(self) -> str:
        return "streamrag"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url, "temperature": self.temperature,
                "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "streamrag"
        params["ls_model_name"] = kwargs.get("model") or self.model or "streamrag"
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- LangChain's four entry points ----------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        deltas = list(self.client.chat_stream_sync(to_payload(messages), **self._sampling(stop, kwargs)))
        return self._result(deltas)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        deltas = [d async for d in self.client.chat_stream(to_payload(messages), **self._sampling(stop, kwargs))]
        return self._result(deltas)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for delta in self.client.chat_stream_sync(to_payload(messages), **self._sampling(stop, kwargs)):
            chunk = self._chunk(delta)
            if run_manager is not None and delta.text:
                run_manager.on_llm_new_token(delta.text, chunk=chunk)
            yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        async for delta in self.client.chat_stream(to_payload(messages), **self._sampling(stop, kwargs)):
            chunk = self._chunk(delta)
            if run_manager is not None and delta.text:
                await run_manager.on_llm_new_token(delta.text, chunk=chunk)
            yield chunk

    def with_structured_output(self, schema: dict | type | None = None, *,
                               method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
                               include_raw: bool = False, strict: bool | None = None,
                               **kwargs: Any) -> Runnable:
        """The answer as JSON matching `schema`, parsed (a pydantic instance for a pydantic class,
        else a dict); see the class docstring. `strict` is accepted: the grammar always holds
        the answer to the schema. "function_calling" is served as "json_schema" (there is no
        tool calling; the parsed result is the same)."""
        if kwargs:
            raise ValueError(f"{', '.join(sorted(kwargs))}: not supported by StreamRAGChatModel.with_structured_output")
        if method == "json_mode":
            response_format: dict[str, Any] = {"type": "json_object"}
        elif method in ("json_schema", "function_calling"):
            if schema is None:
                raise ValueError("schema: method='json_schema' needs a pydantic class, TypedDict or JSON Schema dict")
            # A dict is the JSON Schema itself; a pydantic class or TypedDict is converted.
            json_schema = dict(schema) if isinstance(schema, dict) else convert_to_json_schema(schema)
            response_format = {"type": "json_schema",
                               "json_schema": {"name": json_schema.get("title", "answer"), "schema": json_schema}}
        else:
            raise ValueError(f"method: {method!r}: use 'json_schema', 'function_calling' or 'json_mode'")
        model = self.bind(response_format=response_format)
        pydantic = isinstance(schema, type) and issubclass(schema, BaseModel)
        parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()
        if not include_raw:
            return model | parser
        # LangChain's shape: {"raw": AIMessage, "parsed": ... or None, "parsing_error": ... or None}
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=model) | parsed.with_fallbacks([unparsed], exception_key="parsing_error")

    # -- helpers --------------------------------------------------------------------------
    def sampling(self, **overrides: Any) -> Sampling:
        """A session's sampling: this model's settings, then `overrides`."""
        return to_sampling(self._sampling(None, overrides))

    def _sampling(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                  "seed": self.seed, "stop": stop if stop is not None else self.stop,
                  "frequency_penalty": self.frequency_penalty, "presence_penalty": self.presence_penalty,
                  "repetition_penalty": self.repetition_penalty}
        params.update({k: kwargs[k] for k in ("max_tokens", "temperature", "top_p", "seed", "frequency_penalty",
                                              "presence_penalty", "repetition_penalty") if k in kwargs})
        if kwargs.get("response_format") is not None:
            params["json_schema"] = from_response_format(kwargs["response_format"])
        return params

    def _metadata(self, delta: ChatDelta) -> dict[str, Any]:
        return {"model_name": self.model or self.client.model_name, "model_provider": "streamrag",
                "finish_reason": delta.finish_reason}

    def _result(self, deltas: list[ChatDelta]) -> ChatResult:
        last = deltas[-1]
        message = AIMessage(content="".join(d.text for d in deltas), usage_metadata=usage_metadata(last),
                            response_metadata=self._metadata(last))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _chunk(self, delta: ChatDelta) -> ChatGenerationChunk:
        if delta.finish_reason is None:
            return ChatGenerationChunk(message=AIMessageChunk(content=delta.text))
        message = AIMessageChunk(content=delta.text, usage_metadata=usage_metadata(delta),
                                 response_metadata=self._metadata(delta), chunk_position="last")
        return ChatGenerationChunk(message=message, generation_info={"finish_reason": delta.finish_reason})


def to_payload(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as chat-template messages (text content; a `name` is dropped)."""
    return [{"role": m.role if isinstance(m, ChatMessage) else _ROLES.get(m.type, m.type), "content": m.text}
            for m in messages]


def usage_metadata(delta: ChatDelta) -> UsageMetadata | None:
    if delta.usage is None:
        return None
    u = delta.usage
    return UsageMetadata(input_tokens=u.prompt_tokens, output_tokens=u.completion_tokens, total_tokens=u.total_tokens)
